"""Best of N: draw N candidates per tune and keep the one the model itself scores highest.

Sampling (constrained or free) decides token by token; a tune's quality as a whole, and in
particular whether its parts close where the melody wants to close, shows only once it is
written. Reranking asks the model (unconstrained, dropout off) how likely each finished
candidate is and keeps the best one per tune:

* ``"tune"``: the mean log-probability per token of the whole tune (``<s>`` excluded,
  ``</s>`` included): the model's own judgement of the tune, independent of its length;
* ``"cadence"``: the mean log-probability per token of the tune's closing bars, the last bar
  of each section with the bar line that closes it (``:|``, a ``|:`` after a bar, the end)
  and ``</s>``: how readily the model itself would have closed each part where the
  structure constraint closed it. No note is forced; among candidates that all close by the
  constraint's bar count, the one whose closings the model finds most natural is kept.

Candidate ``j`` of tune ``i`` is tune ``i * n + j`` of the seed (``sampler.sample_many``), so
``n = 1`` gives the plain sampler's tunes and the candidates are reproducible.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Sequence

import jax
import numpy as np

from folkrnn_jax.errors import InputError
from folkrnn_jax.generate import sampler
from folkrnn_jax.model.folkrnn import FolkRNN
from folkrnn_jax.music import vocab
from folkrnn_jax.training import loss

RANKINGS = ("tune", "cadence")
# Sections close at these bar lines ('|:' only when a bar comes before it).
CLOSING_BARS = frozenset((":|", "|:"))
SCORE_ROWS = 64  # candidates scored in one forward pass
LENGTH_STEP = 64  # padded lengths are multiples of this (few compiled shapes)


@functools.partial(jax.jit, static_argnums=0)
def _token_log_probs(model: FolkRNN, params: Any, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    logits = model.apply({"params": params}, inputs, train=False)  # [rows, time, vocab]
    return -loss.token_nll(logits, targets)  # [rows, time]


def token_log_probs(model: FolkRNN, params: Any, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Natural-log probability of every token after ``<s>`` of each id sequence under the
    model (unconstrained, dropout off).

    Args:
      model, params: the model and its parameters.
      sequences: id sequences ``<s> ... </s>`` (or cut short).

    Returns:
      One float32 array per sequence, [len(sequence) - 1]: entry t is log p(token t+1 | tokens
      0..t).
    """
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    result: list[np.ndarray] = [np.zeros(0, np.float32)] * len(sequences)
    for start in range(0, len(order), SCORE_ROWS):
        chunk = order[start:start + SCORE_ROWS]
        width = max(len(sequences[i]) - 1 for i in chunk)
        width = max(LENGTH_STEP, -(-width // LENGTH_STEP) * LENGTH_STEP)
        inputs = np.zeros((SCORE_ROWS, width), np.int32)  # [rows, time]
        targets = np.zeros((SCORE_ROWS, width), np.int32)
        for row, i in enumerate(chunk):
            seq = np.asarray(sequences[i], np.int32)
            inputs[row, :len(seq) - 1] = seq[:-1]
            targets[row, :len(seq) - 1] = seq[1:]
        log_probs = np.asarray(_token_log_probs(model, params, inputs, targets))  # [rows, time]
        for row, i in enumerate(chunk):
            result[i] = log_probs[row, :len(sequences[i]) - 1]
    return result


def closing_positions(tokens: Sequence[str]) -> np.ndarray:
    """Positions (indices into ``tokens``) of the tune's closing bars: for each bar line that
    closes a section (``:|``, or ``|:`` after a bar) and for the end of the tune, the tokens of
    the bar before it, the bar line itself and ``</s>``.

    Args:
      tokens: a sampled tune, ``<s> ... </s>``.

    Returns:
      Sorted int positions (empty when the tune has no bar).
    """
    bar_lines = [i for i, token in enumerate(tokens) if token in vocab.BAR_TOKENS]
    positions: list[int] = []
    for k, i in enumerate(bar_lines):
        closes = tokens[i] == ":|" or (tokens[i] == "|:" and k > 0 and tokens[i - 1] not in vocab.BAR_TOKENS)
        last_bar = i + 1 < len(tokens) and tokens[i + 1] == vocab.END
        if closes or last_bar:
            positions.extend(range(bar_lines[k - 1] + 1 if k else 1, i + 1))
        if last_bar:
            positions.append(i + 1)
    return np.asarray(sorted(set(p for p in positions if p > 0)), np.int64)


def score_tune(tokens: Sequence[str], log_probs: np.ndarray, ranking: str) -> float:
    """A candidate's score: its mean log-probability per token over the whole tune
    (``"tune"``) or over its closing bars (``"cadence"``, ``closing_positions``).

    Args:
      tokens: the tune, ``<s> ... </s>``.
      log_probs: [len(tokens) - 1] from ``token_log_probs`` (entry t scores token t + 1).
      ranking: one of ``RANKINGS``.
    """
    if ranking == "tune":
        return float(np.mean(log_probs)) if len(log_probs) else -np.inf
    positions = closing_positions(tokens)
    return float(np.mean(log_probs[positions - 1])) if len(positions) else -np.inf


def score_candidates(model: FolkRNN, params: Any, tunes: Sequence[Sequence[str]], ranking: str = "tune") -> list[float]:
    """Each finished tune's score by the model itself (``score_tune``): what ``best_of`` and
    the composer's best-of rank by.

    Args:
      model, params: the model and its parameters (as sampled from; ``sampler.sampling_params``
        is applied here).
      tunes: token lists ``<s> ... </s>`` (or cut short).
      ranking: one of ``RANKINGS``.

    Returns:
      One score per tune, higher is better.
    """
    if ranking not in RANKINGS:
        raise InputError(f"unknown ranking {ranking!r}: choose from {', '.join(RANKINGS)}")
    log_probs = token_log_probs(model, sampler.sampling_params(model, params), [vocab.encode(t) for t in tunes])
    return [score_tune(t, lp, ranking) for t, lp in zip(tunes, log_probs)]


@dataclasses.dataclass
class BestOf:
    """The kept tunes (token lists, ``<s> ... </s>``), the index under the seed of each kept
    candidate, each kept tune's score, the candidates drawn in all, how many of the kept tunes
    reached the length limit, and the seconds spent sampling and scoring."""

    tunes: list[list[str]]
    indices: list[int]
    scores: list[float]
    sampled: int
    truncated: int
    sampling_seconds: float
    scoring_seconds: float


def best_of(
    model: FolkRNN, params: Any, key: jax.Array, num_tunes: int, n: int, *, ranking: str = "tune",
    chunk_size: int = 256, progress: Any = None, **options: Any,
) -> BestOf:
    """``num_tunes`` tunes, each the best of ``n`` candidates by the model's own score.

    Args:
      model, params: the model and its parameters.
      key: the seed key.
      num_tunes: tunes to keep.
      n: candidates per tune (1: plain sampling).
      ranking: ``"tune"`` or ``"cadence"`` (``score_tune``).
      chunk_size: batch rows while sampling (``sampler.sample_many``).
      progress: ``progress(kept, sampled)`` while sampling candidates.
      options: ``sampler.prepare_request``'s options (``temperature``, ``constrain``, ...).

    Returns:
      ``BestOf``.
    """
    if n < 1:
        raise InputError(f"best_of must be at least 1 (got {n})")
    if ranking not in RANKINGS:
        raise InputError(f"unknown ranking {ranking!r}: choose from {', '.join(RANKINGS)}")
    started = time.time()
    many = sampler.sample_many(model, params, key, num_tunes * n, chunk_size=chunk_size, progress=progress,
                               **options)
    sampled_at = time.time()
    if n == 1:
        scores = [0.0] * num_tunes
        chosen = list(range(num_tunes))
    else:
        candidate_scores = np.asarray(score_candidates(model, params, many.tunes, ranking))
        candidate_scores = candidate_scores.reshape(num_tunes, n)  # [tunes, n]
        best = np.argmax(candidate_scores, axis=1)
        chosen = [i * n + int(j) for i, j in enumerate(best)]
        scores = [float(candidate_scores[i, j]) for i, j in enumerate(best)]
    tunes = [many.tunes[c] for c in chosen]
    return BestOf(
        tunes=tunes, indices=[many.indices[c] for c in chosen], scores=scores, sampled=many.sampled,
        truncated=sum(t[-1] != vocab.END for t in tunes), sampling_seconds=sampled_at - started,
        scoring_seconds=time.time() - sampled_at,
    )
