"""Loading a trained run (config + latest checkpoint) for sampling, scoring and analysis."""

from __future__ import annotations

from typing import Any

from folkrnn_jax import checkpoints, model as model_lib


def load_run(workdir: str, step: int | None = None) -> tuple[model_lib.FolkRNN, Any, int]:
    """The model, its parameters and the checkpoint step of the run in ``workdir``."""
    config = checkpoints.load_config(workdir)
    params, step = checkpoints.load_params(workdir, step)
    return model_lib.model_from_config(config), params, step
