"""Convert one raw ABC tune into the folk-rnn v2 token sequence.

``convert_tune(text, where)`` reads one tune (``X:`` ... body) and returns a
:class:`ConversionResult`: either the v2 tokens (``M:x/y``, ``K:C<mode>``, body tokens; no
``<s>``/``</s>``) or ``None`` with a reason (a short category used for counting) and a detail
(what exactly, where). Nothing that cannot be represented is silently changed: such tunes are
left out.

Conventions (checked against the real v2 data, see ``data/README.md``):

- Unit length: every duration is rewritten relative to ``L:1/8``; a duration with no v2 token
  (``5/4``, ``11``...) leaves the tune out. A missing ``L:`` follows the ABC rule (1/16 when
  the meter is below 3/4, else 1/8).
- Meter: ``4/4 6/8 3/4 2/4 9/8 12/8 3/2`` as they are; ``C`` is 4/4; ``C|`` and ``2/2`` are
  written ``M:4/4`` (the bar holds 8 eighths either way, which is also thesession's
  practice). Other meters, free meter and a change of meter inside the tune leave it out.
- Key: any root, modes major/ionian, minor/aeolian, dorian, mixolydian map to
  ``K:Cmaj/Cmin/Cdor/Cmix``; phrygian, lydian, locrian, ``K:none``, ``K:Hp`` and a change of
  key inside the tune leave it out. The tune is transposed by the smallest shift that takes
  the root to C (-6..+5 semitones; the spread of mean pitches in the v2 data fits this), and
  each note moves by the matching number of letter steps, so a source ``^G`` in D becomes
  ``^F`` and a source ``=c`` in D becomes ``_B`` (the spelling the v2 data uses).
- Accidentals: v2 writes its body against the key signature of ``K:C<mode>`` (Cmin has
  B-flat, E-flat, A-flat: the data writes plain ``E`` for E-flat and ``=B`` for B natural)
  and an accidental holds to the end of the bar. A note gets an accidental token when the
  source wrote one (transposed; v2 keeps such courtesy accidentals too) or when its pitch
  differs from what the target key signature and the accidentals already in the bar give.
  ABC says an accidental holds for the same octave, abc2midi applies it to every octave;
  output accidentals are written so both readings agree, and a source tune where the two
  readings give different pitches is left out as ambiguous.
- Dropped without trace (no v2 token): titles and other fields, decorations (``~ . H T u v``
  ``!trill!`` ...), grace notes ``{..}``, chord symbols and annotations ``".."``, slurs, and
  tie marks ``-`` (a tied note becomes two notes of the same pitch: v2 has no tie token).
- Bars: ``||``, ``|]``, ``[|`` become ``|``; ``::``/``:|:`` become ``:| |:``; ``[1``/``[2``
  become ``|1``/``|2``; a plain ``|`` directly before ``|1``, ``|2``, ``|:`` or ``|`` merges
  into it, and a ``|`` directly after ``:|`` is dropped (the v2 data has no ``| |1``,
  ``| |:``, or ``:| |``). Endings other than 1 and 2 leave the tune out.
- Broken rhythm ``>``/``<`` follows the note's duration token and merges with it as v2 does
  (``c2>e2`` is ``c 2> e 2``); ``>>`` has no token. Tuplets ``(p`` and the long form
  ``(p:q:r`` when it equals the short one. Chords ``[CEG]2`` are ``[ C E G ] 2`` with any
  inner durations kept inside. Rests ``z`` and ``x`` are ``z``; ``Z`` leaves the tune out.
"""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction
from typing import Iterator

from folkrnn_jax.music import vocab
from folkrnn_jax.music.pitch import (
    ACCIDENTALS,
    LETTERS,
    MIDDLE_C_DIATONIC,
    NATURAL_SEMITONES,
    V2_MODES,
    V2_SIGNATURES,
    midi_pitch,
    note_name,
    scale_alterations,
)


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    """``tokens`` is the v2 sequence, or ``None`` with ``reason`` (category) and ``detail``."""

    tokens: list[str] | None
    reason: str | None = None
    detail: str | None = None
    where: str = ""
    title: str | None = None
    respelled: int = 0  # notes respelled enharmonically (pitch kept) to fit the vocabulary

    @property
    def ok(self) -> bool:
        return self.tokens is not None


