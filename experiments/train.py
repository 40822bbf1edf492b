"""Train folk-rnn.

python -m experiments.train --config=experiments/configs/tiny.py --workdir=runs/tiny \
    [--config.FIELD=VALUE ...]
"""

from absl import flags
from ml_collections import config_flags

from experiments import cli
from folkrnn_jax.training import loop as loop_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and the resolved config.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    loop_lib.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    cli.run(main)
