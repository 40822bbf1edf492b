"""Reading v2 durations on the host: what each duration, broken-rhythm and tuplet token means.

v2 tokens are ABC split into pieces with ``L:1/8``, so a bare note lasts one eighth. The
structure checks, the MIDI writer, the constraint automaton's tables and the statistics all
read durations through these functions.
"""

from __future__ import annotations

import re
from fractions import Fraction

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
