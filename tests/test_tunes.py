"""Transposition: the transposed ABC played by abc2midi is the C tune shifted, note for note."""

import random

import pytest

from folkrnn_jax.music import abc_out, transpose, vocab
from folkrnn_jax.music import midi as midi_lib
from folkrnn_jax.music import output as output_lib
from folkrnn_jax.music import tools as tools_lib
from tests.conftest import fixture_path

ROOTS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
SHIFTS = (0, 1, 2, 3, 4, 5, 6, -5, -4, -3, -2, -1)  # C -> root, in -5..+6 semitones
LETTER_OCTAVE = "%%propagate-accidentals octave"  # abc2midi: accidentals hold per letter+octave

needs_abc2midi = pytest.mark.skipif(not tools_lib.have("abc2midi"), reason="abc2midi is not installed")


def _fixture_tunes(per_mode=3):
    with open(fixture_path("data_v2_excerpt.txt")) as f:
        blocks = [b.split() for b in f.read().split("\n\n") if b.strip()]
    chosen = []
    for mode in transpose.MODE_SUFFIX:
        found = [b for b in blocks if mode in b[:2]]
        # Prefer tunes with accidentals, the interesting case.
        found.sort(key=lambda b: -sum(t[0] in "^_=" for t in b))
        chosen += found[:per_mode]
    return chosen


def _random_tunes(seed=0, notes=80):
    """One accidental-heavy tune per mode: random v2 pitch tokens, all octaves, 4 to a bar."""
    rng = random.Random(seed)
    out = []
    for mode in transpose.MODE_SUFFIX:
        body = []
        for i in range(notes):
            body += [rng.choice(vocab.PITCH_TOKENS)] + (["2"] if rng.random() < 0.2 else [])
            if i % 4 == 3:
                body.append("|")
        out.append(["<s>", "M:4/4", mode] + body + ["</s>"])
    return out


def _notes(abc, letter_octave):
    if letter_octave:
        lines = abc.splitlines()
        abc = "\n".join(lines[:4] + [LETTER_OCTAVE] + lines[4:]) + "\n"
    return midi_lib.midi_notes(tools_lib.abc_to_midi(abc))


def test_parse_root_and_key_fields():
    assert [transpose.parse_root(r)[1] for r in ROOTS] == list(SHIFTS)
    abc = abc_out.tokens_to_abc("<s> M:6/8 K:Cdor G A B c".split(), key="D")
    assert "K:Ddor" in abc.splitlines() and abc.splitlines()[-1] == "ABc d"
    assert "K:Em" in abc_out.tokens_to_abc("<s> K:Cmin c".split(), key="E")
    assert "K:C#m" in abc_out.tokens_to_abc("<s> K:Cmin c".split(), key="Db")  # not 8 flats
    assert "K:Bbmix" in abc_out.tokens_to_abc("<s> K:Cmix c".split(), key="Bb")
    with pytest.raises(ValueError):
        transpose.parse_root("H")


def test_bar_scoped_accidentals_written_only_where_needed():
    # ^F holds for the F of the same octave until the bar line, not for f.
    tokens = "<s> M:4/4 K:Cmaj ^F F f c | F ^F, =B B | f =f ^f =F |".split()
    # G major (down 5): F#->C#, F->C (C natural in G), =B->F (F# is in the key).
    assert abc_out.tokens_to_abc(tokens, key="G", courtesy=False).splitlines()[-1] == "^CCcG | C^C,FF | cc^cC |"
    # D major (up 2): B natural -> C#, in the key signature: no accidental needed.
    assert abc_out.tokens_to_abc(tokens, key="D", courtesy=False).splitlines()[-1] == "^GGgd | G^G,cc | gg^gG |"
    # With courtesy accidentals, a different octave of a letter altered earlier gets one too.
    assert abc_out.tokens_to_abc(tokens, key="D").splitlines()[-1] == "^GG=gd | G^G,cc | gg^g=G |"


@needs_abc2midi
def test_transposed_midi_is_shifted_c_tune_for_all_roots_and_modes():
    chosen = _fixture_tunes()
    assert {t[1] for t in chosen} == set(transpose.MODE_SUFFIX)
    for tokens in chosen + _random_tunes():
        c_abc = abc_out.tokens_to_abc(tokens)
        expected = _notes(c_abc, letter_octave=True)
        assert expected
        for root, shift in zip(ROOTS, SHIFTS):
            want = [(start, pitch + shift, duration) for start, pitch, duration in expected]
            minimal = abc_out.tokens_to_abc(tokens, key=root, courtesy=False)
            assert _notes(minimal, letter_octave=True) == want, (root, minimal)
            courteous = abc_out.transpose_tune_abc(tokens, root)
            assert _notes(courteous, letter_octave=True) == want, (root, courteous)
            assert _notes(courteous, letter_octave=False) == want, (root, courteous)


