"""Plot a run's learning curves (training and per-source validation loss by epoch) to a PNG.

python -m experiments.plot_curves --workdir=RUN --output=curves.png [--title=TEXT]
"""

import os

from absl import flags, logging

from experiments import cli
from folkrnn_jax.analysis import curves
from folkrnn_jax.errors import MissingFileError
from folkrnn_jax.training import metrics

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory holding metrics.jsonl.")
flags.DEFINE_string("output", None, "PNG file to write.")
flags.DEFINE_string("title", None, "Figure title (default: the run directory's name).")
flags.mark_flags_as_required(["workdir", "output"])


def main(argv):
    del argv
    if not os.path.exists(os.path.join(FLAGS.workdir, "metrics.jsonl")):
        raise MissingFileError(f"{FLAGS.workdir}/metrics.jsonl not found: is {FLAGS.workdir} a training run?")
    records = metrics.read_metrics(FLAGS.workdir)
    title = FLAGS.title or f"Learning curves of {os.path.basename(os.path.normpath(FLAGS.workdir))}"
    curves.learning_curve_figure(records, title, FLAGS.output)
    logging.info("wrote %s", FLAGS.output)


if __name__ == "__main__":
    cli.run(main)
