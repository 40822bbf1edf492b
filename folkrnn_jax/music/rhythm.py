"""Reading v2 durations on the host: what each duration, broken-rhythm and tuplet token means,
and ``note_events``, the one reader of a tune's notes in time.

v2 tokens are ABC split into pieces with ``L:1/8``, so a bare note lasts one eighth. The
structure checks (and through them the statistics) and the MIDI writer read a tune's notes
through ``note_events``; the constraint automaton's tables use the token functions.

Token semantics (durations in units of ``L:1/8``):

* a note (``C``, ``^f``, ``=B,``, ``c'``) or rest ``z`` lasts 1 unless a duration token follows
  (``2``, ``/2``, ``3/2`` ... multiply it);
* a broken-rhythm token is a duration with ``>`` or ``<`` attached: ``>`` (``c > d``) gives the
  note before x3/2 and the note after x1/2, ``<`` the reverse; ``2>`` is *duration 2, then >*
  (``c 2> e 2``: c lasts 3, e lasts 1) and ``/2<`` is *duration 1/2, then <*;
* ``(p`` is a tuplet: the next p notes (rests and chords count as one) take the time of q,
  with ABC's default q (``tuplet_ratio``);
* a chord ``[ ... ]`` is one event (one note of a tuplet or broken rhythm), and every note of
  it sounds for the chord's length: a duration token after ``]`` if there is one, else its
  first note's duration (a duration token right after the first pitch). This is how abc2midi
  (4.84) plays chords: ``[ C 2 E ]``, ``[ C E ] 2`` and ``[ C 2 E ] 2`` all sound C and E for
  2, ``[ C E 2 ]`` sounds both for 1. (The v2 data never has durations both inside and after
  a chord, so there the reading agrees with multiplying them.);
* ``M:`` tokens inside the body change the meter from there on (tuplet defaults depend on
  it); ``K:`` tokens change the mode the notes are read in.
"""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction
from typing import Sequence

from folkrnn_jax.music import vocab

COMPOUND_METERS = frozenset(("M:6/8", "M:9/8", "M:12/8"))
_DURATION = re.compile(r"^(\d*)(?:/(\d+))?$")
_BROKEN = re.compile(r"^(\d*(?:/\d+)?)([<>])$")
_TUPLET = re.compile(r"^\((\d)$")

BROKEN_LONG = Fraction(3, 2)
BROKEN_SHORT = Fraction(1, 2)
# (factor of the note before, factor of the note after) of a broken rhythm.
BROKEN_FACTORS = {">": (BROKEN_LONG, BROKEN_SHORT), "<": (BROKEN_SHORT, BROKEN_LONG)}


def is_note(token: str) -> bool:
    """A pitch token or the rest ``z``."""
    return token == "z" or vocab.is_pitch(token)


def parse_duration(token: str) -> Fraction | None:
    """``2`` -> 2, ``/2`` -> 1/2, ``3/2`` -> 3/2; None when the token is not a duration."""
    if not token or token in vocab.BAR_TOKENS:
        return None
    m = _DURATION.match(token)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    numerator = int(m.group(1)) if m.group(1) else 1
    denominator = int(m.group(2)) if m.group(2) else 1
    return Fraction(numerator, denominator)


def parse_broken(token: str) -> tuple[Fraction, str] | None:
    """``>`` -> (1, '>'), ``2>`` -> (2, '>'), ``/2<`` -> (1/2, '<'); None otherwise."""
    m = _BROKEN.match(token)
    if not m:
        return None
    duration = parse_duration(m.group(1)) if m.group(1) else Fraction(1)
    if duration is None:
        return None
    return duration, m.group(2)


def tuplet_ratio(token: str, meter_token: str | None) -> tuple[int, int] | None:
    """(p, q) for a tuplet token ``(p``: p notes in the time of q (ABC defaults)."""
    m = _TUPLET.match(token)
    if not m:
        return None
    p = int(m.group(1))
    if p in (2, 4, 8):
        q = 3
    elif p in (3, 6):
        q = 2
    else:
        q = 3 if meter_token in COMPOUND_METERS else 2
    return p, q


