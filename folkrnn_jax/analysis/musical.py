"""Musical statistics of a set of tunes: how they end, their form, rhythm and melody.

What a player hears beyond well-formed bars (issue 22), per tune and summed over a set:

* **endings**: the tune's last note, and the last note of part A (in AABB tunes whose first
  part closes with ``:|``: the end of its second ending when it has two), on the tonic (C: every
  v2 tune is in C) or on the tonic or dominant (C or G); tunes that end on an empty ending
  (``|2`` with no note after it);
* **form**: AABB with two 8-bar parts, and the B part's length among AABB tunes;
* **rhythm**: sixteenths, the ``/2`` duration token per 100 notes (pitches and rests);
* **repetition**: bars whose notes repeat an earlier bar of the tune, and 2-bar units that
  repeat an earlier (not overlapping) 2-bar unit;
* **melody**: each tune's pitch range in semitones, and the share of melodic steps (one or
  two semitones) among the intervals between successive pitches (rests skipped).

``tune_statistics`` reads one tune, ``musical_statistics`` sums a set.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Sequence

import numpy as np

from folkrnn_jax.music import pitch, rhythm, structure, vocab

TONIC, DOMINANT = 0, 7  # pitch classes in C
SIXTEENTH = "/2"


@dataclasses.dataclass(frozen=True)
class TuneStatistics:
    """One tune's musical figures (None where the tune has no such thing)."""

    last_pitch_class: int | None  # of the tune's last pitched note
    part_a_pitch_class: int | None  # of part A's last note (AABB tunes closing A with ':|')
    empty_ending: bool  # the tune ends on '|2' with no note after it
    parts: str  # part letters (``structure.part_structure``): "AABB"
    part_bars: tuple[int, ...]  # bars of each part
    notes: int  # pitches and rests
    sixteenths: int  # '/2' tokens
    bars: int  # bars holding a note
    repeated_bars: int  # bars whose tokens equal an earlier bar's
    units: int  # 2-bar units (pairs of successive bars)
    repeated_units: int  # units equal to an earlier unit that does not overlap them
    pitch_range: int | None  # highest minus lowest MIDI pitch
    intervals: int  # successive pitch pairs
    steps: int  # of which one or two semitones apart

    @property
    def is_aabb(self) -> bool:
        return self.parts == "AABB"

    @property
    def is_aabb_8(self) -> bool:
        return self.is_aabb and all(b == 8 for b in self.part_bars)


def _pitches(tokens: Sequence[str], mode: str | None) -> list[int]:
    return [p for p in (pitch.token_pitch(t, mode) for t in tokens) if p is not None]


def _part_a_end(body: Sequence[str]) -> int | None:
    """Index in ``body`` just past part A's last bar: the first ``:|``, or when ``:| |2``
    follows a first ending, the end of the second ending (as many bars as the first ending, or
    up to the next ``|:``/``:|``). None when no ``:|`` closes a first part."""
    if ":|" not in body:
        return None
    close = body.index(":|")
    if close + 1 >= len(body) or body[close + 1] != "|2" or "|1" not in body[:close]:
        return close
    first = max(i for i in range(close) if body[i] == "|1")
    ending_bars = sum(t in structure.BAR_TOKENS for t in body[first + 1: close + 1])
    seen = 0
    for i in range(close + 2, len(body)):
        if body[i] in structure.BAR_TOKENS:
            seen += 1
            if seen == ending_bars or body[i] in ("|:", ":|"):
                return i
    return len(body)


def _repeats(items: Sequence[tuple], gap: int) -> int:
    """How many items equal an earlier item at least ``gap`` positions before them."""
    first_seen: dict[tuple, int] = {}
    count = 0
    for i, item in enumerate(items):
        if item in first_seen and i - first_seen[item] >= gap:
            count += 1
        first_seen.setdefault(item, i)
    return count


