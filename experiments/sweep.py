"""Run a hyperparameter sweep (grid or random search) over a base config.

python -m experiments.sweep --config=experiments/configs/tiny.py \
    --sweep=experiments/sweeps/tiny_lr_seed.py --workdir=runs/sweep [--config.FIELD=VALUE ...]

Each run trains in WORKDIR/run_NAME; finished runs are skipped and unfinished ones resume, so
the same command continues an interrupted sweep. The summary (best validation loss first) is
WORKDIR/summary.csv and WORKDIR/summary.md.
"""

from absl import flags
from ml_collections import config_flags

from experiments import cli
from folkrnn_jax.training import sweep

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory holding one run_NAME folder per run and the summary.")
flags.DEFINE_string("sweep", None, "Sweep file defining get_sweep().")
config_flags.DEFINE_config_file("config", None, "Base training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config", "sweep", "workdir"])


def main(argv):
    del argv
    rows = sweep.run_sweep(FLAGS.config, sweep.load_sweep(FLAGS.sweep), FLAGS.workdir)
    print(open(f"{FLAGS.workdir}/summary.md").read(), end="")
    del rows


if __name__ == "__main__":
    cli.run(main)
