"""Evaluate a run: validation NLL and generated-vs-training tune statistics, as JSON, Markdown
and PNG plots.

python -m experiments.evaluate --workdir=runs/tiny --output=runs/tiny/eval
python -m experiments.evaluate --workdir=runs/tiny --samples=runs/tiny/samples.abc \
    --data=data/folk_corpus.txt --output=runs/tiny/eval

Without --samples, --num_tunes tunes are sampled from the run's latest checkpoint. --samples
takes a v2-format file or an ABC file written by experiments.sample. The training side is
every tune of --data (default: the run's config data_path).
"""

import jax
from absl import flags, logging

from experiments import cli
from folkrnn_jax.analysis import novelty as novelty_lib
from folkrnn_jax.analysis import report as report_lib
from folkrnn_jax.analysis import statistics as statistics_lib
from folkrnn_jax.data import v2_format
from folkrnn_jax.generate import sampler
from folkrnn_jax.music import vocab
from folkrnn_jax.training import checkpoints
from folkrnn_jax.training import runs as runs_lib

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "workdir", None, "Run directory or model folder (default: the shipped model, models/default)."
)
flags.DEFINE_string("samples", None, "Generated tunes (v2 format or our ABC); default: sample them.")
flags.DEFINE_string("data", None, "Training tunes in v2 format (default: the run's data_path).")
flags.DEFINE_string("output", None, "Report directory (default: WORKDIR/eval, or ./eval for the shipped model).")
flags.DEFINE_integer("num_tunes", 200, "Tunes to sample when --samples is absent.")
flags.DEFINE_float("temperature", 1.0, "Sampling temperature when --samples is absent.")
flags.DEFINE_integer("seed", 0, "Sampling seed when --samples is absent.")
flags.DEFINE_integer("max_length", 1000, "Maximum tokens per sampled tune.")
flags.DEFINE_integer("novelty_threshold", novelty_lib.DEFAULT_NOVELTY_THRESHOLD,
                     "Flag generated tunes sharing this many consecutive tokens with a training tune.")
flags.DEFINE_bool("validation", True, "Compute the validation NLL of the checkpoint.")


def main(argv):
    del argv
    workdir = runs_lib.resolve(FLAGS.workdir)
    config = checkpoints.load_config(workdir)
    data_path = FLAGS.data or config.data_path
    training = v2_format.read_v2_file(data_path)
    report = {"data_path": data_path, "workdir": workdir}
    if FLAGS.validation:
        report["validation"] = report_lib.validation_metrics(workdir, FLAGS.data)
        logging.info("validation: %s", report["validation"])
    if FLAGS.samples:
        generated = v2_format.read_tunes(FLAGS.samples)
        report["samples"] = FLAGS.samples
    else:
        model, params, step = runs_lib.load_run(workdir)
        result = sampler.sample_tunes(
            model, params, jax.random.PRNGKey(FLAGS.seed), FLAGS.num_tunes, (),
            FLAGS.temperature, FLAGS.max_length,
        )
        generated = [
            [t for t in result.tokens(i) if t not in (vocab.START, vocab.END)] for i in range(FLAGS.num_tunes)
        ]
        report["samples"] = {"step": step, "num_tunes": FLAGS.num_tunes, "seed": FLAGS.seed,
                             "temperature": FLAGS.temperature, "truncated": int(result.truncated.sum())}
    report["training"] = statistics_lib.corpus_statistics(training)
    report["generated"] = statistics_lib.corpus_statistics(generated)
    report["novelty"] = novelty_lib.novelty(generated, training, FLAGS.novelty_threshold)
    paths = report_lib.write_report(report, FLAGS.output or (f"{FLAGS.workdir}/eval" if FLAGS.workdir else "eval"))
    logging.info("wrote %s and %s", paths["markdown"], paths["json"])


if __name__ == "__main__":
    cli.run(main)
