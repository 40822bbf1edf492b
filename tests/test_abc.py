"""Raw ABC to v2 tokens: keys, modes, durations, rhythm, bars, accidentals, left-out reasons."""

import os

import pytest

from folkrnn_jax.data import corpus
from folkrnn_jax.music import abc_in, vocab
from folkrnn_jax.music import midi as midi_lib
from folkrnn_jax.music import tools as tools_lib
from tests.conftest import fixture_path

RAW = fixture_path("raw_abc")


def tune(body: str, key: str = "C", meter: str = "4/4", unit: str | None = "1/8", extra: str = "") -> str:
    unit_line = f"L:{unit}\n" if unit else ""
    return f"X:1\nT:test\nM:{meter}\n{unit_line}{extra}K:{key}\n{body}\n"


def body_of(text: str, **kwargs) -> str:
    result = abc_in.convert_tune(tune(text, **kwargs))
    assert result.ok, (result.reason, result.detail)
    return " ".join(result.tokens[2:])


def fixture_tunes() -> dict[str, corpus.SourceTune]:
    out = {}
    for item in corpus.read_source(RAW):
        number = item.where.split("tune X:")[1].split(" ")[0]
        out[number] = item
    return out


# (X: number in the fixtures, source key, mode token, first body tokens worked out by hand)
FIXTURE_EXPECTED = [
    # O'Neill's 2, K:D, L:1/16: "f-g | a3-b g3-a | f4 e3-d |" down a tone, sixteenths -> /2.
    ("2", "D", "K:Cmaj", "e /2 f /2 | g 3/2 a /2 f 3/2 g /2 | e 2 d 3/2 c /2 |"),
    # O'Neill's 6, K:G, up a fourth: "G-E | G2 AB G/A/B/c/" (L:1/8; ties dropped).
    ("6", "G", "K:Cmaj", "c A | G 2 A B G A /4 B /4 c /4 d /4 |"),
    # O'Neill's 30, K:A, L:1/4: "c/2-d/2 | e2-f | d2-e |": c# -> e, quarter -> 2 eighths.
    ("30", "A", "K:Cmaj", "e f | g 4 a 2 | f 4 g 2 |"),
    # O'Neill's 34, K:Em -> Cmin: "B | GEEF GAB^c |": G -> E (E-flat in Cmin, written plain),
    # F# -> D, ^c -> =A (A natural against Cmin's A-flat).
    ("34", "Em", "K:Cmin", "G | E C C D E F G =A |"),
    # O'Neill's 46, K:Dmix -> Cmix: "c | Bdc BAG | D3-D2 c |": c natural -> B-flat, plain in Cmix.
    ("46", "Dmix", "K:Cmix", "B | A c B A G F | C 3 C 2 B |"),
    # O'Neill's 47, K:Ador, L:1/4: "A> (BA/2B/2) | G> (AB/2d/2 |": broken rhythm on a quarter.
    ("47", "Ador", "K:Cdor", "c 2> d 2 c d | B 2> c 2 d f |"),
    # O'Neill's 176, K:Bm -> Cmin, up a semitone: "A|B(d/c/B/A/) .B(FA)|": A -> B-flat (plain).
    ("176", "Bm", "K:Cmin", "B | c e /2 d /2 c /2 B /2 c G B |"),
    # O'Neill's 1, K:Gm, L:1/16: "G3-A (Bcd=e) |": =e -> =a against Cmin's A-flat.
    ("1", "Gm", "K:Cmin", "c 3/2 d /2 e /2 f /2 g /2 =a /2 |"),
]


@pytest.mark.parametrize("number,key,mode,start", FIXTURE_EXPECTED)
def test_real_tunes_come_out_in_c_with_mode_and_notes(number, key, mode, start):
    item = fixture_tunes()[number]
    assert f"K:{key}" in item.text.replace("K: ", "K:")
    result = abc_in.convert_tune(item.text, item.where)
    assert result.ok, (result.reason, result.detail)
    assert result.tokens[1] == mode
    assert result.tokens[0] in vocab.METER_TOKENS
    body = " ".join(result.tokens[2:])
    assert body.startswith(start), body[:120]
    assert all(token in vocab.TOKEN_TO_ID for token in result.tokens)


def test_real_tune_with_chords_triplets_endings_repeats():
    item = fixture_tunes()["17"]  # Ryan's Mammoth, Essence of Cinnamon Seed
    tokens = abc_in.convert_tune(item.text, item.where).tokens
    body = " ".join(tokens[2:])
    assert tokens[:2] == ["M:4/4", "K:Cmaj"]  # M:C
    assert body.startswith("(3 G, A, B, |: C > C E > G (3 [ c E ] [ c E ] [ c E ] (3 c a g |")
    assert "[ B 2 F 2 ]" in body  # [c2G2]: inner durations stay inside the chord
    assert "|1" in tokens and "|2" in tokens and ":|" in tokens


