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
