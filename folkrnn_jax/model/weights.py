"""Trained models as files: the weights in one ``safetensors`` file, beside the config.

A model folder (``models/default/`` is the one shipped with the project) holds

- ``model.safetensors``: every parameter, named by its path in the Flax params tree
  (``lstm_0_w_in``, ``output/kernel``, ...), float32; a plain tensor format, no pickle;
- ``config.json``: the training config the model was built and trained with, in the same
  form as a run directory's ``config.json``, so every command that reads a run's config reads
  a model folder's too;
- ``model.json``: the manifest: format, the vocabulary in index order, the training step, the
  SHA-256 of ``model.safetensors``, and facts about the model (validation NLL, ...).

Loading checks the checksum first, so a damaged or tampered file is refused before it is
parsed; then that the tokens are the v2 vocabulary in the model's order; then every tensor's
name, shape and dtype against the model the config builds, and that all values are finite.
Each failure is one ``WeightsError`` naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util
from safetensors import SafetensorError
from safetensors.numpy import load as safetensors_load
from safetensors.numpy import save as safetensors_save

from folkrnn_jax import files
from folkrnn_jax.errors import UserError
from folkrnn_jax.model import folkrnn
from folkrnn_jax.music import vocab

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"  # also a run directory's config (training.checkpoints): one name for both
MANIFEST_FILE = "model.json"
FORMAT = "folkrnn_jax.weights/1"
# The model shipped with the project: what commands use when given no run directory.
DEFAULT_MODEL_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "models", "default"
)


class WeightsError(UserError):
    """A model folder whose weights, config or manifest cannot be used."""


def is_model_dir(directory: str) -> bool:
    """Whether ``directory`` is a model folder (as opposed to a training run directory)."""
    return os.path.exists(os.path.join(directory, MANIFEST_FILE))


def flat_params(params: Any) -> dict[str, np.ndarray]:
    """The params tree as ``{"a/b": float32 array}`` on the host."""
    flat = traverse_util.flatten_dict(jax.device_get(params), sep="/")
    return {name: np.asarray(value, np.float32) for name, value in flat.items()}


def export_model(
    directory: str, params: Any, config: ml_collections.ConfigDict, facts: dict[str, Any]
) -> str:
    """Write a model folder.

    Args:
      directory: the folder to write (created if missing). Each file is replaced atomically,
        the weights first and the manifest naming their checksum last, so a reader never pairs
        new weights with an old checksum that passes.
      params: the Flax params tree of ``folkrnn.model_from_config(config)``.
      config: the training config.
      facts: what the manifest records about the model besides its format (e.g. ``step``,
        validation NLL); JSON-serialisable.

    Returns:
      The SHA-256 (hex) of the weights file.
    """
    tensors = flat_params(params)
    blob = safetensors_save(tensors, metadata={"format": FORMAT})
    digest = hashlib.sha256(blob).hexdigest()
    files.atomic_write_bytes(os.path.join(directory, WEIGHTS_FILE), blob)
    files.atomic_write_text(
        os.path.join(directory, CONFIG_FILE), config.to_json_best_effort(indent=2, sort_keys=True)
    )
    manifest = {
        **facts,
        "format": FORMAT,
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": digest,
        "num_params": int(sum(v.size for v in tensors.values())),
        "tokens": list(vocab.TOKENS),
    }
    files.atomic_write_text(
        os.path.join(directory, MANIFEST_FILE), json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    )
    return digest


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise WeightsError(f"{path}: not found; is {os.path.dirname(path)} a model folder?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsError(f"{path}: not readable JSON ({error})") from None


def read_manifest(directory: str) -> dict[str, Any]:
    """The manifest of a model folder, checked for format and vocabulary."""
    path = os.path.join(directory, MANIFEST_FILE)
    manifest = _read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("tokens") != list(vocab.TOKENS):
        raise WeightsError(f"{path}: the model's tokens are not the 137 v2 tokens in their order")
    return manifest


def load_model(
    directory: str | None = None,
) -> tuple[folkrnn.FolkRNN, Any, ml_collections.ConfigDict, dict[str, Any]]:
    """Load a model folder.

    Args:
      directory: a folder written by ``export_model``; None for the shipped ``models/default``.

    Returns:
      ``(model, params, config, manifest)``: the Flax module, its params tree (jax arrays), the
      training config and the manifest.

    Raises:
      WeightsError: a missing or unreadable file, a checksum mismatch, tensors whose names,
        shapes or dtypes differ from the model the config builds, or non-finite values.
    """
    directory = directory or DEFAULT_MODEL_DIR
    manifest = read_manifest(directory)
    config_data = _read_json(os.path.join(directory, CONFIG_FILE))
    if not isinstance(config_data, dict):
        raise WeightsError(f"{os.path.join(directory, CONFIG_FILE)}: not a config object")
    config = ml_collections.ConfigDict(config_data)
    path = os.path.join(directory, WEIGHTS_FILE)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as error:
        raise WeightsError(f"{path}: cannot read the weights ({error.strerror})") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != manifest.get("weights_sha256"):
        raise WeightsError(
            f"{path}: checksum mismatch (SHA-256 {digest[:16]}..., {MANIFEST_FILE} expects "
            f"{str(manifest.get('weights_sha256'))[:16]}...): the file is damaged or was changed"
        )
    try:
        tensors = safetensors_load(blob)
    except (SafetensorError, ValueError) as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({error})") from None
    try:
        model = folkrnn.model_from_config(config)
        abstract = jax.eval_shape(lambda: folkrnn.init_params(model, jax.random.PRNGKey(0)))
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise WeightsError(f"{os.path.join(directory, CONFIG_FILE)}: cannot build the model ({error})") from None
    expected = traverse_util.flatten_dict(abstract, sep="/")
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"{path}: tensors do not match the model of {CONFIG_FILE} (missing: "
            f"{', '.join(missing) or 'none'}; unexpected: {', '.join(unexpected) or 'none'})"
        )
    for name, spec in expected.items():
        array = tensors[name]
        if array.shape != spec.shape or array.dtype != spec.dtype:
            raise WeightsError(
                f"{path}: tensor {name} is {array.dtype}{list(array.shape)}, the model of "
                f"{CONFIG_FILE} needs {spec.dtype}{list(spec.shape)}"
            )
        if not np.isfinite(array).all():
            raise WeightsError(f"{path}: tensor {name} holds NaN or infinite values")
    params = traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in tensors.items()}, sep="/")
    return model, params, config, manifest
