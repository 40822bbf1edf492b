"""Reading the v2 data format, the original train/validation split, and length-bucketed batches.

A v2 file holds one tune per block, blocks separated by a blank line: an ``M:`` line, a
``K:`` line and one line of space-separated body tokens. A training sequence is
``<s> M:.. K:.. body... </s>``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Sequence

import numpy as np

from folkrnn_jax import vocab


class DataFormatError(ValueError):
    """A v2 data file that cannot be read; the message names the file and line."""


def parse_v2_text(text: str, path: str = "<string>") -> list[list[str]]:
    """Parse v2-format text into token lists (headers and body, without ``<s>``/``</s>``)."""
    tunes: list[list[str]] = []
    block: list[tuple[int, str]] = []
    lines = text.splitlines()
    for number, line in enumerate(lines + [""], start=1):
        if line.strip():
            block.append((number, line.strip()))
            continue
        if block:
            tunes.append(_parse_block(block, path, len(tunes) + 1))
            block = []
    return tunes


def _parse_block(block: list[tuple[int, str]], path: str, tune_number: int) -> list[str]:
    first_line = block[0][0]
    if len(block) != 3:
        raise DataFormatError(
            f"{path}:{first_line}: tune {tune_number} has {len(block)} lines; a v2 block is "
            "exactly an M: line, a K: line and a line of body tokens"
        )
    (meter_line, meter), (mode_line, mode), (body_line, body) = block
    if meter not in vocab.METER_TOKENS:
        raise DataFormatError(
            f"{path}:{meter_line}: tune {tune_number}: expected a v2 meter line "
            f"({' '.join(vocab.METER_TOKENS)}), got {meter!r}"
        )
    if mode not in vocab.MODE_TOKENS:
        raise DataFormatError(
            f"{path}:{mode_line}: tune {tune_number}: expected a v2 mode line "
            f"({' '.join(vocab.MODE_TOKENS)}), got {mode!r}"
        )
    tokens = body.split()
    for token in tokens:
        if token not in vocab.TOKEN_TO_ID:
            raise DataFormatError(
                f"{path}:{body_line}: tune {tune_number}: unknown token {token!r} "
                "(not in the 137-token v2 vocabulary)"
            )
    return [meter, mode] + tokens


def read_v2_file(path: str) -> list[list[str]]:
    """Read a v2-format file; errors name the file and line."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return parse_v2_text(f.read(), path)


def encode_tunes(tunes: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """Token lists to id arrays ``<s> tokens </s>``."""
    return [vocab.encode([vocab.START, *tune, vocab.END]) for tune in tunes]


def num_validation_tunes(num_tunes: int, fraction: float, batch_size: int) -> int:
    """The original's validation size: the fraction rounded to a multiple of the batch size."""
    if fraction <= 0:
        return 0
    n = int(round(fraction * num_tunes / batch_size)) * batch_size
    return max(batch_size, min(n, num_tunes - batch_size))


def split_train_valid(
    sequences: Sequence[np.ndarray], fraction: float, batch_size: int, seed: int = 42
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The original split: sort by length, longest first; choose validation tunes with
    ``numpy.random.RandomState(seed).choice(n, n_valid, replace=False)``."""
    ordered = sorted(sequences, key=len, reverse=True)
    n_valid = num_validation_tunes(len(ordered), fraction, batch_size)
    if n_valid == 0:
        return list(ordered), []
    valid_idx = np.random.RandomState(seed).choice(len(ordered), n_valid, replace=False)
    chosen = set(int(i) for i in valid_idx)
    train = [s for i, s in enumerate(ordered) if i not in chosen]
    valid = [ordered[i] for i in sorted(chosen)]
    return train, valid


def source_paths(spec: str) -> list[str]:
    """The files of a ``data_path`` setting: one path, or several separated by commas."""
    paths = [p.strip() for p in spec.split(",") if p.strip()]
    if not paths:
        raise ValueError("data_path is empty: give a v2 file, or several separated by commas")
    return paths


def source_name(path: str) -> str:
    """A short name for a data file in metrics and reports: its file name without extension."""
    return os.path.splitext(os.path.basename(path))[0]


@dataclasses.dataclass(frozen=True)
class TrainingMix:
    """Training sequences of one or more sources and each source's validation sequences."""

    train: list[np.ndarray]
    valid: dict[str, list[np.ndarray]]  # source name -> sequences

    @property
    def all_valid(self) -> list[np.ndarray]:
        return [s for seqs in self.valid.values() for s in seqs]


def load_training_mix(
    spec: str, valid_fraction: float, batch_size: int, seed: int = 42, max_length: int = 0
) -> TrainingMix:
    """Read the files of ``spec`` (see ``source_paths``) and split each into training and
    validation tunes by the original's rule (``split_train_valid``), so that the validation
    loss can be reported per source.

    A single file is used as it is (the original split of ``data_v2`` is reproduced). With
    several files, a token sequence that occurs more than once (within or across files) is
    kept once, at its first occurrence, before splitting, so that no validation tune is also
    a training tune.

    Args:
      spec: a path, or paths separated by commas.
      valid_fraction: the share of each source held out (rounded to whole batches).
      batch_size: the training batch size, for that rounding.
      seed: the split's RandomState seed.
      max_length: if > 0, tunes longer than this (counting ``<s>`` and ``</s>``) are dropped.

    Returns:
      The training sequences of every source, and the validation sequences by source name.
    """
    paths = source_paths(spec)
    names = [source_name(p) for p in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"data_path {spec!r}: two files share a name; rename one")
    seen: set[bytes] = set()
    train: list[np.ndarray] = []
    valid: dict[str, list[np.ndarray]] = {}
    for path, name in zip(paths, names):
        sequences = encode_tunes(read_v2_file(path))
        if max_length:
            sequences = [s for s in sequences if len(s) <= max_length]
        if len(paths) > 1:
            unique = []
            for s in sequences:
                if s.tobytes() not in seen:
                    seen.add(s.tobytes())
                    unique.append(s)
            sequences = unique
        source_train, source_valid = split_train_valid(sequences, valid_fraction, batch_size, seed)
        train.extend(source_train)
        if source_valid:
            valid[name] = source_valid
    return TrainingMix(train, valid)


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


def iterate_batches(
    sequences: Sequence[np.ndarray], batch_index_lists: Sequence[Sequence[int]]
) -> Iterator[Batch]:
    for indices in batch_index_lists:
        yield make_batch([sequences[i] for i in indices])


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