class LeftOut(Exception):
    """Raised inside the converter: the tune cannot be represented in v2."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# Reason categories (keys of the report's left-out table).
R_NO_KEY = "no K: field"


R_NO_BODY = "no music"


R_UNREADABLE = "unreadable (the reader failed on it)"


R_MODE = "mode not in v2 (phrygian, lydian, locrian, none...)"


R_KEY_FIELD = "unreadable K: field"


R_METER = "meter not in v2"


R_UNIT = "unreadable L: field"


R_KEY_CHANGE = "key change inside the tune"


R_METER_CHANGE = "meter change inside the tune"


R_VOICES = "multiple voices"


R_DURATION = "duration with no v2 token"


R_PITCH = "pitch outside the v2 vocabulary"


R_AMBIGUOUS = "ambiguous accidental (octave scope)"


R_BROKEN = "broken rhythm with no v2 token"


R_TUPLET = "tuplet with no v2 token"


R_ENDING = "ending other than 1 or 2"


R_MULTIREST = "multi-measure rest Z"


R_SYNTAX = "unparsable ABC"


R_TOKEN = "token outside the v2 vocabulary"


R_DUPLICATE = "duplicate of an earlier tune"


R_MALFORMED_ROW = "malformed source row"


MODE_WORDS = {
    "": "major", "maj": "major", "ion": "major", "m": "minor", "min": "minor", "aeo": "minor",
    "dor": "dorian", "mix": "mixolydian", "phr": "phrygian", "lyd": "lydian", "loc": "locrian",
}


ACCIDENTAL_MARKS = {1: "^", 0: "=", -1: "_"}


METERS = {
    "4/4": "M:4/4", "C": "M:4/4", "2/2": "M:4/4", "C|": "M:4/4", "6/8": "M:6/8",
    "3/4": "M:3/4", "2/4": "M:2/4", "9/8": "M:9/8", "12/8": "M:12/8", "3/2": "M:3/2",
}


DURATION_TOKENS = {"2", "3", "4", "5", "6", "7", "8", "9", "12", "16", "/2", "/3", "/4", "/8",
                   "3/2", "3/4", "5/2", "7/2"}


@dataclasses.dataclass
class Key:
    root_letter: str
    root_alter: int
    mode: str
    signature: dict[str, int]

    @property
    def v2_token(self) -> str:
        return V2_MODES[self.mode]


def parse_key(value: str) -> Key:
    """Parse a ``K:`` value: ``D``, ``Dmaj``, ``Ador``, ``Em``, ``G mixolydian``, ``Edorian``,
    ``F#m``, ``Bb``, ``D =c`` (explicit extra accidentals), ``G clef=treble``."""
    text = value.strip()
    match = re.match(r"^([A-G])([#b]?)\s*([A-Za-z]*)(.*)$", text)
    if not match:
        if re.match(r"^(none|hp|HP|Hp)\b", text) or not text:
            raise LeftOut(R_MODE, f"K:{value.strip()}")
        raise LeftOut(R_KEY_FIELD, f"K:{value.strip()}")
    letter, alter_mark, word, rest = match.groups()
    if rest.startswith("="):  # "G clef=treble": the word is an option's name, not a mode
        word, rest = "", word + rest
    word_key = word.lower()
    if word_key not in MODE_WORDS:
        word_key = word_key[:3]
    if word_key not in MODE_WORDS:
        if word_key in ("exp",):
            raise LeftOut(R_MODE, f"K:{value.strip()}")
        raise LeftOut(R_KEY_FIELD, f"K:{value.strip()} (mode {word!r})")
    mode = MODE_WORDS[word_key]
    if mode not in V2_MODES:
        raise LeftOut(R_MODE, f"K:{value.strip()} ({mode})")
    alter = {"#": 1, "b": -1, "": 0}[alter_mark]
    signature = scale_alterations(letter, alter, mode)
    for item in rest.split():
        extra = re.match(r"^(\^\^|\^|=|__|_)([A-Ga-g])$", item)
        if extra:
            signature[extra.group(2).upper()] = ACCIDENTALS[extra.group(1)]
        elif re.match(r"^(transpose|octave|middle|m)=", item):
            raise LeftOut(R_KEY_FIELD, f"K:{value.strip()} ({item} not supported)")
        elif "=" in item:
            continue  # clef=, stafflines=... only change the display
        else:
            raise LeftOut(R_KEY_FIELD, f"K:{value.strip()} ({item!r})")
    return Key(letter, alter, mode, signature)


