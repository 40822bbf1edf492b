"""Import an original folk-rnn checkpoint (e.g. folkrnn_v2.pkl) as a folkrnn_jax run.

python -m experiments.import_folkrnn --pickle=folkrnn_v2.pkl --workdir=runs/folkrnn_v2

Writes WORKDIR/config.json (the v2_as_trained preset with the sizes found in the pickle and
learn_initial_state=True, so the imported cell_init/hid_init are every tune's starting
state) and an orbax checkpoint at the pickle's iteration count, so that experiments.sample,
experiments.score and the analysis tools use it like any trained run, and experiments.train
with the same --workdir (and --config=experiments/configs/v2_as_trained.py with the imported
sizes) goes on training it. The pickle holds no optimiser statistics: RMSprop restarts from
zero, with the learning-rate schedule at the imported iteration. The pickle is read with
a restricted unpickler: a file that asks for anything but numpy arrays is refused.
"""

import os

from absl import flags, logging

from experiments import cli
from experiments.configs import v2_as_trained
from folkrnn_jax.errors import InputError
from folkrnn_jax.model import legacy
from folkrnn_jax.training import checkpoints, rundir
from folkrnn_jax.training import state as state_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("pickle", None, "Original folk-rnn checkpoint (Python 2 pickle).")
flags.DEFINE_string("workdir", None, "Run directory to create.")
flags.mark_flags_as_required(["pickle", "workdir"])


def import_checkpoint(pickle_path: str, workdir: str) -> legacy.LegacyCheckpoint:
    checkpoint = legacy.load_folkrnn_pickle(pickle_path)
    if os.path.isdir(os.path.join(workdir, checkpoints.CHECKPOINT_DIR)):
        raise InputError(f"{workdir} already holds checkpoints; import into a new directory")
    config = v2_as_trained.get_config()
    config.num_layers = checkpoint.num_layers
    config.hidden_size = checkpoint.hidden_size
    config.learn_initial_state = True
    config.imported_from = os.path.abspath(pickle_path)
    meta = checkpoint.metadata
    config.imported_configuration = str(meta["configuration"])
    config.imported_experiment_id = str(meta["experiment_id"])
    config.imported_epoch = float(meta["epoch_since_start"] or 0)
    step = int(meta["iters_since_start"] or 0)
    os.makedirs(workdir, exist_ok=True)
    rundir.save_config(workdir, config)
    opt_state = state_lib.optimizer_state_at(config, checkpoint.params, step)
    checkpoints.save_params(workdir, step, checkpoint.params, opt_state)
    return checkpoint


def main(argv):
    del argv
    checkpoint = import_checkpoint(FLAGS.pickle, FLAGS.workdir)
    logging.info(
        "imported %s: %d x %d LSTM, %d iterations, into %s", FLAGS.pickle, checkpoint.num_layers,
        checkpoint.hidden_size, int(checkpoint.metadata["iters_since_start"] or 0), FLAGS.workdir,
    )


if __name__ == "__main__":
    cli.run(main)