@pytest.mark.parametrize(
    "value,root,alter,mode",
    [
        ("D", "D", 0, "major"), ("Dmaj", "D", 0, "major"), ("Ador", "A", 0, "dorian"),
        ("Em", "E", 0, "minor"), ("G mixolydian", "G", 0, "mixolydian"),
        ("Edorian", "E", 0, "dorian"), ("F#m", "F", 1, "minor"), ("Bb", "B", -1, "major"),
        ("A minor", "A", 0, "minor"), ("D Major", "D", 0, "major"), ("Aaeolian", "A", 0, "minor"),
        ("C ionian", "C", 0, "major"), ("G clef=treble", "G", 0, "major"),
    ],
)
def test_key_spellings(value, root, alter, mode):
    key = abc_in.parse_key(value)
    assert (key.root_letter, key.root_alter, key.mode) == (root, alter, mode)


@pytest.mark.parametrize(
    "key,body,expected",
    [
        ("F#m", "f a c'", "c e g"),  # tritone down; A natural in F#m is E-flat in Cmin (plain)
        ("Bb", "B d f", "c e g"),  # up a tone: B-flat above middle C -> c
        ("G", "G B d", "c e g"),
        ("D", "D F A", "C E G"),
        ("Edor", "E G B c", "C E G A"),  # c# in E dorian -> A natural in C dorian
        ("Amix", "A c e g", "c e g b"),  # g natural in A mixolydian -> B-flat, plain in Cmix
    ],
)
def test_transposition_to_c(key, body, expected):
    assert body_of(body, key=key) == expected


def test_accidentals_follow_the_v2_key_signature_and_the_bar():
    # G minor -> C minor: B-flat and E-flat become E-flat and A-flat (plain in Cmin);
    # =e (E natural) becomes =a; the bar line cancels it.
    assert body_of("B e =e e | e", key="Gm") == "e a =a a | a"
    # D major -> C major: =c is B-flat (_B); it holds to the bar line; after it c# -> B.
    assert body_of("c =c c | c", key="D") == "B _B B | B"
    # An accidental the source wrote is kept even when the key already implies it (v2 keeps
    # such courtesy accidentals): ^f in G is b natural in C.
    assert body_of("^f f", key="G") == "=b b"


def test_ambiguous_accidental_scope_is_left_out():
    result = abc_in.convert_tune(tune("^F f"))
    assert not result.ok and result.reason == abc_in.R_AMBIGUOUS


def test_accidental_in_one_octave_and_the_same_letter_in_another():
    # E dorian -> C dorian (down a major third): a courtesy ^c (C sharp is in E dorian) is
    # A natural, marked =A because the source marked it; c' reads C sharp under both ABC's
    # octave rule and abc2midi's letter rule, so a needs no mark (A is natural in C dorian).
    assert body_of("^c c'", key="Edor") == "=A a"
    # D major: =c and =C are both B-flat, each marked as in the source.
    assert body_of("=c =C", key="D") == "_B _B,"


def test_durations_relative_to_eighths():
    assert body_of("A B2 c/2 d3/2", unit="1/8") == "A B 2 c /2 d 3/2"
    assert body_of("A B2 c4 d3", unit="1/16", meter="2/4") == "A /2 B c 2 d 3/2"
    assert body_of("A B2 c/2 d3/2", unit="1/4", meter="3/4") == "A 2 B 4 c d 3"
    # No L: field: 1/16 below 3/4 (ABC's rule), else 1/8.
    assert body_of("A B2", unit=None, meter="2/4") == "A /2 B"
    assert body_of("A B2", unit=None, meter="6/8") == "A B 2"
    # A duration with no v2 token leaves the tune out.
    result = abc_in.convert_tune(tune("A5/4 B"))
    assert not result.ok and result.reason == abc_in.R_DURATION


def test_broken_rhythm_triplets_chords():
    assert body_of("A>B c<d e2>f g/2<a") == "A > B c < d e 2> f g /2< a"
    assert body_of("(3ABc (3:2:3def") == "(3 A B c (3 d e f"
    assert body_of("[CEG] [CE]2 [C2E2] [ce]>d") == "[ C E G ] [ C E ] 2 [ C 2 E 2 ] [ c e ] > d"
    assert body_of("[C4E4]", unit="1/16", meter="2/4") == "[ C 2 E 2 ]"
    assert abc_in.convert_tune(tune("A>>B")).reason == abc_in.R_BROKEN
    assert abc_in.convert_tune(tune("(3:4:3ABc")).reason == abc_in.R_TUPLET


