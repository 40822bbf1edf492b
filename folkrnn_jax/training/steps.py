"""jit-compiled train and eval steps, and validation over any number of batches."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp

from folkrnn_jax.data.batching import Batch
from folkrnn_jax.model import folkrnn
from folkrnn_jax.training import parallel
from folkrnn_jax.training.loss import loss_and_grads, token_nll
from folkrnn_jax.training.state import TrainState

Array = jax.Array


def make_train_step(
    model: folkrnn.FolkRNN, normalization: str, mesh: jax.sharding.Mesh | None = None
) -> Callable:
    """A jit-compiled step: forward with dropout, backward, optimiser update. The state is
    donated (updated in place). With a ``mesh``, the batch is sharded along its 'data' axis and
    the state replicated (see ``parallel``)."""

    grad_fn = loss_and_grads(model, normalization)

    def train_step(state: TrainState, batch: Batch, dropout_key: Array) -> tuple[TrainState, Array]:
        loss, grads = grad_fn(state.params, batch, dropout_key)
        return state.apply_gradients(grads=grads), loss

    if mesh is None:
        return jax.jit(train_step, donate_argnums=(0,))
    rep, shard = parallel.replicated(mesh), parallel.data_sharding(mesh)
    return jax.jit(
        train_step, donate_argnums=(0,), in_shardings=(rep, shard, rep), out_shardings=(rep, rep)
    )


def make_eval_step(
    model: folkrnn.FolkRNN, dropout: bool = False, mesh: jax.sharding.Mesh | None = None
) -> Callable:
    """A jit-compiled step returning summed NLL, token count, summed per-tune-normalised NLL
    and tune count, so that any number of batches can be combined exactly."""

    def eval_step(params: Any, batch: Batch, dropout_key: Array) -> dict:
        logits = model.apply(
            {"params": params}, batch.inputs, train=dropout, mask=batch.mask, resets=batch.resets,
            rngs={"dropout": dropout_key},
        )  # [batch, time, vocab]
        nll = token_nll(logits, batch.targets) * batch.mask  # [batch, time]
        real = (batch.mask.sum(axis=1) > 0).astype(nll.dtype)
        return {
            "nll_sum": nll.sum(),
            "tokens": batch.mask.sum(),
            "tune_nll_sum": (nll.sum(axis=1) / jnp.maximum(batch.lengths, 1) * real).sum(),
            "tunes": real.sum(),
        }

    if mesh is None:
        return jax.jit(eval_step)
    rep, shard = parallel.replicated(mesh), parallel.data_sharding(mesh)
    return jax.jit(eval_step, in_shardings=(rep, shard, rep), out_shardings=rep)


def evaluate(
    eval_step: Callable, params: Any, batches: Iterable[Batch], key: Array,
    mesh: jax.sharding.Mesh | None = None,
) -> dict:
    """Validation NLL in nats per token, per-tune-normalised NLL, and perplexity."""
    totals = {"nll_sum": 0.0, "tokens": 0.0, "tune_nll_sum": 0.0, "tunes": 0.0}
    for i, batch in enumerate(batches):
        out = eval_step(params, parallel.shard_batch(batch, mesh), jax.random.fold_in(key, i))
        for k in totals:
            totals[k] += float(out[k])
    per_token = totals["nll_sum"] / max(totals["tokens"], 1.0)
    return {
        "valid_loss": per_token,
        "valid_loss_per_tune": totals["tune_nll_sum"] / max(totals["tunes"], 1.0),
        "valid_perplexity": math.exp(per_token),
        "valid_tokens": int(totals["tokens"]),
    }


def evaluate_sources(
    eval_step: Callable, params: Any, batches: dict[str, list[Batch]], key: Array,
    mesh: jax.sharding.Mesh | None = None,
) -> dict:
    """``evaluate`` over all validation batches together (``valid_loss`` ...) and, when there
    are several sources, per source as ``valid_loss/NAME`` and ``valid_loss_per_tune/NAME``."""
    combined = evaluate(eval_step, params, [b for bs in batches.values() for b in bs], key, mesh)
    if len(batches) > 1:
        for name, source_batches in batches.items():
            m = evaluate(eval_step, params, source_batches, key, mesh)
            combined[f"valid_loss/{name}"] = m["valid_loss"]
            combined[f"valid_loss_per_tune/{name}"] = m["valid_loss_per_tune"]
    return combined
