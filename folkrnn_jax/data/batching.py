"""Training batches (packed rows of one shape, or the original's length buckets) and
evaluation batches of a few fixed shapes.

Packed batches put tunes end to end into rows of ``packed_length`` tokens; ``resets`` marks
where each tune starts, and the model returns its LSTM state to the initial state there, so
that every tune is computed exactly as if alone. Every step of a packed run has the same
[batch, time] shape, so the train step compiles once. A tune longer than a row goes into a
wider row (2, 4, ... times ``packed_length``) of a batch with proportionally fewer rows: no
token is lost and a run compiles one shape per width class present, a handful at most.

The row structure is a pure function of the tune lengths and (seed, epoch), so a resumed run
sees exactly the batches an uninterrupted one would. (Grain's packing iterators were
considered: their rows are built from a stream and carry segment ids and positions, but they
neither keep the number of batches per epoch fixed, which the learning-rate schedule and the
resume arithmetic need, nor place over-long tunes in wider rows; numpy does both in a few
lines.)
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Iterator, Sequence

import flax
import numpy as np

BATCHING_KINDS = ("packed", "bucketed")


def padded_length(length: int, min_length: int = 16) -> int:
    """Round a length up to a coarse grid (steps of 1/8 of the next power of two below it), so
    that jit compiles a few dozen shapes at most and padding wastes at most about 12%."""
    length = max(length, min_length)
    step = max(min_length // 2, 1 << max(int(np.floor(np.log2(length))) - 3, 0))
    return int(-(-length // step) * step)


def evaluation_length(length: int, min_length: int = 32) -> int:
    """Round a length up to the next of 32, 48, 64, 96, 128, 192, ... (powers of two and one
    and a half times them): evaluation compiles a few shapes, with at most a third padding."""
    size = min_length
    while size < length:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return size


@flax.struct.dataclass
class Batch:
    """A batch of token rows, a pytree (so that it goes into jitted functions as it is).

    Attributes:
      inputs: [batch, time] int32 input tokens.
      targets: [batch, time] int32 next tokens.
      mask: [batch, time] float32, 1.0 on real prediction steps.
      lengths: [batch] int32: each row's tune's full length including ``<s>`` and ``</s>``
        (for a packed row, the sum over its tunes); 1 on empty rows.
      resets: [batch, time] float32, 1.0 where a packed tune starts (the LSTM state returns to
        the initial state before that step), or None for rows of one tune each.
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    resets: np.ndarray | None = None

    @property
    def num_tokens(self) -> int:
        return int(np.asarray(self.mask).sum())


def make_batch(sequences: Sequence[np.ndarray], time: int | None = None) -> Batch:
    """One ``<s> ... </s>`` sequence per row, split into inputs (all but the last token) and
    targets (all but the first), padded to ``time`` (default: the ``padded_length`` grid)."""
    longest = max(len(s) for s in sequences) - 1
    time = padded_length(longest) if time is None else time
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


def make_packed_batch(rows: Sequence[Sequence[np.ndarray]], time: int) -> Batch:
    """Rows of tunes laid end to end, each tune's first input marked in ``resets``.

    Args:
      rows: per row, the ``<s> ... </s>`` sequences it holds; their inputs (length - 1 each)
        must fit in ``time``. An empty row is padding.
      time: the row length.

    Returns:
      The batch, with ``resets`` set.
    """
    inputs = np.zeros((len(rows), time), np.int32)
    targets = np.zeros((len(rows), time), np.int32)
    mask = np.zeros((len(rows), time), np.float32)
    resets = np.zeros((len(rows), time), np.float32)
    lengths = np.ones(len(rows), np.int32)
    for row, tunes in enumerate(rows):
        position = 0
        for seq in tunes:
            n = len(seq) - 1
            inputs[row, position : position + n] = seq[:-1]
            targets[row, position : position + n] = seq[1:]
            mask[row, position : position + n] = 1.0
            resets[row, position] = 1.0
            position += n
        if tunes:
            lengths[row] = sum(len(seq) for seq in tunes)
    return Batch(inputs, targets, mask, lengths, resets)