def meter_bar_length(meter_token: str) -> Fraction:
    """Bar length in units of ``L:1/8``: M:6/8 -> 6, M:4/4 -> 8, M:3/2 -> 12."""
    text = meter_token[2:] if meter_token.startswith("M:") else meter_token
    numerator, denominator = text.split("/")
    return Fraction(int(numerator) * 8, int(denominator))


@dataclasses.dataclass
class NoteEvent:
    """A note, rest or chord of a tune, placed in time.

    Attributes:
        start: onset in eighths from the start of the body (repeats are not expanded).
        duration: how long it sounds, in eighths; also how far it moves the clock.
        pitches: its pitch tokens in order (one for a note, several for a chord, none for a rest).
        bar: how many bar-line tokens come before it in the body (the stretch it lies in).
        index: position in the body of its note token, or of the chord's ``[``.
        mode: the ``K:`` token in force (the header's, or a later one in the body; None if none).
        chord: whether it is a chord ``[ ... ]`` (even of one pitch).
    """

    start: Fraction
    duration: Fraction
    pitches: tuple[str, ...]
    bar: int
    index: int
    mode: str | None
    chord: bool = False


@dataclasses.dataclass
class Reading:
    """What ``note_events`` read: the events, and the problems met on the way, in body order.

    Attributes:
        events: the notes, rests and chords in order.
        problems: human-readable token-level problems (stray durations, broken rhythms with
            no note, unfinished tuplets, unpaired or malformed chords, unexpected tokens).
        meter: the header's ``M:`` token (None if absent).
        mode: the header's ``K:`` token (None if absent).
        body: the tokens after the header.
    """

    events: list[NoteEvent]
    problems: list[str]
    meter: str | None
    mode: str | None
    body: list[str]


@dataclasses.dataclass
class _Chord:
    """A chord being read: where it opened, its pitches, and its first note's duration."""

    index: int
    pitches: list[str] = dataclasses.field(default_factory=list)
    first: Fraction = Fraction(1)
    first_open: bool = False  # the last token was the first pitch: a duration may follow