def test_bars_repeats_endings():
    assert body_of("|: A B :|: c d :: e f :| g || a |]") == "|: A B :| |: c d :| |: e f :| g | a |"
    assert body_of("|: A |1 B :|2 c |") == "|: A |1 B :| |2 c |"
    assert body_of("|: A | [1 B :| [2 c |") == "|: A |1 B :| |2 c |"
    assert body_of("A :| B || C D :| E") == "A :| B |: C D :| E"  # repeat from the double bar
    assert abc_in.convert_tune(tune("|: A |3 B :|")).reason == abc_in.R_ENDING


def test_dropped_decorations_graces_chord_symbols_slurs_ties():
    assert body_of('~A .B !trill!c "Am"d {g}e (fg) a-a "^text"b Tc uB vA') == "A B c d e f g a a b c B A"


def test_meters():
    for meter, token in [("C", "M:4/4"), ("C|", "M:4/4"), ("2/2", "M:4/4"), ("6/8", "M:6/8"),
                         ("3/4", "M:3/4"), ("2/4", "M:2/4"), ("9/8", "M:9/8"), ("12/8", "M:12/8"),
                         ("3/2", "M:3/2")]:
        assert abc_in.convert_tune(tune("A B", meter=meter)).tokens[0] == token
    assert abc_in.convert_tune(tune("A B", meter="5/4")).reason == abc_in.R_METER
    assert abc_in.convert_tune(tune("A B", meter="none")).reason == abc_in.R_METER


@pytest.mark.parametrize(
    "text,reason",
    [
        (tune("A B", key="Dphr"), abc_in.R_MODE),
        (tune("A B", key="Glyd"), abc_in.R_MODE),
        (tune("A B", key="none"), abc_in.R_MODE),
        (tune("A B", extra="V:1\n"), abc_in.R_VOICES),
        (tune("A B [K:G] c"), abc_in.R_KEY_CHANGE),
        (tune("A B\nM:3/4\nc"), abc_in.R_METER_CHANGE),
        (tune("A Z2 |"), abc_in.R_MULTIREST),
        (tune('A "unclosed B'), abc_in.R_SYNTAX),
        (tune("A # B"), abc_in.R_SYNTAX),
        (tune("c''' a"), abc_in.R_PITCH),
        ("X:1\nT:no key\nM:4/4\nABC\n", abc_in.R_NO_KEY),
    ],
)
def test_left_out_with_reason(text, reason):
    result = abc_in.convert_tune(text, "test")
    assert result.tokens is None
    assert result.reason == reason, result.detail
    assert result.detail


def test_same_key_again_and_inline_unit_change_are_fine():
    assert body_of("A B\nK:C\nc [L:1/16] d2") == "A B c d"


@pytest.mark.skipif(not tools_lib.have("abc2midi"), reason="abc2midi (Debian package abcmidi) is not on PATH")
def test_fixture_tunes_round_trip_through_abc2midi():
    items = list(corpus.read_source(RAW))
    assert len(items) == 9
    for item in items:
        result = abc_in.convert_tune(item.text, item.where)
        assert result.ok, (item.where, result.reason, result.detail)
        check = corpus.midi_round_trip(item.text, result.tokens)
        assert check.match, (item.where, check.detail)


@pytest.mark.skipif(not tools_lib.have("abc2midi"), reason="abc2midi (Debian package abcmidi) is not on PATH")
def test_round_trip_detects_a_wrong_note():
    item = fixture_tunes()["34"]
    tokens = abc_in.convert_tune(item.text).tokens
    index = tokens.index("=A")
    wrong = tokens[:index] + ["A"] + tokens[index + 1:]  # A-flat instead of A natural
    assert not corpus.midi_round_trip(item.text, wrong).match
    longer = tokens[:index + 1] + ["2"] + tokens[index + 1:]
    assert not corpus.midi_round_trip(item.text, longer).match


def test_fixture_folder_exists():
    assert os.path.isdir(RAW)


SIMPLE = "X:1\nT:scale\nM:4/4\nL:1/4\nK:C\nC D [EG] z | c2 A2 |\n"


@pytest.mark.skipif(not tools_lib.have("abc2midi"), reason="abc2midi (Debian package abcmidi) is not on PATH")
def test_abctools_midi_notes():
    midi = tools_lib.abc_to_midi(SIMPLE)
    assert midi[:4] == b"MThd"
    quarter = midi_lib.midi_resolution(midi)
    notes = midi_lib.midi_notes(midi)
    assert [pitch for _, pitch, _ in notes] == [60, 62, 64, 67, 72, 69]
    starts = [start - notes[0][0] for start, _, _ in notes]
    # abc2midi starts the notes of a chord a few ticks apart.
    assert starts[:3] == [0, quarter, 2 * quarter] and 0 <= starts[3] - 2 * quarter <= 25
    assert starts[4:] == [4 * quarter, 6 * quarter]
    lengths = [duration for _, _, duration in notes]
    # abc2midi ends each note a tick early; the ratios are what matter.
    assert abs(lengths[4] - 2 * quarter) <= 2 and abs(lengths[0] - quarter) <= 2


