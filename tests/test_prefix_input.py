"""What a user types as a prefix or a token list (issue 13 item 10, issue 14): an unknown word
is an error naming it, never dropped; 'Bb' is not taken for B-flat; a prefix in D comes back
in D; tokens holding a comma can be masked."""

import pytest

from experiments import cli
from folkrnn_jax.errors import InputError
from folkrnn_jax.generate import prefix as prefix_lib
from folkrnn_jax.music import vocab
from tests.conftest import run_module


@pytest.mark.parametrize("prefix, token, position", [
    ("M:4/4 K:Cmaj | A B c d foo", "foo", 8),  # read as ABC, 'foo' used to become the note f
    ("M:4/4 * c foo", "foo", 4),  # with a wildcard it is a token prefix
    ("M:6/8 K:Dmix |: A>B F#", "F#", 5),  # '#' is not ABC
    ("M:6/8 K:Cfoo |: A B", "K:Cfoo", 2),  # neither a v2 mode nor an ABC key
])
def test_unknown_word_is_named_with_its_position(prefix, token, position):
    with pytest.raises(vocab.UnknownTokenError) as info:
        prefix_lib.parse_prefix(prefix)
    message = str(info.value)
    assert message.startswith(f"unknown token {token!r} in --prefix, token {position}:")
    assert info.value.token == token


def test_unknown_word_suggests_the_nearest_tokens():
    with pytest.raises(vocab.UnknownTokenError, match=r"nearest: K:C"):
        prefix_lib.parse_prefix("M:6/8 K:Cdro G A")
    with pytest.raises(vocab.UnknownTokenError, match=r"\(\^F\)"):
        prefix_lib.parse_prefix("M:6/8 K:Dmix |: A>B F#")


def test_a_token_list_prefix_with_an_unknown_token_is_refused():
    with pytest.raises(vocab.UnknownTokenError, match="'cc' in --prefix, token 3"):
        prefix_lib.parse_prefix(["M:4/4", "K:Cmaj", "cc"])


def test_bb_is_refused_as_a_flat_typo_and_two_notes_are_spelled_apart():
    with pytest.raises(InputError, match=r"token 4 'Bb'.*B-flat as _B"):
        prefix_lib.parse_prefix("M:6/8 K:Dmix |: Bb A G")
    with pytest.raises(InputError, match=r"'Eb2'.*E-flat as _E"):
        prefix_lib.parse_prefix("M:4/4 K:C Eb2 F")
    two_notes = prefix_lib.parse_prefix("M:6/8 K:Cmaj |: B b A")
    assert two_notes[-3:] == ["B", "b", "A"]
    flat = prefix_lib.parse_prefix("M:6/8 K:Cmaj |: _B A")
    assert flat[-2:] == ["_B", "A"]
    # Inside a chord symbol 'Bb' is a chord name, skipped like every annotation.
    assert prefix_lib.parse_prefix('M:6/8 K:Cmaj "Bb"B A') == ["<s>", "M:6/8", "K:Cmaj", "B", "A"]


def test_abc_fields_alone_give_the_header():
    assert prefix_lib.parse_prefix("M:6/8 K:Dmix") == ["<s>", "M:6/8", "K:Cmix"]


@pytest.mark.parametrize("prefix, key", [
    ("M:6/8 K:Dmix |: A>B c2", "D"), ("K:Bb |: dBF", "Bb"), ("M:3/4 K:F#m A2", "F#"),
    ("K:Cb B", "B"), ("M:6/8 K:Cdor G", None), ("M:6/8 K:Cmix |: A>B c2", None), ("|: A B c", None),
])
def test_prefix_key_is_the_abc_key_root(prefix, key):
    assert prefix_lib.prefix_key(prefix) == key


@pytest.mark.parametrize("text, tokens", [
    ("B, =A,", ["B,", "=A,"]),
    ("|:,:|", ["|:", ":|"]),  # the comma form of DEFINE_list
    ("B,,C", ["B,", "C"]),
    ("  |:  :| ", ["|:", ":|"]),
    ("", []),
])
def test_token_list_reads_spaces_and_unambiguous_commas(text, tokens):
    assert prefix_lib.parse_token_list(text) == tokens
    assert cli.TokenListParser().parse(text) == tokens


def test_token_list_refuses_unknown_and_unsplittable_words():
    with pytest.raises(vocab.UnknownTokenError, match="'foo' in --mask_tokens, token 2"):
        prefix_lib.parse_token_list("B, foo")
    with pytest.raises(vocab.UnknownTokenError, match="':|,'"):
        prefix_lib.parse_token_list("|:,:|,")
    with pytest.raises(ValueError, match="unknown token 'H'"):
        cli.TokenListParser().parse("H")


def _stream_tokens(stdout: str) -> list[list[str]]:
    """The tokens of each tune from ``--stream`` lines ``TUNE:TOKEN TUNE:TOKEN ...``."""
    tunes: dict[int, list[str]] = {}
    for line in stdout.splitlines():
        for item in line.split():
            tune, _, token = item.partition(":")
            if tune.isdigit():
                tunes.setdefault(int(tune), []).append(token)
    return [tunes[t] for t in sorted(tunes)]


def test_mask_tokens_with_commas_at_the_command_line(tmp_path):
    proc = run_module("experiments.sample", "--stream", "--num_tunes=8", "--seed=1", "--max_length=300",
                      "--prefix=M:4/4 K:Cmaj", "--mask_tokens=B, =A,", f"--output={tmp_path / 'x.abc'}",
                      timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tokens = [t for tune in _stream_tokens(proc.stdout) for t in tune]
    assert len(tokens) > 200
    assert "B," not in tokens and "=A," not in tokens
    # Exactly those two: the notes next to them, and B without the comma, are still written.
    assert {"B", "A,", "C"} <= set(tokens)


def _tunes(path):
    return [block for block in path.read_text().split("\n\n") if block.strip()]


def test_prefix_in_d_comes_back_in_d(tmp_path):
    out = tmp_path / "d.abc"
    proc = run_module("experiments.sample", "--prefix=M:6/8 K:Dmix |: A>B c2", "--num_tunes=3",
                      "--max_length=60", f"--output={out}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for block in _tunes(out):
        lines = block.splitlines()
        assert lines[2] == "M:6/8" and lines[4] == "K:Dmix"
        assert lines[5].replace(" ", "").startswith("|:A>Bc2")
    # --key still wins: the same prefix written in G (a fourth down: c, natural in Dmix, is F).
    proc = run_module("experiments.sample", "--prefix=M:6/8 K:Dmix |: A>B c2", "--num_tunes=3",
                      "--max_length=60", "--key=G", f"--output={out}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for block in _tunes(out):
        lines = block.splitlines()
        assert lines[4] == "K:Gmix" and lines[5].replace(" ", "").startswith("|:D>EF2")
