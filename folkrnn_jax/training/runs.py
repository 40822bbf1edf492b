"""Loading a trained run (config + latest checkpoint) for sampling, scoring and analysis."""

from __future__ import annotations

from typing import Any

from folkrnn_jax.model import folkrnn
from folkrnn_jax.training import checkpoints


def load_run(workdir: str, step: int | None = None) -> tuple[folkrnn.FolkRNN, Any, int]:
    """The model, its parameters and the checkpoint step of the run in ``workdir``."""
    config = checkpoints.load_config(workdir)
    params, step = checkpoints.load_params(workdir, step)
    return folkrnn.model_from_config(config), params, step