def tune_statistics(tokens: Sequence[str]) -> TuneStatistics:
    """The musical figures of one tune.

    Args:
      tokens: a v2 token list (header first; ``<s>``/``</s>`` optional).

    Returns:
      Its ``TuneStatistics``.
    """
    _, mode, body = vocab.split_header(tokens)
    body = [t for t in body if t not in (vocab.START, vocab.END)]
    pitches = _pitches(body, mode)
    end_a = _part_a_end(body)
    parts = structure.part_structure(tokens)
    part_a = _pitches(body[:end_a], mode) if end_a is not None and parts.letters == "AABB" else []
    last_second = max((i for i, t in enumerate(body) if t == "|2"), default=None)
    empty = last_second is not None and not any(rhythm.is_note(t) for t in body[last_second + 1:])
    bar_contents = [tuple(b.tokens) for b in structure.bars(tokens) if any(rhythm.is_note(t) for t in b.tokens)]
    units = [bar_contents[i] + ("|",) + bar_contents[i + 1] for i in range(len(bar_contents) - 1)]
    intervals = np.abs(np.diff(pitches)) if len(pitches) > 1 else np.zeros(0, int)
    return TuneStatistics(
        last_pitch_class=pitches[-1] % 12 if pitches else None,
        part_a_pitch_class=part_a[-1] % 12 if part_a else None,
        empty_ending=empty,
        parts=parts.letters,
        part_bars=tuple(parts.bars),
        notes=sum(rhythm.is_note(t) for t in body),
        sixteenths=sum(t == SIXTEENTH for t in body),
        bars=len(bar_contents),
        repeated_bars=_repeats(bar_contents, 1),
        units=len(units),
        repeated_units=_repeats(units, 2),
        pitch_range=max(pitches) - min(pitches) if pitches else None,
        intervals=len(intervals),
        steps=int(np.sum((intervals >= 1) & (intervals <= 2))),
    )


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def musical_statistics(tunes: Sequence[Sequence[str]]) -> dict[str, Any]:
    """The musical figures of a set of tunes (shares are fractions of 1).

    Args:
      tunes: v2 token lists.

    Returns:
      A JSON-ready dict: ``tunes``; ``last_tonic_share`` and ``last_tonic_or_dominant_share``
      (of tunes with a pitched note); ``part_a_tunes`` (AABB tunes whose part A closes with
      ``:|``) with ``part_a_tonic_share`` and ``part_a_tonic_or_dominant_share``;
      ``empty_ending_share``; ``aabb_share``, ``aabb_8_share``; ``aabb_tunes`` with
      ``b_part_bars`` (B length -> count) and ``b_part_16_share``; ``sixteenths_per_100_notes``;
      ``repeated_bar_share``, ``repeated_unit_share``; ``pitch_range_mean`` (semitones);
      ``stepwise_share``.
    """
    stats = [tune_statistics(t) for t in tunes]
    last = [s.last_pitch_class for s in stats if s.last_pitch_class is not None]
    part_a = [s.part_a_pitch_class for s in stats if s.part_a_pitch_class is not None]
    aabb = [s for s in stats if s.is_aabb]
    b_bars = collections.Counter(s.part_bars[2] for s in aabb)
    ranges = [s.pitch_range for s in stats if s.pitch_range is not None]
    n = len(stats)

    def total(field: str) -> int:
        return sum(getattr(s, field) for s in stats)

    return {
        "tunes": n,
        "last_tonic_share": _ratio(sum(p == TONIC for p in last), len(last)),
        "last_tonic_or_dominant_share": _ratio(sum(p in (TONIC, DOMINANT) for p in last), len(last)),
        "part_a_tunes": len(part_a),
        "part_a_tonic_share": _ratio(sum(p == TONIC for p in part_a), len(part_a)),
        "part_a_tonic_or_dominant_share": _ratio(sum(p in (TONIC, DOMINANT) for p in part_a), len(part_a)),
        "empty_ending_share": _ratio(sum(s.empty_ending for s in stats), n),
        "aabb_share": _ratio(len(aabb), n),
        "aabb_8_share": _ratio(sum(s.is_aabb_8 for s in stats), n),
        "aabb_tunes": len(aabb),
        "b_part_bars": {str(k): v for k, v in sorted(b_bars.items())},
        "b_part_16_share": _ratio(b_bars.get(16, 0), len(aabb)),
        "sixteenths_per_100_notes": 100 * _ratio(total("sixteenths"), total("notes")),
        "repeated_bar_share": _ratio(total("repeated_bars"), total("bars")),
        "repeated_unit_share": _ratio(total("repeated_units"), total("units")),
        "pitch_range_mean": float(np.mean(ranges)) if ranges else 0.0,
        "stepwise_share": _ratio(total("steps"), total("intervals")),
    }
