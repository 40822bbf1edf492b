"""Orbax checkpoints and the resolved config of a run, both kept in its workdir.

Orbax writes each step into a temporary folder and renames it when complete, so a run killed
while saving leaves the previous checkpoint intact; a restarted run restores the latest
finished one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import hashlib
import json
import os
import sys
import tempfile
from typing import IO, Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from folkrnn_jax import files
from folkrnn_jax.errors import InputError, MissingFileError, UserError
from folkrnn_jax.model.weights import CONFIG_FILE  # a run's config has a model folder's name

CHECKPOINT_DIR = "checkpoints"
# Outside the orbax folder, which orbax owns: STEP.json holds the arrays' checksums.
CHECKSUM_DIR = "checksums"


class DamagedCheckpointError(InputError):
    """No checkpoint of a run could be restored intact; the message names each step's fault."""


LOCK_FILE = ".lock"


class DiskFullError(UserError):
    """A checkpoint could not be written for lack of space."""


def _disk_full(error: BaseException) -> bool:
    """Whether ``error`` or an exception it came from is ENOSPC (orbax wraps its threads')."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


class WorkdirBusyError(InputError):
    """Another training holds the run directory."""


def lock_workdir(workdir: str) -> IO[str]:
    """Take the run directory's lock for one training, so that two never write one workdir.

    The lock (``fcntl.flock`` on ``WORKDIR/.lock``) lasts while the returned file stays open
    and goes with the process, so a killed run leaves nothing to clean up.

    Args:
      workdir: the run directory (created if missing).

    Returns:
      The open lock file; keep it referenced for as long as the training runs.

    Raises:
      WorkdirBusyError: another process holds the lock.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
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


def tree_checksum(tree: Any) -> str:
    """SHA-256 over the leaves of ``tree`` (shapes, dtypes and bytes, in tree order).

    Args:
      tree: a pytree of arrays or numbers.

    Returns:
      The hex digest.
    """
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(jax.device_get(tree)):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _checksum_path(workdir: str, step: int) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKSUM_DIR, f"{int(step)}.json")


def write_checksums(workdir: str, step: int, tree: dict) -> None:
    """Record the checksums of a checkpoint's params and whole tree, for restore to verify.

    Args:
      workdir: the run directory.
      step: the checkpoint's step.
      tree: the saved tree (``step``, ``params``, ``opt_state``).
    """
    os.makedirs(os.path.dirname(_checksum_path(workdir, step)), exist_ok=True)
    # The params only: the step and optimiser state come back in the restoring run's own
    # types and structure (an imported int step restores as int32), so their bytes differ.
    sums = {"params": tree_checksum(tree["params"])}
    files.atomic_write_text(_checksum_path(workdir, step), json.dumps(sums))


def _verify(workdir: str, step: int, tree: Any, part: str) -> None:
    path = _checksum_path(workdir, step)
    if not os.path.exists(path):
        return  # written by a version before checksums, or killed between the two writes
    try:
        with open(path) as f:
            expected = json.load(f)[part]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"unreadable checksum file {path} ({error})") from None
    if tree_checksum(tree) != expected:
        raise ValueError("its arrays do not match the checksum written when it was saved")


