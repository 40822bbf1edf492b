"""Export a run's checkpoint as a model folder: safetensors weights, config.json, model.json.

python -m experiments.export_model --workdir=RUN --output=models/mine [--step=N]
python -m experiments.export_model --workdir=RUN --output=models/default --overwrite

A folder that already holds files is replaced only with --overwrite; a missing one is created
(with a note).
"""

from absl import flags, logging

from experiments import cli
from folkrnn_jax.training import runs

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory holding config.json and checkpoints.")
flags.DEFINE_string("output", None, "Model folder to write, e.g. models/mine.")
flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the latest).")
flags.DEFINE_bool("overwrite", False, "Replace the files of an --output folder that already holds some.")
flags.mark_flags_as_required(["workdir", "output"])


def main(argv):
    del argv
    cli.note_new_folder(FLAGS.output)
    digest = runs.export_run(FLAGS.workdir, FLAGS.output, FLAGS.step, overwrite=FLAGS.overwrite)
    logging.info("wrote %s (weights SHA-256 %s)", FLAGS.output, digest)


if __name__ == "__main__":
    cli.run(main)
