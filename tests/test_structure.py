"""Structural checks on hand-made tunes with known answers, and on the v2 fixture."""

import os
from fractions import Fraction

from folkrnn_jax.data import v2_format
from folkrnn_jax.music import rhythm, structure

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "data_v2_excerpt.txt")

A_PART = "|: G A B c d 2 B G | A 2 F A G 2 E G | G A B c d 2 B G | A F D F G 4 :|"
B_PART = "|: g 2 e g d 2 B d | c 2 A c B 2 G B | g 2 e g d 2 B d | c A F A G 4 :|"


def tok(text):
    return text.split()


def aabb_8():
    bars_a = "|: " + " | ".join(["G A B c d 2 B G"] * 7) + " | A F D F G 4 :|"
    bars_b = "|: " + " | ".join(["g 2 e g d 2 B d"] * 7) + " | c A F A G 4 :|"
    return tok("M:4/4 K:Cmaj " + bars_a + " " + bars_b)


def test_meter_bar_length():
    assert structure.meter_bar_length("M:6/8") == 6
    assert structure.meter_bar_length("M:4/4") == 8
    assert structure.meter_bar_length("M:3/2") == 12
    assert structure.meter_bar_length("M:9/8") == 9


def test_note_events_read_chords_as_one_event():
    tune = tok("M:4/4 K:Cmaj [ C 2 E ] 2 G | (3 [ C E ] D E z > [ C E 2 ] [ G ] 2")
    events = rhythm.note_events(tune)
    assert [(e.start, e.duration, e.pitches, e.bar, e.chord) for e in events] == [
        (0, 2, ("C", "E"), 0, True),  # the 2 after ']' is the chord's length (abc2midi)
        (2, 1, ("G",), 0, False),
        (3, Fraction(2, 3), ("C", "E"), 1, True),  # a chord counts as one note of the tuplet
        (Fraction(11, 3), Fraction(2, 3), ("D",), 1, False),
        (Fraction(13, 3), Fraction(2, 3), ("E",), 1, False),
        (5, Fraction(3, 2), (), 1, False),
        (Fraction(13, 2), Fraction(1, 2), ("C", "E"), 1, True),  # a duration after the second note is ignored
        (7, 2, ("G",), 1, True),
    ]
    assert structure.bar_durations(tune) == [3, 6]


def test_bar_durations_semantics():
    # durations, broken rhythm with attached duration, tuplets, chords
    tune = tok(
        "M:4/4 K:Cmaj c 2> e 2 d B c 2 | C /2> D /2 E 3/2 F /2 G 2 z 2 | (3 c d e c 2 [ c e ] 2 z 2 "
        "| [ c 2 e 2 ] B > A G < F E 2 | (3 c 2 d 2 e 2 G 4 |"
    )
    assert structure.bar_durations(tune) == [8, 7, 8, 8, 8]
    assert structure.bar_durations(tok("M:6/8 K:Cmaj (2 c d e f g")) == [Fraction(6)]


def test_valid_tune_and_patterns():
    tune = tok("M:4/4 K:Cmaj " + A_PART + " " + B_PART)
    assert structure.tune_problems(tune) == []
    assert structure.is_valid_tune(tune)
    assert structure.bar_line_pattern(tune) == "|: | | | :| |: | | | :|"
    assert structure.bar_line_pattern(tune, compact=True) == "|: |*3 :| |: |*3 :|"
    ps = structure.part_structure(tune)
    assert str(ps) == "AABB" and ps.bars == (4, 4, 4, 4) and not ps.is_aabb_8
    assert structure.part_structure(aabb_8()).is_aabb_8
    assert structure.is_valid_tune(aabb_8())
    # A sampled sequence counts only when it ended; one cut at the length limit does not.
    assert structure.is_valid_tune(["<s>", *tune, "</s>"])
    assert structure.tune_problems(["<s>", *tune]) == ["the tune never ended: no </s> (cut at the length limit)"]


def test_pickup_and_endings_allowed():
    tune = tok(
        "M:6/8 K:Cmix |: c | f 3 c 2 f | a 3 g 2 f |1 e 2 g c 2 :| |2 e 2 g f 2 |: b | c' 2 a f 2 a | f 3 f 2 :|"
    )
    assert structure.tune_problems(tune) == []


def test_bar_too_long():
    tune = tok("M:4/4 K:Cmaj " + A_PART.replace("A 2 F A G 2 E G", "A 2 F A G 2 E G A"))
    problems = structure.tune_problems(tune)
    assert len(problems) == 1 and "bar 2 lasts 9" in problems[0]


def test_repeat_and_bracket_errors():
    first_only = tok("M:4/4 K:Cmaj |: G 8 | A 8 |1 B 8 :| c 8 | d 8 |")
    assert any("'|1' without a '|2'" in p for p in structure.tune_problems(first_only))
    second_only = tok("M:4/4 K:Cmaj G 8 | A 8 |2 c 8 |")
    assert any("'|2' without a '|1'" in p for p in structure.tune_problems(second_only))
    never_closed = tok("M:4/4 K:Cmaj |: G 8 | A 8 |")
    assert any("never closed" in p for p in structure.tune_problems(never_closed))
    implicit_start = tok("M:4/4 K:Cmaj G 8 | A 8 :| B 8 | c 8 :|")
    assert structure.tune_problems(implicit_start) == []
    unmatched = tok("M:4/4 K:Cmaj [ c e 8 | A 8 |")
    assert any("'['" in p or "chord" in p for p in structure.tune_problems(unmatched))
    stray = tok("M:4/4 K:Cmaj G 4 c e ] 2 |")
    assert any("']' without '['" in p for p in structure.tune_problems(stray))
    tuplet = tok("M:4/4 K:Cmaj G 6 A 2 | B 8 (3 |")
    assert any("tuplet" in p for p in structure.tune_problems(tuplet))
    broken = tok("M:4/4 K:Cmaj | > G 8 |")
    assert any("broken rhythm" in p for p in structure.tune_problems(broken))


def test_fixture_mostly_valid():
    tunes = v2_format.read_v2_file(FIXTURE)
    share = sum(structure.is_valid_tune(t) for t in tunes) / len(tunes)
    assert share > 0.75