def pad_rows(batch: Batch, rows: int) -> Batch:
    """``batch`` with empty rows (mask zero, length 1) appended up to ``rows`` rows, so that a
    short last batch keeps the shape of the others."""
    pad = rows - batch.inputs.shape[0]
    if pad <= 0:
        return batch
    grid = ((0, pad), (0, 0))
    return Batch(
        np.pad(batch.inputs, grid), np.pad(batch.targets, grid), np.pad(batch.mask, grid),
        np.pad(batch.lengths, (0, pad), constant_values=1),
        None if batch.resets is None else np.pad(batch.resets, grid),
    )


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """How training batches are made.

    Attributes:
      kind: ``"packed"`` (rows of ``packed_length`` tokens, one shape) or ``"bucketed"`` (one
        tune per row, rows grouped by length as the original did).
      batch_size: rows per batch (packed rows of ``packed_length``; wider rows for long tunes
        come ``batch_size / width class`` to a batch) or tunes per batch (bucketed).
      packed_length: tokens per packed row.
      row_multiple: the row count of every batch is a multiple of this (the data-parallel
        device count).
      seed: the shuffling seed; epoch ``e`` is shuffled by ``(seed, e)``.
    """

    kind: str = "packed"
    batch_size: int = 64
    packed_length: int = 256
    row_multiple: int = 1
    seed: int = 0


def _width_class(tokens: int, packed_length: int) -> int:
    """The row width (a power-of-two multiple of ``packed_length``) holding ``tokens`` inputs."""
    width = packed_length
    while width < tokens:
        width *= 2
    return width