@pytest.mark.skipif(not tools_lib.have("abcm2ps"), reason="abcm2ps is not on PATH")
def test_abctools_render_svg(tmp_path):
    paths = tools_lib.render_svg(SIMPLE, str(tmp_path))
    assert paths and all(p.endswith(".svg") and os.path.getsize(p) > 0 for p in paths)
    with open(paths[0]) as f:
        assert "<svg" in f.read(1000)


def test_abctools_missing_tool_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(tools_lib.shutil, "which", lambda name: None)
    with pytest.raises(tools_lib.ToolMissingError, match="apt-get install abcmidi"):
        tools_lib.abc_to_midi(SIMPLE)
    with pytest.raises(tools_lib.ToolMissingError, match="abcm2ps"):
        tools_lib.render_svg(SIMPLE, "/tmp")


# ---------------------------------------------------------------------------------------------
# Hostile input (issue 13): no exception escapes the converter; lexing is linear


@pytest.mark.parametrize("body", [
    "A/0 B", "z/0 B", "[CE]/0 B", "A" + "9" * 5000 + " B", "A/" + "7" * 5000 + " B",
    "(" + "3" * 5000 + "ABC", "A[\u00b2B|", "A\u00b2 B", "A" + "/" * 5000 + " B",
])
def test_hostile_bodies_are_left_out(body):
    result = abc_in.convert_tune(tune(body), "hostile.abc tune 1")
    assert not result.ok and result.reason and result.where == "hostile.abc tune 1"


def test_hostile_unit_is_left_out():
    result = abc_in.convert_tune(tune("A B", unit="1/" + "8" * 5000))
    assert not result.ok and result.reason == abc_in.R_UNIT


def test_unforeseen_error_is_left_out_with_its_name(monkeypatch):
    def broken(self, symbol, what):
        raise IndexError("reader gap")

    monkeypatch.setattr(abc_in._Converter, "broken", broken)
    result = abc_in.convert_tune(tune("A>B"), "f.abc tune 7")
    assert not result.ok and result.reason == abc_in.R_UNREADABLE
    assert "IndexError: reader gap" in result.detail and "f.abc tune 7" in result.detail


def test_one_bad_two_good_tunes_convert_the_two(tmp_path):
    path = tmp_path / "three.abc"
    path.write_text(
        tune("A B c d|", extra="") + "\n" + tune("A/0 B|").replace("X:1", "X:2") + "\n"
        + tune("d c B A|").replace("X:1", "X:3") + "\n"
    )
    built = corpus.build_corpus([str(path)])
    assert len(built.kept) == 2 and built.report["tunes_read"] == 3
    assert built.report["left_out_total"] == 1 and "zero length" in repr(built.report)


def test_long_single_line_converts_in_linear_time():
    import time

    bar = "|: ABcd efga || gfed cBAG :| "  # double bars and repeats: repeat_follows's case too
    body = bar * (640_000 // len(bar))
    assert len(body) >= 630_000
    # CPU time of this process: the wall clock also counts whatever else shares the cores.
    start = time.process_time()
    result = abc_in.convert_tune(tune(body))
    elapsed = time.process_time() - start
    assert result.reason is None or result.reason != abc_in.R_UNREADABLE
    assert elapsed < 10, elapsed


def _real_tunes() -> list[str]:
    return [item.text for item in corpus.read_source(RAW)][:40]


try:
    import hypothesis
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in requirements.txt
    hypothesis = None

if hypothesis is not None:
    _MUTATION_ALPHABET = st.sampled_from(
        list("ABCDEFGabcdefgzxZ^_=,'/0123456789()[]{}|:<>-\"!+&.~ \n%\\") + ["\u00b2", "\u00e9", "L:", "K:", "M:"]
    )

    @hypothesis.settings(max_examples=300, deadline=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(data=st.data())
    def test_mutated_real_tunes_never_raise(data):
        tunes = _real_tunes()
        text = tunes[data.draw(st.integers(0, len(tunes) - 1))]
        for _ in range(data.draw(st.integers(1, 6))):
            position = data.draw(st.integers(0, len(text)))
            action = data.draw(st.sampled_from(["insert", "delete", "replace", "digits"]))
            piece = data.draw(st.lists(_MUTATION_ALPHABET, min_size=1, max_size=4).map("".join))
            if action == "insert":
                text = text[:position] + piece + text[position:]
            elif action == "delete":
                text = text[:position] + text[position + len(piece):]
            elif action == "replace":
                text = text[:position] + piece + text[position + len(piece):]
            else:
                text = text[:position] + "9" * data.draw(st.integers(1, 5000)) + text[position:]
        result = abc_in.convert_tune(text, "mutated")
        assert result.reason != abc_in.R_UNREADABLE, result.detail
