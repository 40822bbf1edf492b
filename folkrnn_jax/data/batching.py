"""Length-bucketed training batches and padded evaluation batches."""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np


def padded_length(length: int, min_length: int = 16) -> int:
    """Round a length up to a coarse grid (steps of 1/8 of the next power of two below it), so
    that jit compiles a few dozen shapes at most and padding wastes at most about 12%."""
    length = max(length, min_length)
    step = max(min_length // 2, 1 << max(int(np.floor(np.log2(length))) - 3, 0))
    return int(-(-length // step) * step)


@dataclasses.dataclass(frozen=True)
class Batch:
    """A padded batch. ``inputs`` and ``targets`` are [batch, time]; ``mask`` is 1.0 on real
    prediction steps; ``lengths`` is each tune's full length including ``<s>`` and ``</s>``."""

    inputs: np.ndarray  # [batch, time] int32
    targets: np.ndarray  # [batch, time] int32
    mask: np.ndarray  # [batch, time] float32
    lengths: np.ndarray  # [batch] int32

    @property
    def num_tokens(self) -> int:
        return int(self.mask.sum())


def make_batch(sequences: Sequence[np.ndarray]) -> Batch:
    """Pad sequences of ``<s> ... </s>`` into inputs (all but last) and targets (all but first)."""
    longest = max(len(s) for s in sequences) - 1
    time = padded_length(longest)
    inputs = np.zeros((len(sequences), time), np.int32)
    targets = np.zeros((len(sequences), time), np.int32)
    mask = np.zeros((len(sequences), time), np.float32)
    for row, seq in enumerate(sequences):
        n = len(seq) - 1
        inputs[row, :n] = seq[:-1]
        targets[row, :n] = seq[1:]
        mask[row, :n] = 1.0
    lengths = np.asarray([len(s) for s in sequences], np.int32)
    return Batch(inputs, targets, mask, lengths)


def bucketed_batch_indices(
    lengths: Sequence[int], batch_size: int, rng: np.random.RandomState
) -> list[list[int]]:
    """One epoch of batches by the original's rule.

    Tunes are bucketed by exact length. Each batch picks a length uniformly among the lengths
    with tunes left, takes tunes of that length, and tops up from the nearest lengths still
    holding tunes. The last partial batch is dropped.
    """
    buckets: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        buckets.setdefault(int(length), []).append(index)
    for members in buckets.values():
        rng.shuffle(members)
    remaining = len(lengths)
    batches: list[list[int]] = []
    while remaining >= batch_size:
        available = sorted(length for length, members in buckets.items() if members)
        chosen = available[rng.randint(len(available))]
        batch: list[int] = []
        # Nearest lengths first; ties go to the shorter length.
        for length in sorted(available, key=lambda l: (abs(l - chosen), l)):
            members = buckets[length]
            take = min(batch_size - len(batch), len(members))
            batch.extend(members[:take])
            del members[:take]
            if len(batch) == batch_size:
                break
        remaining -= batch_size
        batches.append(batch)
    return batches


def epoch_batches(
    sequences: Sequence[np.ndarray], batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """The batch index lists of one epoch, a pure function of (seed, epoch), so that a resumed
    run sees exactly the batches an uninterrupted one would."""
    rng = np.random.RandomState([seed, epoch])
    return bucketed_batch_indices([len(s) for s in sequences], batch_size, rng)


def batches_from(
    sequences: Sequence[np.ndarray], batch_size: int, seed: int, start_step: int = 0
) -> Iterator[list[int]]:
    """The batch index lists of training steps ``start_step``, ``start_step + 1``, ... without
    end: each epoch's ``epoch_batches`` in turn, entered mid-epoch on resume, so that a resumed
    run sees exactly the batches an uninterrupted one would."""
    steps_per_epoch = len(sequences) // batch_size
    epoch, position = divmod(start_step, steps_per_epoch)
    while True:
        yield from epoch_batches(sequences, batch_size, seed, epoch)[position:]
        epoch, position = epoch + 1, 0


def evaluation_batches(sequences: Sequence[np.ndarray], batch_size: int) -> list[Batch]:
    """Every tune exactly once, in length order; the last batch is padded with empty rows
    (mask zero), so no tune is dropped from the validation loss."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = [sequences[i] for i in order[start : start + batch_size]]
        batch = make_batch(chunk)
        if len(chunk) < batch_size:
            pad = batch_size - len(chunk)
            batch = Batch(
                np.pad(batch.inputs, ((0, pad), (0, 0))),
                np.pad(batch.targets, ((0, pad), (0, 0))),
                np.pad(batch.mask, ((0, pad), (0, 0))),
                np.pad(batch.lengths, (0, pad), constant_values=1),
            )
        batches.append(batch)
    return batches
