"""Orbax checkpoints and the resolved config of a run, both kept in its workdir.

Orbax writes each step into a temporary folder and renames it when complete, so a run killed
while saving leaves the previous checkpoint intact; a restarted run restores the latest
finished one.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from folkrnn_jax import files
from folkrnn_jax.errors import MissingFileError

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def make_manager(workdir: str, max_to_keep: int = 3) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )


def _state_tree(state: Any) -> dict:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
    """Save the train state (step, params, optimiser state) at ``step``."""
    manager.save(step, args=ocp.args.StandardSave(_state_tree(state)))


def restore_latest(manager: ocp.CheckpointManager, state: Any) -> Any:
    """The latest saved state in the structure of ``state``, or ``state`` if none was saved."""
    step = manager.latest_step()
    if step is None:
        return state
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _state_tree(state))
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return state.replace(**restored)


def save_params(workdir: str, step: int, params: Any, opt_state: Any = None) -> None:
    """Write a checkpoint holding ``params`` (and an optimiser state, if given) at ``step``,
    e.g. for an imported model."""
    manager = make_manager(workdir)
    tree = {"step": step, "params": params, "opt_state": opt_state if opt_state is not None else {}}
    manager.save(step, args=ocp.args.StandardSave(tree))
    manager.wait_until_finished()
    manager.close()


def load_params(workdir: str, step: int | None = None) -> tuple[Any, int]:
    """Parameters of the latest (or given) checkpoint in ``workdir``, and its step."""
    directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        raise MissingFileError(f"no checkpoints in {workdir} (expected {directory})")
    manager = make_manager(workdir)
    step = manager.latest_step() if step is None else step
    if step is None:
        raise MissingFileError(f"no finished checkpoint in {directory}")
    restored = manager.restore(step, args=ocp.args.StandardRestore())
    manager.close()
    return restored["params"], int(step)


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    path = os.path.join(workdir, CONFIG_FILE)
    files.atomic_write_text(path, config.to_json_best_effort(indent=2, sort_keys=True))


def load_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise MissingFileError(f"{path} not found: is {workdir} a folkrnn_jax run directory?")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))
