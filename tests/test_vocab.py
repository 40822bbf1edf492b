import pytest

from folkrnn_jax.music import vocab


def test_blog_order():
    assert len(vocab.TOKENS) == 137 == len(set(vocab.TOKENS))
    assert vocab.TOKENS[0] == "d'"
    assert vocab.TOKENS[59] == "</s>" and vocab.END_ID == 59
    assert vocab.TOKENS[80] == "<s>" and vocab.START_ID == 80
    assert vocab.TOKENS[104] == "M:4/4"
    assert vocab.TOKENS[136] == "^g"
    assert set(vocab.METER_TOKENS) | set(vocab.MODE_TOKENS) <= set(vocab.TOKENS)


def test_encode_decode_round_trip():
    tokens = ["<s>", "M:6/8", "K:Cdor", "c", "3/2", "^f'", "|", "</s>"]
    assert vocab.decode(vocab.encode(tokens)) == tokens


def test_unknown_token_names_token_and_place():
    with pytest.raises(vocab.UnknownTokenError, match=r"'H' in tune 3, token 2"):
        vocab.encode(["C", "H"], where="tune 3")


def test_pitch_tokens():
    assert vocab.is_pitch("^f'") and vocab.is_pitch("=B,") and vocab.is_pitch("C")
    assert not any(vocab.is_pitch(t) for t in ["z", "|", "M:4/4", "K:Cmaj", "2", "(3", "[", "/2>"])
