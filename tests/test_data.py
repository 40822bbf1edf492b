import numpy as np
import pytest

from folkrnn_jax.data import batching, v2_format
from folkrnn_jax.data import mix as mix_lib
from folkrnn_jax.music import vocab


def test_read_fixture(excerpt_path):
    tunes = v2_format.read_v2_file(excerpt_path)
    assert len(tunes) == 18
    assert all(t[0] in vocab.METER_TOKENS and t[1] in vocab.MODE_TOKENS for t in tunes)
    assert tunes[0][:4] == ["M:9/8", "K:Cmaj", "G", "E"]


def test_malformed_block_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("M:4/4\nK:Cmaj\nC D E |\n\nM:4/4\nC D E |\n")
    with pytest.raises(v2_format.DataFormatError, match=r"bad.txt:5: tune 2 has 2 lines"):
        v2_format.read_v2_file(str(path))


def test_unknown_token_in_data_names_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("M:4/4\nK:Cmaj\nC D E |\n\nM:4/4\nK:Cmaj\nC D Q |\n")
    with pytest.raises(v2_format.DataFormatError, match=r"bad.txt:7: tune 2: unknown token 'Q'"):
        v2_format.read_v2_file(str(path))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no_such_file.txt"):
        v2_format.read_v2_file("no_such_file.txt")


def test_split_is_seeded_and_disjoint(excerpt_path):
    seqs = v2_format.encode_tunes(v2_format.read_v2_file(excerpt_path))
    train, valid = mix_lib.split_train_valid(seqs, 0.2, 4, seed=42)
    assert len(valid) == 4 and len(train) == 14
    again_train, again_valid = mix_lib.split_train_valid(seqs, 0.2, 4, seed=42)
    assert [v.tolist() for v in valid] == [v.tolist() for v in again_valid]
    train_set = {tuple(t.tolist()) for t in train}
    assert not any(tuple(v.tolist()) in train_set for v in valid)


def test_batch_padding_and_mask():
    seqs = [np.array([80, 104, 86, 64, 59]), np.array([80, 104, 86, 59])]
    batch = batching.make_batch(seqs)
    assert batch.inputs.shape == batch.targets.shape == batch.mask.shape
    assert batch.mask[0].sum() == 4 and batch.mask[1].sum() == 3
    np.testing.assert_array_equal(batch.inputs[0, :4], [80, 104, 86, 64])
    np.testing.assert_array_equal(batch.targets[0, :4], [104, 86, 64, 59])
    assert (batch.inputs[1, 3:] == 0).all() and (batch.mask[1, 3:] == 0).all()
    np.testing.assert_array_equal(batch.lengths, [5, 4])


def test_batches_group_similar_lengths_and_drop_partial(excerpt_path):
    seqs = v2_format.encode_tunes(v2_format.read_v2_file(excerpt_path))
    batches = batching.epoch_batches(seqs, 4, seed=0, epoch=0)
    assert len(batches) == len(seqs) // 4
    used = [i for b in batches for i in b]
    assert len(set(used)) == len(used)
    assert batching.epoch_batches(seqs, 4, seed=0, epoch=0) == batches
    assert batching.epoch_batches(seqs, 4, seed=0, epoch=1) != batches


