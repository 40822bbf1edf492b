"""Loading a trained model for sampling, scoring and analysis: a training run directory
(config + orbax checkpoints), a model folder (``model.weights``), or, given neither, the model
shipped with the project (``models/default``)."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from folkrnn_jax import files
from folkrnn_jax.errors import InputError
from folkrnn_jax.model import folkrnn, weights
from folkrnn_jax.training import checkpoints, rundir
from folkrnn_jax.training import metrics as metrics_lib
from folkrnn_jax.training import state as state_lib

METRICS_FILE = "metrics.jsonl"


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
    config = rundir.load_config(directory)
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
    config = rundir.load_config(workdir)
    params, step = checkpoints.load_params(workdir, step)
    digest = weights.export_model(output, params, config, {**(facts or {}), "step": int(step)})
    # The learning curves travel with the weights: for the model card, and so that a run
    # started from the folder (``run_from_model``) goes on with its history.
    if os.path.exists(os.path.join(workdir, METRICS_FILE)):
        kept = [r for r in metrics_lib.read_metrics(workdir) if r["step"] <= step]
        files.atomic_write_text(os.path.join(output, METRICS_FILE), "".join(json.dumps(r) + "\n" for r in kept))
    return digest


def run_from_model(model_dir: str, workdir: str) -> int:
    """Start a training run directory from a model folder, so that ``experiments.train`` goes on
    training exported weights (e.g. the shipped model, in a session whose earlier run directory
    is gone).

    The folder's config and weights become the run's config.json and a checkpoint at the
    folder's step; RMSprop's statistics start from zero (a model folder holds none), with the
    learning-rate schedule at that step; the folder's metrics history, if any, is copied so the
    learning curves and early stopping go on.

    Args:
      model_dir: a folder written by ``export_model`` / ``export_run``.
      workdir: the run directory to create; it must hold no checkpoints yet.

    Returns:
      The step the run starts from.

    Raises:
      InputError: ``workdir`` already holds checkpoints.
      WeightsError: the model folder is damaged.
    """
    _, params, config, manifest = weights.load_model(model_dir)
    if os.path.isdir(os.path.join(workdir, checkpoints.CHECKPOINT_DIR)):
        raise InputError(f"{workdir} already holds checkpoints; start from {model_dir} in a new directory")
    step = int(manifest.get("step", 0))
    os.makedirs(workdir, exist_ok=True)
    rundir.save_config(workdir, config)
    checkpoints.save_params(workdir, step, params, state_lib.optimizer_state_at(config, params, step))
    metrics = os.path.join(model_dir, METRICS_FILE)
    if os.path.exists(metrics):
        shutil.copyfile(metrics, os.path.join(workdir, METRICS_FILE))
    return step
