"""The training loss: token negative log-likelihood, masked, normalised per token or per tune."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from folkrnn_jax.data.batching import Batch
from folkrnn_jax.errors import InputError
from folkrnn_jax.model import folkrnn

Array = jax.Array


def token_nll(logits: Array, targets: Array) -> Array:
    """Negative log-likelihood of each target token, [batch, time]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets)


def sequence_loss(
    logits: Array, targets: Array, mask: Array, lengths: Array, normalization: str = "token"
) -> Array:
    """Mean NLL over real tokens (``token``), or each tune's summed NLL divided by its full
    length including ``<s>`` and ``</s>`` and then averaged over tunes (``tune``, as the
    original computed it). Padding never counts."""
    nll = token_nll(logits, targets) * mask  # [batch, time]
    if normalization == "token":
        return nll.sum() / jnp.maximum(mask.sum(), 1.0)
    if normalization == "tune":
        real = (mask.sum(axis=1) > 0).astype(nll.dtype)  # [batch]
        per_tune = nll.sum(axis=1) / jnp.maximum(lengths, 1)
        return (per_tune * real).sum() / jnp.maximum(real.sum(), 1.0)
    raise InputError(f"unknown loss normalization {normalization!r} (use 'token' or 'tune')")


def loss_and_grads(model: folkrnn.FolkRNN, normalization: str) -> Callable:
    """``f(params, batch, dropout_key) -> (loss, grads)``: the forward pass with dropout and
    its gradient (the train step's).

    Args:
      model: the model.
      normalization: ``"token"`` or ``"tune"`` (see ``sequence_loss``).

    Returns:
      A function of params, a ``Batch`` and a dropout key, returning the scalar loss and the
      gradients.
    """

    def loss_fn(params: Any, batch: Batch, dropout_key: Array) -> Array:
        logits = model.apply(
            {"params": params}, batch.inputs, train=True, mask=batch.mask, resets=batch.resets,
            rngs={"dropout": dropout_key},
        )  # [batch, time, vocab]
        return sequence_loss(logits, batch.targets, batch.mask, batch.lengths, normalization)

    return jax.value_and_grad(loss_fn)