@contextlib.contextmanager
def _stderr_held(held_text: list[str]):
    """Holds what is written to file descriptor 2 meanwhile and appends it to ``held_text``.

    A failed orbax read of a damaged step leaves tracebacks behind ("Event loop is closed" from
    its storage threads, "Task exception was never retrieved"), printed below Python's
    ``sys.stderr``; the caller decides whether to show them again.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            gc.collect()  # the never-retrieved futures report when collected: here, not later
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            held_text.append(held.read().decode("utf-8", "replace"))


def _restore_newest_intact(workdir: str, manager: ocp.CheckpointManager, restore, part: str) -> tuple[Any, int] | None:
    """Restore the newest step that reads and verifies, warning about each damaged newer one."""
    faults: list[tuple[int, str]] = []
    held_text: list[str] = []
    try:
        with _stderr_held(held_text):
            found = _restore_newest_intact_loop(workdir, manager, restore, part, faults)
    except BaseException:
        sys.stderr.write("".join(held_text))
        raise
    if not faults:
        sys.stderr.write("".join(held_text))  # nothing went wrong: what was printed is shown as it was
    for step, reason in faults:
        logging.warning("checkpoint at step %d in %s is damaged (%s); trying the previous one",
                        step, workdir, reason)
    if found is None and faults:
        raise DamagedCheckpointError(f"{workdir}: every checkpoint is damaged: "
                                     + "; ".join(f"step {step}: {reason}" for step, reason in faults))
    if found is not None and faults:
        logging.warning("using the checkpoint at step %d in %s", found[1], workdir)
    return found


def _restore_newest_intact_loop(workdir: str, manager: ocp.CheckpointManager, restore, part: str,
                                faults: list[tuple[int, str]]) -> tuple[Any, int] | None:
    try:
        steps = sorted(manager.all_steps(), reverse=True)
    except Exception as error:  # noqa: BLE001 - orbax raises many kinds on a damaged folder
        raise DamagedCheckpointError(f"{workdir}: cannot list checkpoints ({error})") from None
    for step in steps:
        try:
            restored = restore(step)
            _verify(workdir, step, restored["params"], part)
        except Exception as error:  # noqa: BLE001 - a damaged step fails in orbax's own ways
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            faults.append((int(step), reason))
            continue
        return restored, int(step)
    return None


def make_manager(workdir: str, max_to_keep: int = 3) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )


def _state_tree(state: Any) -> dict:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
    """Save the train state (step, params, optimiser state) at ``step``, with its checksums.

    Args:
      manager: the run's checkpoint manager.
      step: the step to save under.
      state: the train state.
    """
    tree = _state_tree(state)
    workdir = os.path.dirname(str(manager.directory))
    try:
        manager.save(step, args=ocp.args.StandardSave(tree))
        # Waiting here turns a failed background write into one error at its own step, not
        # a traceback per later save while training goes on unsaved.
        manager.wait_until_finished()
        write_checksums(workdir, step, tree)
    except Exception as error:
        if _disk_full(error):
            raise DiskFullError(
                f"{workdir}: no space left on the device: the checkpoint at step {step} was not "
                "saved; free some space and run the same command again to resume from the last "
                "saved checkpoint"
            ) from None
        raise


def restore_latest(manager: ocp.CheckpointManager, state: Any) -> Any:
    """The newest intact saved state in the structure of ``state``, or ``state`` if none was
    saved. A damaged newer checkpoint (unreadable, or arrays not matching their checksum) is
    named in a warning and the one before it is used.

    Args:
      manager: the run's checkpoint manager.
      state: the freshly initialised train state (gives the structure).

    Returns:
      The restored state.
    """
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _state_tree(state))
    workdir = os.path.dirname(str(manager.directory))
    found = _restore_newest_intact(
        workdir, manager, lambda step: manager.restore(step, args=ocp.args.StandardRestore(abstract)), "params"
    )
    if found is None:
        return state
    return state.replace(**found[0])


def save_params(workdir: str, step: int, params: Any, opt_state: Any = None) -> None:
    """Write a checkpoint holding ``params`` (and an optimiser state, if given) at ``step``,
    e.g. for an imported model."""
    manager = make_manager(workdir)
    tree = {"step": step, "params": params, "opt_state": opt_state if opt_state is not None else {}}
    manager.save(step, args=ocp.args.StandardSave(tree))
    write_checksums(workdir, step, tree)
    manager.wait_until_finished()
    manager.close()


def load_params(workdir: str, step: int | None = None) -> tuple[Any, int]:
    """Parameters of the latest (or given) checkpoint in ``workdir``, and its step."""
    directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        raise MissingFileError(f"no checkpoints in {workdir} (expected {directory})")
    manager = make_manager(workdir)
    try:
        if step is not None:
            restored = manager.restore(step, args=ocp.args.StandardRestore())
            try:
                _verify(workdir, step, restored["params"], "params")
            except ValueError as error:
                raise DamagedCheckpointError(f"{workdir}: checkpoint at step {step}: {error}") from None
            return restored["params"], int(step)
        found = _restore_newest_intact(
            workdir, manager, lambda s: manager.restore(s, args=ocp.args.StandardRestore()), "params"
        )
    finally:
        manager.close()
    if found is None:
        raise MissingFileError(f"no finished checkpoint in {directory}")
    return found[0]["params"], found[1]


# Fields that fix the parameters' shapes and meaning: a resumed run must keep them.
MODEL_FIELDS = ("num_layers", "hidden_size", "learn_initial_state")


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
    path = os.path.join(workdir, CONFIG_FILE)
    files.atomic_write_text(path, config.to_json_best_effort(indent=2, sort_keys=True))


def load_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise MissingFileError(f"{path} not found: is {workdir} a folkrnn_jax run directory?")
    try:
        return ml_collections.ConfigDict(json.loads(files.read_text(path, "run config")))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: line {error.lineno}, column {error.colno}: not JSON ({error.msg})") from None
