"""Statistics of a set of tunes, after the folk-rnn v2 comparison of 30,000 generated with
23,635 training tunes: meter and mode shares (with "other" and "missing", so that each adds up
to 1), tune lengths, pitch and pitch-class histograms per mode (pitch classes named as a
player spells them in that mode), the share of bars that fit the meter, tunes with
repeat/ending/bracket errors, and bar-line patterns (distinct count, share of the 15
commonest, share of AABB with 8-bar parts).
"""

from __future__ import annotations

import collections
from typing import Any, Sequence

import numpy as np

from folkrnn_jax.music import pitch, structure, vocab

# Pitch-class names in the flat modes (minor, dorian, mixolydian: their signatures have flats)
# and in major, where the raised fourth and leading notes are sharps and the borrowed third,
# sixth and seventh flats, as a player reads them.
FLAT_PITCH_CLASSES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
MAJOR_PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Share keys beside the listed headers: a header token not listed, and no header at all.
OTHER, MISSING = "other", "missing"


def pitch_class_names(mode: str | None) -> tuple[str, ...]:
    """The 12 pitch classes of C-rooted ``mode`` (``"K:Cmin"``) named for that mode: flats in
    a mode whose key signature has flats (``K:Cmin`` gives ``Eb``, ``Ab``, ``Bb``), else the
    major spelling (``C#``, ``Eb``, ``F#``, ``Ab``, ``Bb``).

    Args:
      mode: a v2 mode token, or None (read as major).

    Returns:
      12 names, index = semitones above C.
    """
    signature = pitch.V2_SIGNATURES.get(mode or "K:Cmaj", {})
    return FLAT_PITCH_CLASSES if any(alter < 0 for alter in signature.values()) else MAJOR_PITCH_CLASSES


def pitch_name(midi_number: int, mode: str | None) -> str:
    """Scientific pitch name of a MIDI number spelled for ``mode`` (60 in K:Cmin: ``C4``, 63:
    ``Eb4``)."""
    return f"{pitch_class_names(mode)[midi_number % 12]}{midi_number // 12 - 1}"


def midi_pitch(token: str, mode: str | None) -> int | None:
    """MIDI number of a pitch token in the tune's mode (C = 60, c = 72); None for non-pitches."""
    return pitch.token_pitch(token, mode)


def pitch_class(token: str, mode: str | None) -> int | None:
    """Pitch class 0..11 of a pitch token in the tune's C-rooted mode; None for non-pitches."""
    number = pitch.token_pitch(token, mode)
    return None if number is None else number % 12


def _share(counter: collections.Counter, keys: Sequence[str], total: int) -> dict[str, float]:
    """Shares of ``keys``, then ``other`` (every other key but ``missing``) and ``missing``:
    they add up to 1 (0 for no tunes)."""
    other = sum(c for k, c in counter.items() if k not in keys and k != MISSING)
    shares = {k: counter.get(k, 0) for k in keys}
    shares.update({OTHER: other, MISSING: counter.get(MISSING, 0)})
    return {k: c / total if total else 0.0 for k, c in shares.items()}


def corpus_statistics(tunes: Sequence[Sequence[str]], top_patterns: int = 15) -> dict[str, Any]:
    """The comparison table's statistics for one set of tunes.

    Args:
      tunes: token lists, with or without ``<s>``/``</s>``.
      top_patterns: how many of the commonest bar-line patterns to count and list.

    Returns:
      A JSON-ready dict: counts and shares of meters and modes (shares with ``other`` and
      ``missing``, adding up to 1), lengths (header and body tokens), pitch and pitch-class
      histograms per mode with the pitch-class names, bar and structure checks, bar-line
      patterns and part structures.
    """
    n = len(tunes)
    meters, modes, lengths = collections.Counter(), collections.Counter(), []
    patterns, parts = collections.Counter(), collections.Counter()
    pitch_by_mode = {m: collections.Counter() for m in vocab.MODE_TOKENS}
    pc_by_mode = {m: collections.Counter() for m in vocab.MODE_TOKENS}
    bars_total = bars_fit = 0
    kinds = collections.Counter()
    valid = 0
    for tune in tunes:
        meter, mode, body = vocab.split_header(tune)
        meters[meter or MISSING] += 1
        modes[mode or MISSING] += 1
        lengths.append(len(body) + (meter is not None) + (mode is not None))
        patterns[structure.bar_line_pattern(tune)] += 1
        ps = structure.part_structure(tune)
        parts["AABB, 8-bar parts" if ps.is_aabb_8 else ps.letters or "none"] += 1
        if mode in pitch_by_mode:
            for token in body:
                p = midi_pitch(token, mode)
                if p is not None:
                    pitch_by_mode[mode][p] += 1
                    pc_by_mode[mode][p % 12] += 1
        tune_bars = structure.bars(tune)
        fits = structure.bar_fits(tune_bars, meter)
        bars_total += len(fits)
        bars_fit += sum(fits)
        problems = structure.problems_by_kind(tune)
        for kind, found in problems.items():
            if found:
                kinds[kind] += 1
        if problems["repeats"] or any("chord" in p or "'['" in p or "']'" in p for p in problems["tokens"]):
            kinds["repeat_ending_bracket"] += 1
        if not any(problems.values()):
            valid += 1
    common = patterns.most_common(top_patterns)
    lengths_arr = np.asarray(lengths) if lengths else np.zeros(1)
    return {
        "num_tunes": n,
        "meter_counts": dict(meters),
        "meter_share": _share(meters, vocab.METER_TOKENS, n),
        "mode_counts": dict(modes),
        "mode_share": _share(modes, vocab.MODE_TOKENS, n),
        "length_mean": float(lengths_arr.mean()),
        "length_median": float(np.median(lengths_arr)),
        "length_mode_bin": _length_peak(lengths),
        "lengths": lengths,
        "pitch_histogram_by_mode": {m: {str(k): v for k, v in sorted(c.items())} for m, c in pitch_by_mode.items()},
        "pitch_class_histogram_by_mode": {
            m: [c.get(i, 0) for i in range(12)] for m, c in pc_by_mode.items()
        },
        "pitch_class_names_by_mode": {m: list(pitch_class_names(m)) for m in pc_by_mode},
        "bars": bars_total,
        "bars_fitting_meter_share": bars_fit / bars_total if bars_total else 0.0,
        "tunes_with_problems": {k: kinds.get(k, 0) for k in ("header", "repeats", "tokens", "bars")},
        "tunes_with_repeat_ending_bracket_errors": kinds.get("repeat_ending_bracket", 0),
        "repeat_ending_bracket_error_share": kinds.get("repeat_ending_bracket", 0) / n if n else 0.0,
        "valid_share": valid / n if n else 0.0,
        "distinct_bar_line_patterns": len(patterns),
        "top_patterns_share": sum(c for _, c in common) / n if n else 0.0,
        "top_patterns": [{"pattern": p, "count": c} for p, c in common],
        "commonest_part_structure": parts.most_common(1)[0][0] if parts else "",
        "part_structures": dict(parts.most_common(20)),
        "aabb_8_share": parts.get("AABB, 8-bar parts", 0) / n if n else 0.0,
    }


def _length_peak(lengths: Sequence[int], width: int = 15) -> list[int]:
    if not lengths:
        return [0, 0]
    bins = collections.Counter(l // width for l in lengths)
    b = bins.most_common(1)[0][0]
    return [b * width, (b + 1) * width]