@needs_abc2midi
def test_mido_fallback_plays_the_notes_abc2midi_plays():
    with open(fixture_path("data_v2_excerpt.txt")) as f:
        blocks = [b.split() for b in f.read().split("\n\n") if b.strip()]
    plain = []  # each mode's tunes up to their first repeat (abc2midi would play repeats twice)
    for mode in transpose.MODE_SUFFIX:
        for b in [b for b in blocks if mode in b[:2]][:2]:
            b = ["|" if t == "|:" else t for t in b]
            cut = [i for i, t in enumerate(b) if t in (":|", "|1", "|2")]
            plain.append(b[: cut[0]] if cut else b)
    plain.append("<s> M:6/8 K:Cmin c > d (3 e f g [ c e ] 2 | ^F F f z /2 B /2 B 2 |".split())
    assert {t[1] for t in plain[:-1]} == set(transpose.MODE_SUFFIX) and all(len(t) > 12 for t in plain)
    for tokens in plain:
        for root in ("C", "A", "Eb"):
            ours = midi_lib.midi_notes(midi_lib.tokens_to_midi(tokens, key=root))
            theirs = midi_lib.midi_notes(tools_lib.abc_to_midi(abc_out.tokens_to_abc(tokens, key=root)))
            assert [p for _, p, _ in ours] == [p for _, p, _ in theirs], root
            # abc2midi starts notes one tick late and staggers chord notes by a few ticks.
            assert all(abs(a[0] - b[0]) <= 12 and abs(a[2] - b[2]) <= 12 for a, b in zip(ours, theirs))


CHORD_CASES = (  # v2 bodies; in ABC: [CE]2 G, [C2E] G, [CE2] G, [C2E]2 G, [C/2E] G, (3[CE]DE G ...
    "[ C E ] 2 G",
    "[ C 2 E ] G",
    "[ C E 2 ] G",
    "[ C 2 E ] 2 G",
    "[ C /2 E ] G",
    "[ C 3 E 2 ] G",
    "[ C E G ] /2 A",
    "(3 [ C E ] D E G",
    "(3 [ C 2 E ] D E G",
    "[ C E ] > G A",
    "[ C E ] 2> G A",
    "[ C E ] < G A",
    "[ C 2 E ] 2> G A",
    "(3 [ C 2 E ] 2 D E G",
    "C > [ E 2 G ] 2 A",
    "[ G ] 2 A",
    "C 2> [ E G ] A",
    "[ ^C E ] C [ C =E ] E | [ _B, D ] B,",
)


@needs_abc2midi
@pytest.mark.parametrize("body", CHORD_CASES)
def test_chords_play_as_abc2midi_plays(body):
    # abc2midi: the chord lasts the length after ']', or else its first note's length; every
    # note of it sounds that long, and the clock moves on by that length once.
    tokens = ["<s>", "M:4/4", "K:Cmaj", *body.split(), "</s>"]
    ours = midi_lib.midi_notes(midi_lib.tokens_to_midi(tokens))
    theirs = midi_lib.midi_notes(tools_lib.abc_to_midi(abc_out.tokens_to_abc(tokens)))
    assert [p for _, p, _ in ours] == [p for _, p, _ in theirs]
    # abc2midi starts notes one tick late, staggers chord notes by ten ticks a note and
    # shortens notes by a few ticks; a wrong reading is off by 120 ticks (1/16) or more.
    assert all(abs(a[0] - b[0]) <= 24 and abs(a[2] - b[2]) <= 24 for a, b in zip(ours, theirs)), (ours, theirs)


def test_write_tunes_midi_without_abc2midi(tmp_path, monkeypatch):
    monkeypatch.setattr(tools_lib, "have", lambda tool: False)
    tokens = "<s> M:4/4 K:Cmaj c 2 d e | f g a b |".split()
    assert output_lib.write_tunes([tokens, tokens], ["a", "b"], str(tmp_path / "m"), "midi", key="G") == 4
    notes = midi_lib.midi_notes((tmp_path / "m" / "tune_001.mid").read_bytes())
    assert [p for _, p, _ in notes] == [67, 69, 71, 72, 74, 76, 78]
    assert notes[0][2] == 2 * midi_lib.TICKS_PER_EIGHTH
