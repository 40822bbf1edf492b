"""Orbax checkpoints of a run, kept in its workdir, with checksums of their parameters.

Orbax writes each step into a temporary folder and renames it when complete, so a run killed
while saving leaves the previous checkpoint intact; a restarted run restores the latest
finished one. On a multi-process run orbax coordinates the processes itself; the checksums
are written by process 0 alone. (The lock and ``config.json`` are in ``rundir``.)
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import logging as py_logging
import os
import re
import sys
import tempfile
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from folkrnn_jax import files
from folkrnn_jax.errors import InputError, MissingFileError, UserError
from folkrnn_jax.training.rundir import CHECKPOINT_DIR

# Outside the orbax folder, which orbax owns: STEP.json holds the arrays' checksums.
CHECKSUM_DIR = "checksums"


class DamagedCheckpointError(InputError):
    """No checkpoint of a run could be restored intact; the message names each step's fault."""


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


def tree_checksum(tree: Any) -> str:
    """SHA-256 over the leaves of ``tree`` (shapes, dtypes and bytes, in tree order).

    Args:
      tree: a pytree of arrays or numbers.

    Returns:
      The hex digest.
    """
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            leaf = leaf.addressable_data(0)  # replicated over processes: this process's copy
        array = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
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
    sums = {"params": tree_checksum(tree["params"])}  # every process takes part in reading
    if jax.process_index() != 0:
        return
    os.makedirs(os.path.dirname(_checksum_path(workdir, step)), exist_ok=True)
    # The params only: the step and optimiser state come back in the restoring run's own
    # types and structure (an imported int step restores as int32), so their bytes differ.
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


# A failed orbax read of a damaged step leaves messages behind from its storage threads when
# their futures are collected: asyncio's "Task exception was never retrieved" (a log record)
# and "Event loop is closed" (an unraisable exception). The warning naming the damaged step
# says what they would; they are dropped where they arise, nothing else is.
_LEFTOVER_MARKS = ("ocdbt", "zarr", "tensorstore", "orbax", CHECKPOINT_DIR)


class _OrbaxLeftovers(py_logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" for an orbax read."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Task exception was never retrieved"):
            return True
        text = f"{record.getMessage()} {record.exc_info[1] if record.exc_info else ''}".lower()
        return not any(mark in text for mark in _LEFTOVER_MARKS)


py_logging.getLogger("asyncio").addFilter(_OrbaxLeftovers())


_LEFTOVER_LINE = re.compile(
    r"^(Traceback \(most recent call last\):|\s+File \".*asyncio.*\", line \d+, in \w+|\s+self\._check_closed\(\)"
    r"|\s+raise RuntimeError\('Event loop is closed'\)|RuntimeError: Event loop is closed|\s*\^+|\s*)$"
)


@contextlib.contextmanager
def _leftovers_filtered():
    """While reading checkpoints, drop the "Event loop is closed" tracebacks that a failed
    read of a damaged step leaves: as unraisable exceptions, or printed straight to file
    descriptor 2 by orbax's storage threads (during the later reads, or when the futures are
    collected). What fd 2 receives meanwhile is held and every other line shown again
    afterwards, so nothing else is lost."""
    previous = sys.unraisablehook

    def hook(unraisable):
        if not (isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value)):
            previous(unraisable)

    sys.unraisablehook = hook
    sys.stderr.flush()
    saved = os.dup(2)
    held = tempfile.TemporaryFile()
    os.dup2(held.fileno(), 2)
    try:
        yield
    finally:
        gc.collect()  # the failed reads' futures report when collected: here, not later
        time.sleep(0.2)  # the storage threads print as their callbacks fail
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sys.unraisablehook = previous
        held.seek(0)
        text = held.read().decode("utf-8", "replace")
        held.close()
        sys.stderr.write("".join(
            line for line in text.splitlines(keepends=True) if not _LEFTOVER_LINE.match(line.rstrip("\n"))))


def _restore_newest_intact(workdir: str, manager: ocp.CheckpointManager, restore, part: str) -> tuple[Any, int] | None:
    """Restore the newest step that reads and verifies, warning about each damaged newer one."""
    faults: list[tuple[int, str]] = []
    with _leftovers_filtered():
        found = _restore_newest_intact_loop(workdir, manager, restore, part, faults)
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


class _SavedTree(dict):
    """A step, params and optimiser state given as they are, in the shape ``save`` reads."""

    step = property(lambda self: self["step"])
    params = property(lambda self: self["params"])
    opt_state = property(lambda self: self["opt_state"])


def save_params(workdir: str, step: int, params: Any, opt_state: Any = None) -> None:
    """Write a checkpoint holding ``params`` (and an optimiser state, if given) at ``step``,
    e.g. for an imported model, through ``save`` (checksums after orbax has finished; a full
    disk is one ``DiskFullError``)."""
    manager = make_manager(workdir)
    try:
        save(manager, step, _SavedTree(step=step, params=params, opt_state=opt_state if opt_state is not None else {}))
    finally:
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
