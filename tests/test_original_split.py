"""The original's train/validation split and length-bucketed batches, on the first 5,000
tunes of the real v2 file (skipped when ../shared/data is absent)."""

import collections

import numpy as np
import pytest

from folkrnn_jax.data import batching, v2_format
from folkrnn_jax.data import mix as mix_lib


def test_validation_size_rounds_to_the_batch_size():
    # The full v2 file: 23,637 tunes, batch 50 -> 1,200 validation tunes (22,437 training).
    assert mix_lib.num_validation_tunes(23637, 0.05, 50) == 1200
    assert mix_lib.num_validation_tunes(5000, 0.05, 50) == 250
    assert mix_lib.num_validation_tunes(23637, 0.05, 64) == 1152  # 18.47 batches -> 18
    assert mix_lib.num_validation_tunes(23637, 0.05, 40) == 1200  # 29.5 batches -> 30 (not 29)
    assert mix_lib.num_validation_tunes(100, 0.05, 50) == 50  # at least one batch


_CACHE = {}


@pytest.fixture
def first5000_split(first5000_path):
    if first5000_path not in _CACHE:  # read and split once per session
        sequences = v2_format.encode_tunes(v2_format.read_v2_file(first5000_path))
        _CACHE[first5000_path] = (sequences, *mix_lib.split_train_valid(sequences, 0.05, 50, seed=42))
    return _CACHE[first5000_path]


def test_split_is_longest_first_then_randomstate_42_choice(first5000_split):
    sequences, train, valid = first5000_split
    assert len(sequences) == 5000 and (len(train), len(valid)) == (4750, 250)
    order = sorted(range(5000), key=lambda i: -len(sequences[i]))  # stable, longest first
    chosen = set(np.random.RandomState(42).choice(5000, 250, replace=False).tolist())
    expected_valid = [sequences[order[k]] for k in sorted(chosen)]
    expected_train = [sequences[order[k]] for k in range(5000) if k not in chosen]
    assert all(np.array_equal(a, b) for a, b in zip(valid, expected_valid))
    assert all(np.array_equal(a, b) for a, b in zip(train, expected_train))
    assert len({id(s) for s in train} | {id(s) for s in valid}) == 5000


@pytest.mark.parametrize("epoch", [0, 3])
def test_epoch_batches_group_neighbouring_lengths(first5000_split, epoch):
    """Replay an epoch: each batch's lengths are a contiguous run of the sorted distinct
    lengths still holding unused tunes when it was drawn, every length strictly inside the run
    is used up by it, no tune repeats, and the last partial batch is dropped."""
    _, train, _ = first5000_split
    train = train[:-17]  # 4,733 tunes: 94 full batches, 33 tunes left over
    lengths = [len(s) for s in train]
    batches = batching.epoch_batches(train, 50, seed=0, epoch=epoch)
    assert batches == batching.epoch_batches(train, 50, seed=0, epoch=epoch)  # pure function
    assert batches != batching.epoch_batches(train, 50, seed=0, epoch=epoch + 1)
    assert len(batches) == len(train) // 50 == 94
    used = [i for batch in batches for i in batch]
    assert len(used) == len(set(used)) == 94 * 50  # no repeats; the 33 left over are dropped

    remaining = collections.Counter(lengths)
    spans = []
    for batch in batches:
        assert len(batch) == 50
        taken = collections.Counter(lengths[i] for i in batch)
        available = sorted(l for l, n in remaining.items() if n > 0)
        lo, hi = min(taken), max(taken)
        run = [l for l in available if lo <= l <= hi]
        assert sorted(taken) == run, "the batch skips a length that still had tunes"
        for length in run[1:-1]:
            assert taken[length] == remaining[length], "an interior length was not used up"
        for length, n in taken.items():
            assert n <= remaining[length]
            remaining[length] -= n
        spans.append(hi - lo)
    # Batches are tight: most hold one length or a few neighbouring ones.
    assert np.median(spans) <= 5
