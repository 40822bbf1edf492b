"""Score every tune of a v2-format file, or of an ABC file written by experiments.sample,
under a run's latest checkpoint.

python -m experiments.score --workdir=runs/v2 --data=tunes.txt --output=scores.jsonl
python -m experiments.sample --output=samples.abc && \
    python -m experiments.score --data=samples.abc --output=scores.jsonl

Writes one JSON line per tune, in file order: {"index", "tokens" (count including <s> and
</s>), "log_prob" (natural-log probability of the tune, predicting every token after <s>
through </s>, dropout off)}.
"""

import json
import os

from absl import flags, logging

from experiments import cli
from folkrnn_jax.analysis import scoring as scoring_lib
from folkrnn_jax.errors import InputError
from folkrnn_jax.training import runs as runs_lib

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "workdir", None, "Run directory or model folder (default: the shipped model, models/default)."
)
flags.DEFINE_string("data", None, "Tunes to score: a v2-format file, or an ABC file written by "
                    "experiments.sample (tunes in another key are transposed back to C).")
flags.DEFINE_string("output", None, "JSON-lines file to write.")
flags.DEFINE_integer("batch_size", 64, "Tunes per forward pass.")
flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
flags.mark_flags_as_required(["data", "output"])


def main(argv):
    del argv
    if FLAGS.batch_size < 1:
        raise InputError(f"--batch_size must be at least 1, got {FLAGS.batch_size}")
    model, params, step = runs_lib.load_run(FLAGS.workdir, FLAGS.step)
    records = scoring_lib.score_file(model, params, FLAGS.data, FLAGS.batch_size)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    tmp = FLAGS.output + ".tmp"
    with open(tmp, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    os.replace(tmp, FLAGS.output)
    logging.info("scored %d tunes from %s with step %d; wrote %s", len(records), FLAGS.data, step, FLAGS.output)


if __name__ == "__main__":
    cli.run(main)
