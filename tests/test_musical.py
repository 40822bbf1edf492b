"""Musical statistics (``folkrnn_jax.analysis.musical``) on hand-made tunes with known answers."""

import pytest

from folkrnn_jax.analysis import musical

# AABB, 2-bar parts: part A ends on G (the dominant), the tune on C; pitches c d e f g e d c d c.
CADENCE = "M:4/4 K:Cmaj |: c 2 d 2 e 2 f 2 | g 8 :| |: e 2 d 2 c 2 d 2 | c 8 :|"
# Endings, sixteenths, a repeated bar; the tune ends on E in its second ending.
ENDINGS = "M:4/4 K:Cmaj |: c /2 d /2 e c 2 c 4 | c /2 d /2 e c 2 c 4 |1 G 8 :| |2 E 8 |"
# Ends on an empty second ending; bars A B A B (two repeated bars, one repeated 2-bar unit).
EMPTY = "M:4/4 K:Cmaj |: c 8 | d 8 | c 8 | d 8 |1 e 8 :| |2"
# AABB with two 8-bar parts (C minor: 'B' is B-flat, 'E' E-flat): part A ends on C.
EIGHT = ("M:4/4 K:Cmin |: " + "c 8 | " * 7 + "c 8 :| |: " + "E 8 | " * 7 + "B 8 :|")
SIXTEEN_B = ("M:4/4 K:Cmaj |: " + "c 8 | " * 7 + "c 8 :| |: " + "E 8 | " * 15 + "G 8 :|")


def _tune(text):
    return text.split()


def test_one_tune():
    s = musical.tune_statistics(_tune(CADENCE))
    assert (s.last_pitch_class, s.part_a_pitch_class, s.empty_ending) == (0, 7, False)
    assert (s.parts, s.part_bars) == ("AABB", (2, 2, 2, 2))
    assert (s.notes, s.sixteenths, s.bars, s.repeated_bars) == (10, 0, 4, 0)
    assert (s.pitch_range, s.intervals, s.steps) == (7, 9, 8)  # every interval a step but g-e

    s = musical.tune_statistics(_tune(ENDINGS))
    assert (s.last_pitch_class, s.empty_ending, s.sixteenths, s.notes) == (4, False, 4, 12)
    assert (s.bars, s.repeated_bars, s.units, s.repeated_units) == (4, 1, 3, 0)

    s = musical.tune_statistics(_tune(EMPTY))
    assert s.empty_ending and s.last_pitch_class == 4
    assert (s.bars, s.repeated_bars, s.units, s.repeated_units) == (5, 2, 4, 1)


def test_part_a_ends_at_the_second_ending():
    tune = "M:4/4 K:Cmaj |: c 8 | d 8 |1 e 8 :| |2 c 8 |: g 8 | a 8 |1 b 8 :| |2 c' 8 |"
    s = musical.tune_statistics(_tune(tune))
    assert s.parts == "AABB" and s.part_a_pitch_class == 0  # '|2 c 8', not the first ending's e


def test_set_of_tunes():
    stats = musical.musical_statistics([_tune(t) for t in (CADENCE, ENDINGS, EMPTY, EIGHT, SIXTEEN_B)])
    assert stats["tunes"] == 5
    # Last notes: C, E, E, B-flat, G.
    assert stats["last_tonic_share"] == pytest.approx(1 / 5)
    assert stats["last_tonic_or_dominant_share"] == pytest.approx(2 / 5)
    # Part A of the AABB tunes CADENCE, EIGHT and SIXTEEN_B ends on G, C, C.
    assert stats["part_a_tunes"] == 3
    assert stats["part_a_tonic_share"] == pytest.approx(2 / 3)
    assert stats["part_a_tonic_or_dominant_share"] == pytest.approx(1.0)
    assert stats["empty_ending_share"] == pytest.approx(1 / 5)
    assert stats["aabb_8_share"] == pytest.approx(1 / 5)
    assert stats["b_part_bars"] == {"2": 1, "8": 1, "16": 1}
    assert stats["b_part_16_share"] == pytest.approx(1 / 3)
    notes = 10 + 12 + 5 + 16 + 24
    assert stats["sixteenths_per_100_notes"] == pytest.approx(100 * 4 / notes)
    assert stats["repeated_bar_share"] == pytest.approx((0 + 1 + 2 + 13 + 21) / (4 + 4 + 5 + 16 + 24))
    assert stats["pitch_range_mean"] == pytest.approx((7 + 12 + 4 + 9 + 8) / 5)


def test_empty_set():
    stats = musical.musical_statistics([])
    assert stats["tunes"] == 0 and stats["last_tonic_share"] == 0.0 and stats["b_part_bars"] == {}
