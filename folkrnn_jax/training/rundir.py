"""A run directory's own files: the lock that keeps two trainings out of one workdir, and the
resolved config (``config.json``) that sampling and resuming read.

On a multi-process run (``jax.distributed``, one shared workdir as on a cluster's shared
filesystem) every process holds a lock of its own (``.lock`` for process 0, ``.lock.N`` for
process N), so that a stray second copy of any one process is refused while the processes of
one run work side by side; only process 0 writes ``config.json``.
"""

from __future__ import annotations

import fcntl
import json
import os
from typing import IO

import ml_collections

from folkrnn_jax import files
from folkrnn_jax.errors import InputError, MissingFileError
from folkrnn_jax.model.weights import CONFIG_FILE  # a run's config has a model folder's name

LOCK_FILE = ".lock"
CHECKPOINT_DIR = "checkpoints"
# Fields that fix the parameters' shapes and meaning: a resumed run must keep them.
MODEL_FIELDS = ("num_layers", "hidden_size", "learn_initial_state")


class WorkdirBusyError(InputError):
    """Another training holds the run directory."""


def lock_path(workdir: str, process_index: int = 0) -> str:
    """The lock file of process ``process_index`` of a run in ``workdir``."""
    name = LOCK_FILE if process_index == 0 else f"{LOCK_FILE}.{process_index}"
    return os.path.join(workdir, name)


def lock_workdir(workdir: str, process_index: int = 0) -> IO[str]:
    """Take the run directory's lock for one training process, so that two trainings never
    write one workdir.

    The lock (``fcntl.flock`` on ``WORKDIR/.lock``, or ``.lock.N`` for process N of a
    multi-process run) lasts while the returned file stays open and goes with the process, so
    a killed run leaves nothing to clean up.

    Args:
      workdir: the run directory (created if missing).
      process_index: this process's index in a multi-process run (``jax.process_index()``).

    Returns:
      The open lock file; keep it referenced for as long as the training runs.

    Raises:
      WorkdirBusyError: another process holds the lock.
    """
    os.makedirs(workdir, exist_ok=True)
    path = lock_path(workdir, process_index)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()[:40]
        handle.close()
        raise WorkdirBusyError(
            f"{workdir} is in use by another training (process {holder or '?'} holds {path}); "
            "wait for it to finish or choose another --workdir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def check_resume_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Refuse to resume a run whose checkpoints were trained with other model fields, before
    anything is written (``config.json`` stays as it was, so the run can still be sampled).

    Args:
      workdir: the run directory.
      config: the config of the training about to start.

    Raises:
      InputError: ``config.json`` and checkpoints exist and a model field differs.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    if not os.path.exists(path) or not os.path.isdir(directory):
        return
    if not any(name.isdigit() for name in os.listdir(directory)):
        return
    try:
        saved = load_config(workdir)
    except ValueError as error:
        raise InputError(f"{path}: unreadable ({error}); the run's checkpoints need its config") from None
    changed = [
        f"--config.{name} was {saved.get(name, False)!r}, now {config.get(name, False)!r}"
        for name in MODEL_FIELDS if saved.get(name, False) != config.get(name, False)
    ]
    if changed:
        raise InputError(
            f"{workdir} holds checkpoints of another model ({'; '.join(changed)}); "
            "resume with the same model fields or choose another --workdir"
        )


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Write ``config`` as ``WORKDIR/config.json`` (atomically)."""
    path = os.path.join(workdir, CONFIG_FILE)
    files.atomic_write_text(path, config.to_json_best_effort(indent=2, sort_keys=True))


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run was trained with, from ``WORKDIR/config.json``.

    Raises:
      MissingFileError: there is no ``config.json``.
      InputError: it is not JSON.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise MissingFileError(f"{path} not found: is {workdir} a folkrnn_jax run directory?")
    try:
        return ml_collections.ConfigDict(json.loads(files.read_text(path, "run config")))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: line {error.lineno}, column {error.colno}: not JSON ({error.msg})") from None
