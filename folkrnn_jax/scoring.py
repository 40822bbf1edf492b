"""Per-tune log-probabilities under a model: log p(tune) = sum over the tune's tokens after
``<s>`` (through ``</s>`` inclusive) of log p(token | everything before it), dropout off."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import numpy as np

from folkrnn_jax import data, model as model_lib, train


@functools.partial(jax.jit, static_argnums=0)
def _batch_log_probs(model: model_lib.FolkRNN, params: Any, batch: dict) -> jax.Array:
    logits = model.apply({"params": params}, batch["inputs"], train=False, mask=batch["mask"])
    nll = train.token_nll(logits, batch["targets"]) * batch["mask"]
    return -nll.sum(axis=1)  # [batch]


def score_sequences(
    model: model_lib.FolkRNN, params: Any, sequences: Sequence[np.ndarray], batch_size: int = 64
) -> np.ndarray:
    """Natural-log probability of each ``<s> ... </s>`` id sequence, in the given order.

    Tunes are batched in length order (so padding and the number of compiled shapes stay
    small); every batch has ``batch_size`` rows, the last one padded with empty rows.
    """
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    result = np.zeros(len(sequences), np.float64)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = data.make_batch([sequences[i] for i in chunk])
        pad = batch_size - len(chunk)
        arrays = {
            "inputs": np.pad(batch.inputs, ((0, pad), (0, 0))),
            "targets": np.pad(batch.targets, ((0, pad), (0, 0))),
            "mask": np.pad(batch.mask, ((0, pad), (0, 0))),
        }
        log_probs = np.asarray(_batch_log_probs(model, params, arrays))
        result[chunk] = log_probs[: len(chunk)]
    return result


def score_file(
    model: model_lib.FolkRNN, params: Any, path: str, batch_size: int = 64
) -> list[dict]:
    """One record per tune of a v2-format file, in file order: ``index`` (from 0), ``tokens``
    (the sequence length including ``<s>`` and ``</s>``) and ``log_prob`` (natural log)."""
    sequences = data.encode_tunes(data.read_v2_file(path))
    log_probs = score_sequences(model, params, sequences, batch_size)
    return [
        {"index": i, "tokens": int(len(seq)), "log_prob": float(lp)}
        for i, (seq, lp) in enumerate(zip(sequences, log_probs))
    ]