def _rows_per_batch(width: int, options: BatchingOptions) -> int:
    rows = -(-options.batch_size * options.packed_length // width)
    return -(-rows // options.row_multiple) * options.row_multiple


def best_fit_rows(lengths: Sequence[int], order: Sequence[int], packed_length: int) -> list[list[int]]:
    """Pack items (in ``order``) into rows, each into the fullest row it still fits in (best
    fit); an item that fits in none opens a row of its width class (``packed_length``, or the
    power-of-two multiple of it that holds the item).

    Args:
      lengths: tokens per item.
      order: the item indices in the order to place them (longest first packs tightest, and
        lets short items fill what long ones leave in wide rows).
      packed_length: tokens per ordinary row.

    Returns:
      Per row, its item indices in placement order.
    """
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (tokens left, row), sorted
    for item in order:
        need = int(lengths[item])
        at = bisect.bisect_left(free, (need, -1))
        if at == len(free):
            rows.append([item])
            left, row = _width_class(need, packed_length) - need, len(rows) - 1
        else:
            left, row = free.pop(at)
            rows[row].append(item)
            left -= need
        if left > 0:
            bisect.insort(free, (left, row))
    return rows


def packed_epoch(lengths: Sequence[int], options: BatchingOptions, epoch: int) -> list[list[list[int]]]:
    """One epoch of packed batches: per batch, per row, the tune indices it holds.

    Tunes (``lengths`` counts each one's inputs, its full length minus one) are placed longest
    first, equal lengths in an order shuffled by (seed, epoch), by ``best_fit_rows``. The row
    widths therefore depend on the lengths alone and every epoch has the same number of
    batches; which tunes share a row and a batch changes. Rows are shuffled and cut into
    batches per width (the last one of a width padded with empty rows later), and the
    batches of all widths shuffled together.
    """
    rng = np.random.RandomState([options.seed, epoch])
    tie_break = rng.permutation(len(lengths))
    order = np.lexsort((tie_break, -np.asarray(lengths)))
    rows = best_fit_rows(lengths, order, options.packed_length)
    classes: dict[int, list[list[int]]] = {}
    for row in rows:
        width = _width_class(sum(int(lengths[i]) for i in row), options.packed_length)
        classes.setdefault(width, []).append(row)
    batches: list[list[list[int]]] = []
    for width in sorted(classes):
        members = [classes[width][i] for i in rng.permutation(len(classes[width]))]
        per_batch = _rows_per_batch(width, options)
        batches.extend(members[start : start + per_batch] for start in range(0, len(members), per_batch))
    return [batches[i] for i in rng.permutation(len(batches))]


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
    """The bucketed batch index lists of one epoch, a pure function of (seed, epoch), so that
    a resumed run sees exactly the batches an uninterrupted one would."""
    rng = np.random.RandomState([seed, epoch])
    return bucketed_batch_indices([len(s) for s in sequences], batch_size, rng)


def batches_from(
    sequences: Sequence[np.ndarray], batch_size: int, seed: int, start_step: int = 0
) -> Iterator[list[int]]:
    """The bucketed batch index lists of training steps ``start_step``, ``start_step + 1``, ...
    without end: each epoch's ``epoch_batches`` in turn, entered mid-epoch on resume, so that a
    resumed run sees exactly the batches an uninterrupted one would."""
    steps_per_epoch = len(sequences) // batch_size
    epoch, position = divmod(start_step, steps_per_epoch)
    while True:
        yield from epoch_batches(sequences, batch_size, seed, epoch)[position:]
        epoch, position = epoch + 1, 0


def _input_lengths(sequences: Sequence[np.ndarray]) -> list[int]:
    return [len(s) - 1 for s in sequences]


def steps_per_epoch(sequences: Sequence[np.ndarray], options: BatchingOptions) -> int:
    """Training steps in one epoch (the same for every epoch)."""
    if options.kind == "bucketed":
        return len(sequences) // options.batch_size
    return len(packed_epoch(_input_lengths(sequences), options, 0))


def packed_batch(sequences: Sequence[np.ndarray], rows: Sequence[Sequence[int]], options: BatchingOptions) -> Batch:
    """The batch of ``rows`` (tune indices per row) of ``packed_epoch``, in its width class's
    shape: [rows per batch, width]."""
    longest = max(sum(len(sequences[i]) - 1 for i in row) for row in rows)
    width = _width_class(longest, options.packed_length)
    batch = make_packed_batch([[sequences[i] for i in row] for row in rows], width)
    return pad_rows(batch, _rows_per_batch(width, options))


def training_batches(
    sequences: Sequence[np.ndarray], options: BatchingOptions, start_step: int = 0
) -> Iterator[Batch]:
    """The batches of training steps ``start_step``, ``start_step + 1``, ... without end, each
    epoch shuffled by (seed, epoch) and entered mid-epoch on resume, so that a resumed run sees
    exactly the batches an uninterrupted one would.

    Args:
      sequences: the training tunes, each ``<s> ... </s>``.
      options: packed or bucketed, batch size, row length.
      start_step: the number of steps already trained.

    Yields:
      Batches (packed: with ``resets``).
    """
    if options.kind == "bucketed":
        for indices in batches_from(sequences, options.batch_size, options.seed, start_step):
            yield make_batch([sequences[i] for i in indices])
        return
    lengths = _input_lengths(sequences)
    epoch, position = divmod(start_step, steps_per_epoch(sequences, options))
    while True:
        for rows in packed_epoch(lengths, options, epoch)[position:]:
            yield packed_batch(sequences, rows, options)
        epoch, position = epoch + 1, 0


def evaluation_batches(sequences: Sequence[np.ndarray], batch_size: int) -> list[Batch]:
    """Every tune exactly once, in length order, one per row, in a few fixed shapes
    (``batch_size`` rows; ``evaluation_length`` steps); the last batch is padded with empty
    rows (mask zero), so no tune is dropped from the validation loss."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = [sequences[i] for i in order[start : start + batch_size]]
        time = evaluation_length(max(len(s) for s in chunk) - 1)
        batches.append(pad_rows(make_batch(chunk, time), batch_size))
    return batches
