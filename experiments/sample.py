"""Sample new tunes from a trained run as ABC.

python -m experiments.sample --workdir=runs/tiny --num_tunes=10 --temperature=1.0 --seed=0 \
    --prefix="M:6/8 K:Cdor" --output=runs/tiny/tunes.abc
"""

import os

import jax
from absl import flags, logging

from experiments import cli
from folkrnn_jax import runs, sample, tunes

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory holding config.json and checkpoints.")
flags.DEFINE_integer("num_tunes", 10, "How many tunes to sample.")
flags.DEFINE_float("temperature", 1.0, "Softmax temperature.")
flags.DEFINE_integer("seed", 0, "RNG seed: the same seed gives the same tunes.")
flags.DEFINE_string("prefix", "", "Tokens every tune starts with, e.g. 'M:6/8 K:Cdor'.")
flags.DEFINE_integer("max_length", 1000, "Maximum tokens per tune, counting <s> and the prefix.")
flags.DEFINE_string("output", None, "ABC file to write (default: WORKDIR/samples.abc).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    model, params, step = runs.load_run(FLAGS.workdir)
    result = sample.sample_tunes(
        model, params, jax.random.PRNGKey(FLAGS.seed), FLAGS.num_tunes, FLAGS.prefix,
        FLAGS.temperature, FLAGS.max_length,
    )
    titles = [f"folkrnn_jax step {step} seed {FLAGS.seed} tune {i + 1}" for i in range(FLAGS.num_tunes)]
    text = tunes.tunes_to_abc([result.tokens(i) for i in range(FLAGS.num_tunes)], titles)
    output = FLAGS.output or os.path.join(FLAGS.workdir, "samples.abc")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = output + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, output)
    logging.info(
        "wrote %d tunes to %s (%d reached max_length)", FLAGS.num_tunes, output, int(result.truncated.sum())
    )


if __name__ == "__main__":
    cli.run(main)