def test_padded_length_grid():
    assert batching.padded_length(1) == 16
    for n in range(16, 2100):
        p = batching.padded_length(n)
        assert n <= p < n + max(8, n // 8 + 1)
    assert len({batching.padded_length(n) for n in range(48, 2000)}) < 50


def _tunes(lengths, seed=0):
    rng = np.random.RandomState(seed)
    return [np.concatenate([[vocab.START_ID], rng.randint(3, 100, n - 2), [vocab.END_ID]]).astype(np.int32)
            for n in lengths]


def test_packed_batch_lays_tunes_end_to_end_with_resets():
    seqs = _tunes([5, 4, 7])
    batch = batching.make_packed_batch([[seqs[0], seqs[1]], [seqs[2]], []], time=8)
    np.testing.assert_array_equal(batch.inputs[0, :7], np.concatenate([seqs[0][:-1], seqs[1][:-1]]))
    np.testing.assert_array_equal(batch.targets[0, :7], np.concatenate([seqs[0][1:], seqs[1][1:]]))
    np.testing.assert_array_equal(batch.resets[0], [1, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(batch.mask.sum(axis=1), [7, 6, 0])
    np.testing.assert_array_equal(batch.resets[1], [1, 0, 0, 0, 0, 0, 0, 0])
    assert batch.resets[2].sum() == 0 and batch.num_tokens == 13


def test_pad_rows_keeps_shape_and_adds_empty_rows():
    batch = batching.pad_rows(batching.make_packed_batch([_tunes([5])], time=8), 4)
    assert batch.inputs.shape == batch.resets.shape == (4, 8)
    assert batch.mask[1:].sum() == 0 and list(batch.lengths) == [5, 1, 1, 1]
    assert batching.pad_rows(batch, 2) is batch


def test_packed_epochs_cover_every_tune_once_in_fixed_shapes(excerpt_path):
    lengths = [40, 60, 120, 200, 250, 255, 256, 257, 300, 600, 1100] * 3 + list(range(50, 90))
    seqs = _tunes([n + 1 for n in lengths])
    options = batching.BatchingOptions(kind="packed", batch_size=4, packed_length=256, seed=3)
    counts = set()
    for epoch in range(3):
        plan = batching.packed_epoch(lengths, options, epoch)
        counts.add(len(plan))
        assert sorted(i for rows in plan for row in rows for i in row) == list(range(len(seqs)))
        shapes = {batching.packed_batch(seqs, rows, options).inputs.shape for rows in plan}
        # Rows of 256 four at a time; a tune of 257..512 in rows of 512 two at a time, and so on.
        assert shapes <= {(4, 256), (2, 512), (1, 1024), (1, 2048)}, shapes
        for rows in plan:
            batch = batching.packed_batch(seqs, rows, options)
            assert batch.resets.sum() == sum(len(row) for row in rows)
            assert batch.num_tokens == sum(lengths[i] for row in rows for i in row)
        assert batching.packed_epoch(lengths, options, epoch) == plan
    assert len(counts) == 1  # the same number of steps in every epoch
    assert batching.packed_epoch(lengths, options, 0) != batching.packed_epoch(lengths, options, 1)
    assert batching.steps_per_epoch(seqs, options) == counts.pop()


@pytest.mark.parametrize("kind", ["packed", "bucketed"])
def test_training_batches_resume_exactly(excerpt_path, kind):
    seqs = v2_format.encode_tunes(v2_format.read_v2_file(excerpt_path))
    options = batching.BatchingOptions(kind=kind, batch_size=2, packed_length=64, seed=1)
    per_epoch = batching.steps_per_epoch(seqs, options)
    stream = batching.training_batches(seqs, options)
    first = [next(stream) for _ in range(2 * per_epoch + 3)]
    for start in (1, per_epoch, per_epoch + 2):
        resumed = batching.training_batches(seqs, options, start)
        for expected in first[start:]:
            got = next(resumed)
            np.testing.assert_array_equal(got.inputs, expected.inputs)
            np.testing.assert_array_equal(got.mask, expected.mask)


def test_evaluation_batches_come_in_few_shapes():
    seqs = _tunes(list(range(10, 1300, 7)))
    batches = batching.evaluation_batches(seqs, 8)
    assert len({b.inputs.shape for b in batches}) <= 12
    assert all(b.inputs.shape[0] == 8 for b in batches)
    assert sum(b.num_tokens for b in batches) == sum(len(s) - 1 for s in seqs)
    assert [batching.evaluation_length(n) for n in (1, 33, 64, 65, 97, 129)] == [32, 48, 64, 96, 128, 192]
