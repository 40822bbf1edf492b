"""Per-tune log-probabilities under a model: log p(tune) = sum over the tune's tokens after
``<s>`` (through ``</s>`` inclusive) of log p(token | everything before it), dropout off."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import numpy as np

from folkrnn_jax.data import batching, v2_format
from folkrnn_jax.model import folkrnn
from folkrnn_jax.training import loss, steps


@functools.partial(jax.jit, static_argnums=0)
def _batch_log_probs(model: folkrnn.FolkRNN, params: Any, batch: dict) -> jax.Array:
    logits = model.apply({"params": params}, batch["inputs"], train=False, mask=batch["mask"])
    nll = loss.token_nll(logits, batch["targets"]) * batch["mask"]
    return -nll.sum(axis=1)  # [batch]


def score_sequences(
    model: folkrnn.FolkRNN, params: Any, sequences: Sequence[np.ndarray], batch_size: int = 64
) -> np.ndarray:
    """Natural-log probability of each ``<s> ... </s>`` id sequence, in the given order.

    Tunes are batched in length order (so padding and the number of compiled shapes stay
    small); every batch has ``batch_size`` rows, the last one padded with empty rows.
    """
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))  # as the batches are
    result = np.zeros(len(sequences), np.float64)
    batches = batching.evaluation_batches(sequences, batch_size)
    for start, batch in zip(range(0, len(order), batch_size), batches):
        chunk = order[start : start + batch_size]
        log_probs = np.asarray(_batch_log_probs(model, params, steps.batch_to_dict(batch)))  # [batch]
        result[chunk] = log_probs[: len(chunk)]
    return result


def score_file(
    model: folkrnn.FolkRNN, params: Any, path: str, batch_size: int = 64
) -> list[dict]:
    """One record per tune of a v2-format file, in file order: ``index`` (from 0), ``tokens``
    (the sequence length including ``<s>`` and ``</s>``) and ``log_prob`` (natural log)."""
    sequences = v2_format.encode_tunes(v2_format.read_v2_file(path))
    log_probs = score_sequences(model, params, sequences, batch_size)
    return [
        {"index": i, "tokens": int(len(seq)), "log_prob": float(lp)}
        for i, (seq, lp) in enumerate(zip(sequences, log_probs))
    ]
