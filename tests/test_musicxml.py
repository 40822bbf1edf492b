"""MusicXML output (``output.write_tunes(..., "musicxml")``): every file opens back in music21
with the notes our own reader finds in the tokens."""

import os
from fractions import Fraction

import pytest

from folkrnn_jax.data import v2_format
from folkrnn_jax.music import output, pitch, rhythm, structure
from tests.conftest import fixture_path

music21 = pytest.importorskip("music21")

# Broken rhythms, a triplet, sixteenths, a rest, endings and a pickup.
HAND = "M:6/8 K:Cdor |: G | c 2 d e > f g | _B 3 (3 c d e z | c /2 d /2 e f g 2 A |1 B 3 c 2 :| |2 B 3 c 2 |".split()


def _our_notes(tokens):
    """(MIDI pitch or None for a rest, quarter length) of every note and rest, in written order."""
    return [(pitch.token_pitch(e.pitches[0], e.mode) if e.pitches else None, e.duration / 2)
            for e in rhythm.read_tune(tokens).events]


def _their_notes(path):
    """The same, read by music21 from a MusicXML file; the hidden rests that MusicXML needs to
    fill a short bar (a pickup, the closing bar of a part) are left out, and a note music21 tied
    over a bar line counts once."""
    notes = []
    for n in music21.converter.parse(path).flatten().notesAndRests:
        if n.isRest and n.style.hideObjectOnPrint:
            continue
        if n.tie is not None and n.tie.type in ("stop", "continue"):  # a note tied over a bar line
            notes[-1] = (notes[-1][0], notes[-1][1] + Fraction(n.quarterLength))
        else:
            notes.append((n.pitch.midi if n.isNote else None, Fraction(n.quarterLength)))
    return notes


def test_musicxml_opens_back_with_the_same_notes(tmp_path):
    # Real tunes that pass the structure checks (as constrained tunes do: an unequal broken
    # pair such as 'a < c' 3' is read differently by music21 and by abc2midi).
    real = [t for t in v2_format.read_tunes(fixture_path("data_v2_excerpt.txt")) if structure.is_valid_tune(t)]
    tunes = [HAND] + real[:6]
    written = output.write_tunes(tunes, [f"tune {i}" for i in range(len(tunes))], str(tmp_path), "musicxml")
    assert written == 2 * len(tunes)
    for i, tune in enumerate(tunes):
        path = os.path.join(tmp_path, output.tune_stem(i + 1) + ".musicxml")
        assert os.path.exists(path.replace(".musicxml", ".abc"))
        assert _their_notes(path) == _our_notes(tune), i


def test_musicxml_keeps_the_key(tmp_path):
    output.write_tunes([HAND], ["in D"], str(tmp_path), "musicxml", key="D")
    score = music21.converter.parse(os.path.join(tmp_path, "tune_001.musicxml"))
    first = next(n for n in score.flatten().notes)
    assert first.pitch.midi == pitch.token_pitch("G", "K:Cdor") + 2  # transposed up a tone
    assert score.metadata.bestTitle == "in D"
