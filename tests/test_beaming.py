"""Beaming of the ABC that ``abc_out`` writes: notes grouped by the beat of the meter in force
(spaces end abcm2ps's beams), and the spaced ABC reading back as the same tokens."""

import os

import pytest

from folkrnn_jax.data import v2_format
from folkrnn_jax.music import abc_in, abc_out, rhythm, vocab
from tests.conftest import SHARED_DATA, fixture_path

# One bar of eighths per meter of the vocabulary, and how a player expects it beamed.
EIGHTHS = "C D E F G A B c d e f g".split()
EXPECTED_BAR = {
    "M:6/8": "CDE FGA",
    "M:9/8": "CDE FGA Bcd",
    "M:12/8": "CDE FGA Bcd efg",
    "M:2/4": "CD EF",
    "M:3/4": "CD EF GA",
    "M:4/4": "CDEF GABc",
    "M:3/2": "CDEF GABc defg",
}


def _body(meter, body):
    return abc_out.body_to_abc(body.split(), bars_per_line=100, meter=meter)


def test_every_meter_of_the_vocabulary_is_covered():
    assert set(EXPECTED_BAR) == set(vocab.METER_TOKENS)


@pytest.mark.parametrize("meter", vocab.METER_TOKENS)
def test_a_bar_of_eighths_is_beamed_by_the_beat(meter):
    length = int(rhythm.meter_bar_length(meter))
    body = EIGHTHS[:length] + ["|"]
    assert abc_out.body_to_abc(body, meter=meter) == EXPECTED_BAR[meter] + " |"
    # The header written by tokens_to_abc is the meter the body is grouped by.
    tune = abc_out.tokens_to_abc([meter, "K:Cmaj", *body])
    assert tune.splitlines()[-1] == EXPECTED_BAR[meter] + " |"


def test_jig_bar_as_in_the_issue():
    assert _body("M:6/8", "A B c d B A |") == "ABc dBA |"
    assert _body("M:6/8", "A 2 B c 2 A | G 3 A 3 |") == "A2B c2A | G3 A3 |"


def test_four_four_half_bars_split_by_the_quarter_around_sixteenths():
    assert _body("M:4/4", "A /2 B /2 c d B c 2 B A |") == "A/2B/2c dB c2BA |"
    assert _body("M:3/2", "A /2 B /2 c d e f g a b c' d' e' f' |") == "A/2B/2c de fgab c'd'e'f' |"
    # Triplet eighths are not sixteenths: the half bar stays one beam (as reels are written).
    assert _body("M:4/4", "(3 A B c d e f g a b |") == "(3ABcde fgab |"


def test_pickup_bars_are_placed_against_the_end_of_the_bar():
    # A four-eighth pickup in 6/8 is one eighth, then a full beat.
    assert _body("M:6/8", "G A B c | d e f g a b |") == "G ABc | def gab |"
    # A pickup that opens the second part after |: (the last bar before :| is left-aligned).
    assert _body("M:3/4", "A B c d e f | g 2 a :| |: B c d | e f g a b c' |") == (
        "AB cd ef | g2 a :| |: B cd | ef ga bc' |"
    )


def test_broken_rhythms_stay_with_their_notes():
    # The dotted beat falls between the two notes of 'A2>B': no space there, but after it.
    assert _body("M:6/8", "A 2> B c d e |") == "A2>B cde |"
    assert _body("M:2/4", "A > B c < d |") == "A>B c<d |"


def test_tuplets_are_never_split_and_start_their_beam():
    # The triplet starts on the second eighth and crosses the beat: kept whole.
    assert _body("M:2/4", "A (3 B c d e |") == "A(3Bcd e |"
    assert _body("M:2/4", "A B (3 c d e |") == "AB (3cde |"
    assert _body("M:6/8", "(2 A B c d e |") == "(2AB cde |"


def test_chords_rests_and_meter_changes():
    assert _body("M:2/4", "[ C E ] 2 G z |") == "[CE]2 Gz |"
    assert _body("M:6/8", "A B c d e f | M:2/4 A B c d |") == "ABc def | [M:2/4]AB cd |"


def test_odd_meters_group_sensibly():
    for meter, groups in {"M:7/8": (3, 2, 2), "M:5/8": (3, 2), "M:5/4": (2,) * 5, "M:9/4": (6,) * 3,
                          "M:2/2": (4, 4), "M:6/4": (6, 6), "M:3/8": (3,)}.items():
        grouping = abc_out.beat_grouping(meter)
        assert grouping.groups == groups, meter
        assert sum(grouping.groups) == rhythm.meter_bar_length(meter)
    # 7/8 is beamed three, two, two.
    assert _body("M:7/8", "C D E F G A B |") == "CDE FG AB |"


def _round_trip_tunes(every: int):
    path = os.path.join(SHARED_DATA, "data_v2_first5000.txt")
    if not os.path.exists(path):
        pytest.skip("../shared/data/data_v2_first5000.txt is not present (the v2 tunes live outside the repository)")
    tunes = v2_format.read_v2_file(path)[::every]
    return tunes + v2_format.read_v2_file(fixture_path("data_v2_excerpt.txt"))


def _check_round_trip(tunes, monkeypatch):
    """Our reader gives back the tokens; the raw-ABC converter reads the same with or
    without the beaming spaces."""
    spaced = [abc_out.tokens_to_abc(tune, index=1) for tune in tunes]
    # Our own reader: the same tokens.
    assert abc_out.parse_abc_text("\n".join(spaced)) == tunes
    # The raw-ABC converter reads the beamed ABC exactly as it reads the unbeamed ABC.
    monkeypatch.setattr(abc_out, "beam_breaks", lambda body, meter=None: set())
    plain = [abc_out.tokens_to_abc(tune, index=1) for tune in tunes]
    assert sum(a != b for a, b in zip(spaced, plain)) > len(tunes) // 2  # beaming did change them
    # (It normalises bar lines as it does for any ABC: a leading '|' is dropped, '| :|' merges.)
    converted = 0
    for a, b in zip(spaced, plain):
        beamed, unbeamed = abc_in.convert_tune(a), abc_in.convert_tune(b)
        assert (beamed.tokens, beamed.reason) == (unbeamed.tokens, unbeamed.reason)
        converted += beamed.ok
    assert converted > 0.9 * len(tunes)


def test_beamed_abc_reads_back_as_the_same_tokens(monkeypatch):
    _check_round_trip(_round_trip_tunes(every=100), monkeypatch)


@pytest.mark.slow
def test_beamed_abc_reads_back_on_all_5000_tunes(monkeypatch):
    _check_round_trip(_round_trip_tunes(every=1), monkeypatch)
