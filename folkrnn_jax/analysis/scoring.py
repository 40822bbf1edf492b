"""Per-tune log-probabilities under a model: log p(tune) = sum over the tune's tokens after
``<s>`` (through ``</s>`` inclusive) of log p(token | everything before it), dropout off."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import numpy as np

from folkrnn_jax.data import batching, v2_format
from folkrnn_jax.model import folkrnn
from folkrnn_jax.training import loss


@functools.partial(jax.jit, static_argnums=0)
def _batch_log_probs(model: folkrnn.FolkRNN, params: Any, batch: batching.Batch) -> jax.Array:
    logits = model.apply({"params": params}, batch.inputs, train=False, mask=batch.mask)
    nll = loss.token_nll(logits, batch.targets) * batch.mask  # [batch, time]
    return -nll.sum(axis=1)  # [batch]


# Rows x padded length of one batch stays under batch_size x this many tokens: the last batch
# padded to batch_size rows at the longest tune's length asked for 31 GB for one
# 100,000-token tune. Batches of long tunes get fewer rows instead (one at least).
TOKENS_PER_ROW = 1024


def _row_count(tunes: int, batch_size: int) -> int:
    """Rows to pad a batch of ``tunes`` to: a power of two up to ``batch_size``, so that few
    shapes are compiled."""
    rows = 1
    while rows < tunes:
        rows *= 2
    return min(rows, batch_size)  # never fewer than tunes: a batch holds at most batch_size


def score_sequences(
    model: folkrnn.FolkRNN, params: Any, sequences: Sequence[np.ndarray], batch_size: int = 64
) -> np.ndarray:
    """Natural-log probability of each ``<s> ... </s>`` id sequence, in the given order.

    Tunes are batched in length order (so padding and the number of compiled shapes stay
    small); a batch has at most ``batch_size`` rows and ``batch_size * TOKENS_PER_ROW``
    padded tokens, and is padded with empty rows to a power of two.

    Args:
      model: the model.
      params: its parameters.
      sequences: id sequences, each ``<s> ... </s>``.
      batch_size: the most tunes scored at once.

    Returns:
      [len(sequences)] float64 log-probabilities.
    """
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    budget = batch_size * TOKENS_PER_ROW
    chunks: list[list[int]] = []
    for index in order:
        longest = len(sequences[index])  # ascending order: the newest tune is the longest
        if not chunks or len(chunks[-1]) == batch_size or (len(chunks[-1]) + 1) * longest > budget:
            chunks.append([])
        chunks[-1].append(index)
    result = np.zeros(len(sequences), np.float64)
    for chunk in chunks:
        batch = batching.pad_rows(batching.make_batch([sequences[i] for i in chunk]), _row_count(len(chunk), batch_size))
        log_probs = np.asarray(_batch_log_probs(model, params, batch))  # [rows]
        result[chunk] = log_probs[: len(chunk)]
    return result


def score_file(
    model: folkrnn.FolkRNN, params: Any, path: str, batch_size: int = 64
) -> list[dict]:
    """One record per tune of a v2-format file or an ABC file written by ``experiments.sample``
    (``v2_format.read_tunes``), in file order: ``index`` (from 0), ``tokens`` (the sequence
    length including ``<s>`` and ``</s>``) and ``log_prob`` (natural log)."""
    sequences = v2_format.encode_tunes(v2_format.read_tunes(path))
    log_probs = score_sequences(model, params, sequences, batch_size)
    return [
        {"index": i, "tokens": int(len(seq)), "log_prob": float(lp)}
        for i, (seq, lp) in enumerate(zip(sequences, log_probs))
    ]