def parse_meter(value: str) -> tuple[str, Fraction]:
    """Return (v2 meter token, bar length as a fraction of a whole note)."""
    text = value.strip().replace(" ", "")
    if text in METERS:
        if text in ("C", "C|"):
            return METERS[text], Fraction(1)
        numerator, denominator = text.split("/")
        return METERS[text], Fraction(int(numerator), int(denominator))
    raise LeftOut(R_METER, f"M:{value.strip()}")


def parse_unit(value: str) -> Fraction:
    match = re.match(r"^\s*(\d{1,6})\s*/\s*(\d{1,6})\s*$", value)
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise LeftOut(R_UNIT, f"L:{value.strip()}")
    return Fraction(int(match.group(1)), int(match.group(2)))


def key_shift(key: Key) -> tuple[int, int]:
    """(semitones, diatonic steps) that take the key's root to C: the smallest shift,
    -6..+5 semitones."""
    root_pc = (NATURAL_SEMITONES[key.root_letter] + key.root_alter) % 12
    semitones = (-root_pc) % 12
    if semitones > 5:
        semitones -= 12
    root_diatonic = MIDDLE_C_DIATONIC + LETTERS.index(key.root_letter)
    root_pitch = midi_pitch(root_diatonic, key.root_alter) + semitones
    target_octave = round((root_pitch - 60) / 12) + 4
    return semitones, 7 * target_octave - root_diatonic


def strip_comment(line: str) -> str:
    """Remove a ``%`` comment (not an escaped ``\\%``)."""
    position = 0
    while True:
        index = line.find("%", position)
        if index < 0:
            return line
        if index > 0 and line[index - 1] == "\\":
            position = index + 1
            continue
        return line[:index]


def uncommented_lines(text: str) -> Iterator[str]:
    """Lines without ``%`` comments; ``%%`` directive lines and comment-only lines are
    dropped (a comment line is not a blank line, which would end the tune)."""
    for raw_line in text.splitlines():
        if raw_line.startswith("%%"):
            continue
        line = strip_comment(raw_line).rstrip()
        if line.strip() or not raw_line.strip():
            yield line


FIELD_LINE = re.compile(r"^([A-Za-z+]):(?![|:])(.*)$")


@dataclasses.dataclass
class RawTune:
    header: list[tuple[str, str]]
    body: list[tuple[str, str]]  # ("music", text) or (field letter, value)


def split_raw_tune(text: str) -> RawTune:
    """Header fields up to and including the first ``K:``; then body lines and body fields."""
    header: list[tuple[str, str]] = []
    body: list[tuple[str, str]] = []
    in_header = True
    for line in uncommented_lines(text):
        if not line.strip():
            if in_header:
                continue
            if body:
                break  # a blank line ends the tune
            continue
        field = FIELD_LINE.match(line)
        if field:
            letter, value = field.group(1), field.group(2).strip()
            if in_header:
                header.append((letter, value))
                if letter == "K":
                    in_header = False
            else:
                body.append((letter, value))
        elif in_header:
            if header:
                # Music before K: is broken ABC.
                raise LeftOut(R_NO_KEY, "music before the K: field")
            continue  # free text before X:
        else:
            body.append(("music", line))
    return RawTune(header, body)


@dataclasses.dataclass
class Note:
    mark: str  # "", "^", "^^", "=", "_", "__"
    letter: str
    octave_marks: str
    length: Fraction  # multiplier of the unit length


@dataclasses.dataclass
class Rest:
    length: Fraction


@dataclasses.dataclass
class Event:
    kind: str  # note rest chord_open chord_close bar broken tuplet field
    value: object = None
    length: Fraction | None = None


LENGTH = re.compile(r"(\d*)(/*)(\d*)", re.ASCII)


