"""Statistics of a set of tunes, after the folk-rnn v2 comparison of 30,000 generated with
23,635 training tunes: meter and mode shares, tune lengths, pitch and pitch-class histograms
per mode, the share of bars that fit the meter, tunes with repeat/ending/bracket errors, and
bar-line patterns (distinct count, share of the 15 commonest, share of AABB with 8-bar parts).
"""

from __future__ import annotations

import collections
from typing import Any, Sequence

import numpy as np

from folkrnn_jax.music import pitch, structure, vocab

PITCH_CLASSES = ("C", "^C", "D", "^D", "E", "F", "^F", "G", "^G", "A", "^A", "B")


def midi_pitch(token: str, mode: str | None) -> int | None:
    """MIDI number of a pitch token in the tune's mode (C = 60, c = 72); None for non-pitches."""
    return pitch.token_pitch(token, mode)


def pitch_class(token: str, mode: str | None) -> int | None:
    """Pitch class 0..11 of a pitch token in the tune's C-rooted mode; None for non-pitches."""
    number = pitch.token_pitch(token, mode)
    return None if number is None else number % 12


def _share(counter: collections.Counter, keys: Sequence[str], total: int) -> dict[str, float]:
    return {k: counter.get(k, 0) / total if total else 0.0 for k in keys}


def corpus_statistics(tunes: Sequence[Sequence[str]], top_patterns: int = 15) -> dict[str, Any]:
    """The comparison table's statistics for one set of tunes (tokens without ``<s>``/``</s>``
    or with them; lengths count the header and body tokens only)."""
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
        meters[meter or "none"] += 1
        modes[mode or "none"] += 1
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
