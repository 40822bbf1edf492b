"""The training mix: one or more v2 files, each split into training and validation tunes by
the original's rule."""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from folkrnn_jax.data.v2_format import encode_tunes, read_v2_file
from folkrnn_jax.errors import InputError


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
        raise InputError("data_path is empty: give a v2 file, or several separated by commas")
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
    spec: str, valid_fraction: float, batch_size: int, seed: int = 42, max_length: int = 0,
    drop_duplicates: bool = False,
) -> TrainingMix:
    """Read the files of ``spec`` (see ``source_paths``) and split each into training and
    validation tunes by the original's rule (``split_train_valid``), so that the validation
    loss can be reported per source.

    A single file is used as it is (the original split of ``data_v2`` is reproduced) unless
    ``drop_duplicates`` is set. With several files, or with ``drop_duplicates``, a token sequence that occurs more than once (within or across files) is
    kept once, at its first occurrence, before splitting, so that no validation tune is also
    a training tune.

    Args:
      spec: a path, or paths separated by commas.
      valid_fraction: the share of each source held out (rounded to whole batches).
      batch_size: the training batch size, for that rounding.
      seed: the split's RandomState seed.
      max_length: if > 0, tunes longer than this (counting ``<s>`` and ``</s>``) are dropped.
      drop_duplicates: keep one copy of repeated sequences in a single file too.

    Returns:
      The training sequences of every source, and the validation sequences by source name.
    """
    paths = source_paths(spec)
    names = [source_name(p) for p in paths]
    if len(set(names)) != len(names):
        raise InputError(f"data_path {spec!r}: two files share a name; rename one")
    seen: set[bytes] = set()
    train: list[np.ndarray] = []
    valid: dict[str, list[np.ndarray]] = {}
    for path, name in zip(paths, names):
        sequences = encode_tunes(read_v2_file(path))
        if max_length:
            sequences = [s for s in sequences if len(s) <= max_length]
        if len(paths) > 1 or drop_duplicates:
            unique = []
            for s in sequences:
                if s.tobytes() not in seen:
                    seen.add(s.tobytes())
                    unique.append(s)
            sequences = unique
        if valid_fraction > 0 and len(sequences) < 2 * batch_size:
            # The split holds out at least one batch and trains on at least one more.
            raise InputError(
                f"{path}: {len(sequences)} tunes (after max_tune_length), fewer than the two "
                f"batches of {batch_size} a training/validation split needs"
            )
        source_train, source_valid = split_train_valid(sequences, valid_fraction, batch_size, seed)
        train.extend(source_train)
        if source_valid:
            valid[name] = source_valid
    return TrainingMix(train, valid)