# ``~ . H L M O P S T u v`` are ABC's predefined decorations; the other letters H-W and h-w
# are reserved for user-defined symbols (ABC 2.1, 4.16): they never name notes.
DECORATION_CHARS = set("~.HIJKLMNOPQRSTUVWhijklmnopqrstuvw")


SKIP_CHARS = set(" \t\\`y$)-")


# Longer numbers are no note length, tuplet or unit a tune uses (and Python refuses to
# convert strings of more than 4300 digits).
MAX_DIGITS = 6


def _number(digits: str, what: str) -> int:
    if len(digits) > MAX_DIGITS:
        raise LeftOut(R_SYNTAX, f"{what} with a {len(digits)}-digit number {digits[:12]!r}...")
    return int(digits)


def parse_length(text: str, position: int) -> tuple[Fraction, int]:
    match = LENGTH.match(text, position)
    numerator, slashes, denominator = match.groups()
    where = f"length {match.group(0)[:20]!r}"
    if len(slashes) > 64:
        raise LeftOut(R_SYNTAX, f"length with {len(slashes)} slashes")
    if denominator and _number(denominator, where) == 0:
        raise LeftOut(R_SYNTAX, f"zero length {match.group(0)[:20]!r}")
    if numerator:
        _number(numerator, where)
    value = Fraction(int(numerator) if numerator else 1)
    if slashes:
        if denominator:
            if len(slashes) > 1:
                raise LeftOut(R_SYNTAX, f"length {match.group(0)!r}")
            value /= int(denominator)
        else:
            value /= 2 ** len(slashes)
    if value == 0:
        raise LeftOut(R_SYNTAX, f"zero length {match.group(0)!r}")
    return value, match.end()


