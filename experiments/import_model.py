"""Start a training run from a model folder, to go on training exported weights.

python -m experiments.import_model --model=models/default --workdir=RUN
python -m experiments.train --config=experiments/configs/v2_default.py --workdir=RUN

The run starts at the folder's step with the folder's config and metrics history; RMSprop's
statistics start from zero (a model folder holds none), the learning-rate schedule at that step.
"""

from absl import flags, logging

from experiments import cli
from folkrnn_jax.training import runs

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Model folder written by experiments.export_model (e.g. models/default).")
flags.DEFINE_string("workdir", None, "Run directory to create.")
flags.mark_flags_as_required(["model", "workdir"])


def main(argv):
    del argv
    step = runs.run_from_model(FLAGS.model, FLAGS.workdir)
    logging.info("%s starts at step %d from %s; train it with experiments.train --workdir=%s",
                 FLAGS.workdir, step, FLAGS.model, FLAGS.workdir)


if __name__ == "__main__":
    cli.run(main)