def read_tune(tokens: Sequence[str]) -> Reading:
    """Reads a v2 tune's notes in time, with the problems found on the way.

    Args:
        tokens: a v2 token sequence, with or without its ``M:``/``K:`` header and ``<s>``/``</s>``.

    Returns:
        A ``Reading`` whose events' durations follow the module's semantics. Tokens that break
        the rules are reported in ``problems`` and otherwise ignored (a duration with no note,
        a chord cut by a bar line), so that a sampled tune can still be measured.
    """
    meter, mode, body = vocab.split_header(tokens)
    events: list[NoteEvent] = []
    problems: list[str] = []
    meter_now, mode_now = meter, mode
    bar = 0
    # What the last token left for the next one: "note" (a note, rest or chord: a duration or
    # broken rhythm may follow), "duration" (a duration applied to it: only a bare broken
    # rhythm may follow) or None.
    after: str | None = None
    pending_factor: Fraction | None = None  # from a broken rhythm, for the next note
    tuplet_left = 0
    tuplet_scale = Fraction(1)
    chord: _Chord | None = None
    last_scale = Fraction(1)  # tuplet and broken-rhythm factor of the last event

    def add_event(index: int, pitches: tuple[str, ...], base: Fraction, is_chord: bool = False) -> None:
        # Tuplet and broken-rhythm factors apply to the base duration; a duration token after
        # the note multiplies it later (the events list is read back only at the end).
        nonlocal tuplet_left, pending_factor, after, last_scale
        scale = tuplet_scale if tuplet_left > 0 else Fraction(1)
        tuplet_left = max(tuplet_left - 1, 0)
        factor = pending_factor if pending_factor is not None else Fraction(1)
        pending_factor = None
        last_scale = scale * factor
        start = events[-1].start + events[-1].duration if events else Fraction(0)
        events.append(NoteEvent(start, base * last_scale, pitches, bar, index, mode_now, is_chord))
        after = "note"

    def set_length(length: Fraction) -> None:
        # A length after a note multiplies it; after a chord it replaces the chord's written
        # length, as abc2midi plays it. Tuplet and broken-rhythm factors stay applied.
        last = events[-1]
        last.duration = length * last_scale if last.chord else last.duration * length

    for position, token in enumerate(body):
        where = f"(token {position + 1})"
        if token in vocab.BAR_TOKENS:
            if chord is not None:
                problems.append(f"bar line {token!r} inside a chord {where}")
                chord = None
            if pending_factor is not None:
                problems.append(f"broken rhythm before bar line {token!r} has no note after it")
                pending_factor = None
            bar += 1
            after = None
        elif token.startswith("M:") or token.startswith("K:"):
            if token.startswith("M:"):
                meter_now = token
            else:
                mode_now = token
            after = None
        elif token in (vocab.START, vocab.END):
            continue
        elif token == "[":
            if chord is not None:
                problems.append(f"'[' inside a chord {where}")
            chord = _Chord(position)
            after = None
        elif token == "]":
            if chord is None:
                problems.append(f"']' without '[' {where}")
                after = None
            elif not chord.pitches:
                problems.append(f"empty chord {where}")
                chord, after = None, None
            else:
                add_event(chord.index, tuple(chord.pitches), chord.first, is_chord=True)
                chord = None
        elif chord is not None:
            # Inside a chord only the first note's duration counts (abc2midi's reading).
            if vocab.is_pitch(token):
                chord.first_open = not chord.pitches
                chord.pitches.append(token)
            elif parse_duration(token) is not None:
                if chord.first_open:
                    chord.first = parse_duration(token)
                chord.first_open = False
            else:
                problems.append(f"{token!r} inside a chord {where}")
        elif is_note(token):
            add_event(position, () if token == "z" else (token,), Fraction(1))
        elif parse_duration(token) is not None:
            if after != "note":
                problems.append(f"duration {token!r} with no note before it {where}")
                continue
            set_length(parse_duration(token))
            after = "duration"
        elif parse_broken(token) is not None:
            length, direction = parse_broken(token)
            # '>' may follow a note or a note's duration; '2>' (a duration with the broken
            # sign attached) must follow the note itself.
            if not (after == "note" or (after == "duration" and length == 1)):
                problems.append(f"broken rhythm {token!r} with no note before it {where}")
                continue
            before, following = BROKEN_FACTORS[direction]
            if after == "note" and length != 1:
                set_length(length)
            events[-1].duration *= before
            pending_factor = following
            after = None
        elif tuplet_ratio(token, meter_now) is not None:
            p, q = tuplet_ratio(token, meter_now)
            if tuplet_left > 0:
                problems.append(f"tuplet {token!r} inside another tuplet {where}")
            following = body[position + 1] if position + 1 < len(body) else None
            if following is None or not (is_note(following) or following == "["):
                problems.append(f"tuplet {token!r} with no note to apply to {where}")
            tuplet_left, tuplet_scale = p, Fraction(q, p)
            after = None
        else:
            problems.append(f"unexpected token {token!r} {where}")
    if chord is not None:
        problems.append("'[' never closed by ']'")
    if pending_factor is not None:
        problems.append("broken rhythm at the end of the tune has no note after it")
    if tuplet_left > 0:
        problems.append(f"tuplet at the end of the tune is {tuplet_left} note(s) short")
    return Reading(events, problems, meter, mode, body)


def note_events(tokens: Sequence[str]) -> list[NoteEvent]:
    """The notes, rests and chords of a v2 tune in time (``read_tune``'s events).

    Args:
        tokens: a v2 token sequence.

    Returns:
        One ``NoteEvent`` per note, rest or chord, in order, with exact ``Fraction`` times in
        eighths: ``[ C E ] 2 G`` gives a chord of C and E at 0 lasting 2, then G at 2.
    """
    return read_tune(tokens).events
