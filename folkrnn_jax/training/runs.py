"""Loading a trained model for sampling, scoring and analysis: a training run directory
(config + orbax checkpoints), a model folder (``model.weights``), or, given neither, the model
shipped with the project (``models/default``)."""

from __future__ import annotations

import os
from typing import Any

from folkrnn_jax.errors import InputError
from folkrnn_jax.model import folkrnn, weights
from folkrnn_jax.training import checkpoints


def resolve(workdir: str | None) -> str:
    """The folder a command reads: ``workdir``, or the shipped model's folder if None."""
    return workdir or weights.DEFAULT_MODEL_DIR


def load_run(workdir: str | None = None, step: int | None = None) -> tuple[folkrnn.FolkRNN, Any, int]:
    """The model, its parameters and its training step.

    Args:
      workdir: a run directory, a model folder, or None for the shipped model.
      step: for a run directory, the checkpoint to load (default: the latest); a model folder
        holds one set of weights, so a different step is an error.

    Returns:
      ``(model, params, step)``.
    """
    directory = resolve(workdir)
    if weights.is_model_dir(directory):
        model, params, _, manifest = weights.load_model(directory)
        if step is not None and step != manifest.get("step"):
            raise weights.WeightsError(
                f"{directory} holds the weights of step {manifest.get('step')}, not step {step}"
            )
        return model, params, int(manifest.get("step", 0))
    config = checkpoints.load_config(directory)
    params, step = checkpoints.load_params(directory, step)
    return folkrnn.model_from_config(config), params, step


def export_run(workdir: str, output: str, step: int | None = None, facts: dict | None = None,
               overwrite: bool = False) -> str:
    """Write the parameters of a run's checkpoint as a model folder (``weights.export_model``).

    Args:
      workdir: the run directory.
      output: the model folder to write.
      step: the checkpoint (default: the latest).
      facts: extra manifest entries (e.g. validation NLL); the step is added.
      overwrite: replace the files of an ``output`` folder that already holds some.

    Returns:
      The SHA-256 of the weights file.

    Raises:
      InputError: ``output`` holds files and ``overwrite`` is False (checked before the
        checkpoint is read).
    """
    if not overwrite and os.path.isdir(output) and os.listdir(output):
        raise InputError(f"{output} already holds files ({', '.join(sorted(os.listdir(output))[:4])}); "
                         "give --overwrite to replace them, or another --output")
    config = checkpoints.load_config(workdir)
    params, step = checkpoints.load_params(workdir, step)
    return weights.export_model(output, params, config, {**(facts or {}), "step": int(step)})