BAR = re.compile(r"(:*)(\[?\|+\]?|\[\|)(:*)|(:{2,})")
# Matched at a position (``pattern.match(text, i)``), never on ``text[i:]``: slicing the rest
# of the line at each event made lexing quadratic in the line's length.
TUPLET = re.compile(r"\((\d+)(?::(\d*))?(?::(\d*))?", re.ASCII)
NOTE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-g])([,']*)")
INLINE_FIELD = re.compile(r"\[[A-Za-z]:", re.ASCII)
NUMBERED_BAR = re.compile(r"\[(\d[\d,\-]*)", re.ASCII)
ENDING = re.compile(r"\d[\d,\-]*", re.ASCII)
BROKEN = re.compile(r"[<>]+")
ASCII_DIGITS = "0123456789"


def lex_music(text: str, line_number: int) -> Iterator[Event]:
    """Yield events of one music line."""
    i = 0
    n = len(text)

    def where(position: int) -> str:
        return f"body line {line_number}, column {position + 1}: {text[max(0, position - 10):position + 10]!r}"

    while i < n:
        c = text[i]
        if c in SKIP_CHARS:
            i += 1
        elif c in DECORATION_CHARS:
            i += 1
        elif c == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise LeftOut(R_SYNTAX, "unclosed quote, " + where(i))
            i = end + 1
        elif c == "!" or c == "+":
            end = text.find(c, i + 1)
            if end < 0:
                if c == "!":
                    i += 1  # an unpaired ! is the old score line-break mark
                    continue
                raise LeftOut(R_SYNTAX, f"unclosed {c}decoration{c}, " + where(i))
            i = end + 1
        elif c == "{":
            end = text.find("}", i + 1)
            if end < 0:
                raise LeftOut(R_SYNTAX, "unclosed grace notes, " + where(i))
            i = end + 1
        elif c == "(":
            match = TUPLET.match(text, i)
            if match and match.group(1):
                p = _number(match.group(1), "tuplet")
                q = _number(match.group(2), "tuplet") if match.group(2) else None
                r = _number(match.group(3), "tuplet") if match.group(3) else None
                yield Event("tuplet", (p, q, r))
                i = match.end()
            else:
                i += 1  # slur
        elif c == "&":
            raise LeftOut(R_VOICES, "voice overlay &, " + where(i))
        elif c in "^=_" or c.isalpha() and c.upper() in LETTERS:
            match = NOTE.match(text, i)
            if not match:
                raise LeftOut(R_SYNTAX, "accidental without a note, " + where(i))
            mark, letter, marks = match.group(1) or "", match.group(2), match.group(3)
            length, i = parse_length(text, match.end())
            yield Event("note", Note(mark, letter, marks, length))
        elif c in "zx":
            length, i = parse_length(text, i + 1)
            yield Event("rest", Rest(length))
        elif c == "Z" or c == "X":
            raise LeftOut(R_MULTIREST, where(i))
        elif c == "[" and INLINE_FIELD.match(text, i):
            end = text.find("]", i)
            if end < 0:
                raise LeftOut(R_SYNTAX, "unclosed inline field, " + where(i))
            yield Event("field", (text[i + 1], text[i + 3:end].strip()))
            i = end + 1
        elif c == "[" and i + 1 < n and text[i + 1] in ASCII_DIGITS:  # not "²": isdigit() is
            match = NUMBERED_BAR.match(text, i)
            yield Event("bar", "[" + match.group(1))
            i = match.end()
        elif c in "|:" or (c == "[" and i + 1 < n and text[i + 1] == "|"):
            match = BAR.match(text, i)
            if not match:
                raise LeftOut(R_SYNTAX, "bar line, " + where(i))
            symbol = match.group(0)
            i = match.end()
            ending = ENDING.match(text, i) if symbol.endswith("|") else None
            if ending:
                symbol += ending.group(0)
                i = ending.end()
            yield Event("bar", symbol)
        elif c == "[":
            yield Event("chord_open")
            i += 1
        elif c == "]":
            length, i = parse_length(text, i + 1)
            yield Event("chord_close", length=length)
        elif c in "<>":
            match = BROKEN.match(text, i)
            yield Event("broken", match.group(0))
            i = match.end()
        else:
            raise LeftOut(R_SYNTAX, f"unexpected {c!r}, " + where(i))


def duration_token(length: Fraction, where: str) -> str:
    """v2 duration token for a length in eighths ('' for one eighth)."""
    if length == 1:
        return ""
    if length.denominator == 1:
        token = str(length.numerator)
    elif length.numerator == 1:
        token = f"/{length.denominator}"
    else:
        token = f"{length.numerator}/{length.denominator}"
    if token not in DURATION_TOKENS:
        raise LeftOut(R_DURATION, f"{token} eighths ({where})")
    return token


def map_bar(symbol: str, where: str) -> list[str]:
    """Map a source bar symbol to v2 bar tokens (before merging with neighbours)."""
    ending = re.search(r"(\d[\d,\-]*)$", symbol)
    number = ending.group(1) if ending else None
    core = symbol[: ending.start()] if ending else symbol
    tokens: list[str] = []
    starts = core.endswith(":") and "|" in core or core == "::" or core.startswith("::")
    ends = core.startswith(":")
    if core in ("::", ":::", "::::"):
        starts = ends = True
    if ends:
        tokens.append(":|")
    if starts:
        tokens.append("|:")
    if not tokens and core not in ("[",):
        tokens.append("|")
    if number is not None:
        if number not in ("1", "2"):
            raise LeftOut(R_ENDING, f"ending {number!r} ({where})")
        tokens.append("|" + number)
    return tokens


def repeat_follows(events: list[tuple[str, Event]], index: int) -> bool:
    """True when a double bar at ``events[index]`` starts a repeated section: an earlier
    repeat has ended (``:|``) and the next repeat sign ends one (``:|``) with no start
    (``|:``) in between. Players, abc2midi too, repeat such a section from the double bar;
    v2 has no double bar, so it marks that start with ``|:``. (With no earlier ``:|``,
    ABC and abc2midi repeat from the start of the tune, and the double bar stays ``|``.)"""
    if not any(e.kind == "bar" and e.value.startswith(":") for _, e in events[:index]):
        return False
    for _, event in events[index + 1:]:
        if event.kind == "bar" and ":" in event.value:
            return event.value.startswith(":")
        if event.kind == "bar" and event.value in DOUBLE_BARS:
            return False  # the repeat would start at that later double bar
    return False


DOUBLE_BARS = ("||", "|]", "[|")


def _repeat_starts(events: list[tuple[str, Event]]) -> set[int]:
    """The indices where ``repeat_follows`` holds, in two passes over the events (calling it
    at each double bar scans the whole tune each time: quadratic on long lines)."""
    after: list[bool] = [False] * len(events)  # what repeat_follows's forward scan finds
    decision = False
    for index in range(len(events) - 1, -1, -1):
        after[index] = decision
        event = events[index][1]
        if event.kind == "bar" and ":" in event.value:
            decision = event.value.startswith(":")
        elif event.kind == "bar" and event.value in DOUBLE_BARS:
            decision = False
    starts = set()
    repeat_ended = False
    for index, (_, event) in enumerate(events):
        if repeat_ended and event.kind == "bar" and event.value in DOUBLE_BARS and after[index]:
            starts.add(index)
        if event.kind == "bar" and event.value.startswith(":"):
            repeat_ended = True
    return starts


class _Converter:
    def __init__(self, where: str):
        self.where = where
        self.out: list[str] = []
        self.respelled = 0

    # -- bar lines -----------------------------------------------------------------------------
    def emit_bar(self, token: str) -> None:
        previous = self.out[-1] if self.out else None
        if previous == "|" and token in ("|", "|1", "|2", "|:"):
            self.out[-1] = token
        elif previous == ":|" and token == "|":
            pass
        elif previous is None and token == "|":
            pass  # a leading plain bar line means nothing
        else:
            self.out.append(token)
        self.reset_bar()

    def reset_bar(self) -> None:
        self.source_by_octave: dict[int, int] = {}
        self.source_by_letter: dict[str, int] = {}
        self.out_by_octave: dict[int, int] = {}
        self.out_by_letter: dict[str, int] = {}

    # -- notes ---------------------------------------------------------------------------------
    def source_pitch(self, note: Note) -> tuple[int, int]:
        """(diatonic number, MIDI pitch) of a source note under the source key and bar."""
        letter = note.letter.upper()
        octave = (5 if note.letter.islower() else 4) + note.octave_marks.count("'") - note.octave_marks.count(",")
        diatonic = 7 * octave + LETTERS.index(letter)
        if note.mark:
            alter = ACCIDENTALS[note.mark]
            self.source_by_octave[diatonic] = alter
            self.source_by_letter[letter] = alter
        else:
            default = self.key.signature.get(letter, 0)
            by_octave = self.source_by_octave.get(diatonic, default)
            by_letter = self.source_by_letter.get(letter, default)
            if by_octave != by_letter:
                raise LeftOut(
                    R_AMBIGUOUS,
                    f"{note.letter}{note.octave_marks} after an accidental on {letter} in another "
                    f"octave in the same bar ({self.where})",
                )
            alter = by_octave
        return diatonic, midi_pitch(diatonic, alter)

    def pitch_token(self, note: Note) -> str:
        diatonic, pitch = self.source_pitch(note)
        target_pitch = pitch + self.semitones
        spellings = []
        base = diatonic + self.steps
        for candidate in (base, base - 1, base + 1, base - 2, base + 2):
            alter = target_pitch - midi_pitch(candidate, 0)
            if -1 <= alter <= 1:
                spellings.append((candidate, alter))
        for candidate, alter in spellings:
            letter = LETTERS[candidate % 7]
            default = self.target_signature.get(letter, 0)
            by_octave = self.out_by_octave.get(candidate, default)
            by_letter = self.out_by_letter.get(letter, default)
            mark_needed = bool(note.mark) or alter != by_octave or alter != by_letter
            token = (ACCIDENTAL_MARKS[alter] if mark_needed else "") + note_name(candidate)
            if token in vocab.TOKEN_TO_ID:
                if candidate != base:
                    self.respelled += 1
                if mark_needed:
                    self.out_by_octave[candidate] = alter
                    self.out_by_letter[letter] = alter
                return token
        raise LeftOut(
            R_PITCH,
            f"{note.mark}{note.letter}{note.octave_marks} becomes MIDI {target_pitch}, "
            f"no v2 token spells it ({self.where})",
        )

    def emit_length(self, length: Fraction, what: str) -> None:
        token = duration_token(length * self.unit * 8, what)
        if token:
            self.out.append(token)

    # -- whole tune ----------------------------------------------------------------------------
    def convert(self, text: str) -> tuple[list[str], str | None]:
        tune = split_raw_tune(text)
        fields = dict()
        title = None
        for letter, value in tune.header:
            if letter == "V":
                raise LeftOut(R_VOICES, f"V:{value}")
            if letter == "T" and title is None:
                title = value
            fields.setdefault(letter, value)
        if "K" not in fields:
            raise LeftOut(R_NO_KEY, "the tune has no K: field")
        self.key = parse_key(fields["K"])
        meter_value = fields.get("M")
        if meter_value is None:
            raise LeftOut(R_METER, "no M: field (free meter)")
        self.meter, bar_length = parse_meter(meter_value)
        self.unit = parse_unit(fields["L"]) if "L" in fields else (
            Fraction(1, 16) if bar_length < Fraction(3, 4) else Fraction(1, 8))
        self.semitones, self.steps = key_shift(self.key)
        self.target_signature = V2_SIGNATURES[self.key.v2_token]
        self.reset_bar()
        self.tuplet_default_q = 3 if self.meter in ("M:6/8", "M:9/8", "M:12/8") else 2
        in_chord = False
        events: list[tuple[str, Event]] = []
        line_number = 0
        for kind, value in tune.body:
            if kind != "music":
                events.append((self.where, Event("field", (kind, value))))
                continue
            line_number += 1
            what = f"{self.where}, body line {line_number}"
            events.extend((what, event) for event in lex_music(value, line_number))
        repeat_starts = _repeat_starts(events)
        for index, (what, event) in enumerate(events):
            if event.kind == "note":
                self.out.append(self.pitch_token(event.value))
                self.emit_length(event.value.length, what)
            elif event.kind == "rest":
                if in_chord:
                    raise LeftOut(R_SYNTAX, f"rest inside a chord ({what})")
                self.out.append("z")
                self.emit_length(event.value.length, what)
            elif event.kind == "chord_open":
                if in_chord:
                    raise LeftOut(R_SYNTAX, f"nested chord ({what})")
                in_chord = True
                self.out.append("[")
            elif event.kind == "chord_close":
                if not in_chord:
                    raise LeftOut(R_SYNTAX, f"] without [ ({what})")
                if self.out[-1] == "[":
                    raise LeftOut(R_SYNTAX, f"empty chord ({what})")
                in_chord = False
                self.out.append("]")
                # The length after ] multiplies the notes' own lengths: not unit-relative.
                token = duration_token(event.length, what)
                if token:
                    self.out.append(token)
            elif in_chord:
                raise LeftOut(R_SYNTAX, f"{event.kind} inside a chord ({what})")
            elif event.kind == "bar":
                bar_tokens = map_bar(event.value, what)
                if event.value in DOUBLE_BARS and index in repeat_starts:
                    bar_tokens = ["|:"]
                for token in bar_tokens:
                    self.emit_bar(token)
            elif event.kind == "broken":
                self.broken(event.value, what)
            elif event.kind == "tuplet":
                self.tuplet(event.value, what)
            elif event.kind == "field":
                self.body_field(*event.value)
        if in_chord:
            raise LeftOut(R_SYNTAX, f"unclosed chord ({self.where})")
        if not any(vocab.is_pitch(t) for t in self.out):
            raise LeftOut(R_NO_BODY, f"no notes ({self.where})")
        tokens = [self.meter, self.key.v2_token] + self.out
        for token in tokens:
            if token not in vocab.TOKEN_TO_ID:
                raise LeftOut(R_TOKEN, f"{token!r} ({self.where})")
        return tokens, title

    def broken(self, symbol: str, what: str) -> None:
        if len(symbol) != 1:
            raise LeftOut(R_BROKEN, f"{symbol!r} ({what})")
        previous = self.out[-1] if self.out else None
        if previous is None or previous in vocab.BAR_TOKENS or previous == "[":
            raise LeftOut(R_SYNTAX, f"broken rhythm {symbol!r} without a note before it ({what})")
        if previous in DURATION_TOKENS:
            token = previous + symbol
            if token not in vocab.TOKEN_TO_ID:
                raise LeftOut(R_BROKEN, f"{previous}{symbol} ({what})")
            self.out[-1] = token
        else:
            self.out.append(symbol)

    def tuplet(self, value: tuple, what: str) -> None:
        p, q, r = value
        default_q = {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}.get(p, self.tuplet_default_q)
        if (q is not None and q != default_q) or (r is not None and r != p):
            raise LeftOut(R_TUPLET, f"({p}:{q or ''}:{r or ''} ({what})")
        token = f"({p}"
        if token not in vocab.TOKEN_TO_ID:
            raise LeftOut(R_TUPLET, f"{token} ({what})")
        self.out.append(token)

    def body_field(self, letter: str, value: str) -> None:
        if letter == "K":
            key = parse_key(value)
            if (key.root_letter, key.root_alter, key.mode, key.signature) != (
                self.key.root_letter, self.key.root_alter, self.key.mode, self.key.signature
            ):
                raise LeftOut(R_KEY_CHANGE, f"K:{value} ({self.where})")
        elif letter == "M":
            try:
                meter, _ = parse_meter(value)
            except LeftOut:
                raise LeftOut(R_METER_CHANGE, f"M:{value} ({self.where})") from None
            if meter != self.meter:
                raise LeftOut(R_METER_CHANGE, f"M:{value} ({self.where})")
        elif letter == "L":
            self.unit = parse_unit(value)
        elif letter == "V":
            raise LeftOut(R_VOICES, f"V:{value} ({self.where})")


def convert_tune(text: str, where: str = "<tune>") -> ConversionResult:
    """Convert one raw ABC tune to v2 tokens; see the module docstring for the conventions."""
    converter = _Converter(where)
    try:
        tokens, title = converter.convert(text)
    except LeftOut as left_out:
        return ConversionResult(None, left_out.reason, left_out.detail, where)
    except (ArithmeticError, ValueError, TypeError, LookupError, AttributeError,
            RecursionError, MemoryError) as error:
        # A tune this reader did not foresee: left out with the reason (one tune must not
        # abort a corpus build); the exception's name shows it is the reader's gap.
        return ConversionResult(
            None, R_UNREADABLE, f"{type(error).__name__}: {str(error)[:200]} ({where})", where
        )
    return ConversionResult(tokens, None, None, where, title, converter.respelled)


def playback_reference(text: str) -> str:
    """The raw tune as abc2midi should play it for comparison with the v2 conversion.

    Only what v2 cannot hold and abc2midi would play differently is removed, with simple
    text rules independent of the converter: ``%`` comments and ``%%`` directives, ties
    ``-`` (a v2 tie does not exist, so the converted tune plays two notes), decorations
    (staccato shortens notes, rolls and trills add notes, fermatas lengthen) and annotations,
    ``R:`` (abc2midi swings ``R:hornpipe``) and ``P:`` (a part order such as ``P:ABA`` is a
    playing instruction that v2 cannot hold; the written parts are compared once each); grace
    notes and chord symbols are turned off with abc2midi's ``-NGRA -NGUI`` flags.
    """
    lines = []
    in_body = False
    for line in uncommented_lines(text):
        field = FIELD_LINE.match(line)
        if field and field.group(1) in ("R", "P"):
            # abc2midi plays R:hornpipe with 2:1 broken rhythms (a style, not the notes) and
            # P:ABA as a part order (a playing instruction v2 has no field for, like D.C.).
            continue
        if field:
            lines.append(line)
            if field.group(1) == "K":
                in_body = True
            continue
        if not in_body:
            lines.append(line)
            continue
        line = re.sub(r'"[^"]*"', "", line)
        line = re.sub(r"![^!]*!", "", line)
        line = re.sub(r"\+[^+]*\+", "", line)
        line = re.sub(r"\{[^}]*\}", "", line)
        line = re.sub(r"\[[PR]:[^\]]*\]", "", line)
        parts = re.split(r"(\[[A-Za-z]:[^\]]*\])", line)
        for index in range(0, len(parts), 2):
            parts[index] = re.sub(r"[~.HLMOPSTuv\-]", "", parts[index])
        lines.append("".join(parts))
    return "\n".join(lines) + "\n"
