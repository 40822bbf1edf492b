"""Evaluating a run: validation NLL, and statistics of generated tunes against training tunes.

The statistics follow the folk-rnn v2 comparison of 30,000 generated with 23,635 training
tunes: meter and mode shares, tune lengths, pitch and pitch-class histograms per mode, the
share of bars that fit the meter, tunes with repeat/ending/bracket errors, bar-line patterns
(distinct count, share of the 15 commonest, share of AABB with 8-bar parts) and novelty (the
longest token n-gram a generated tune shares with any training tune).
"""

from __future__ import annotations

import collections
import json
import os
import re
from typing import Any, Sequence

import numpy as np

from folkrnn_jax import data, plots, structure, tunes as tunes_lib, vocab

PITCH_CLASSES = ("C", "^C", "D", "^D", "E", "F", "^F", "G", "^G", "A", "^A", "B")
_NATURAL = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_KEY_SIGNATURE = {  # accidentals implied by each C-rooted mode (flats as -1)
    "K:Cmaj": {},
    "K:Cmin": {"B": -1, "E": -1, "A": -1},
    "K:Cdor": {"B": -1, "E": -1},
    "K:Cmix": {"B": -1},
}
DEFAULT_NOVELTY_THRESHOLD = 40


# ---------------------------------------------------------------------------------------------
# Reading tunes


_ABC_TOKEN = re.compile(
    r"\[[MK]:[^\]]*\]|:\||\|:|\|1|\|2|\||\(\d|\[|\]|[=^_]?[A-Ga-gz][,']*"
    r"|(?:\d+/\d+|\d+|/\d+)?[<>]|\d+/\d+|/\d+|\d+|\s+"
)
_ABC_KEY_TO_MODE = {v: k for k, v in tunes_lib.MODE_TO_ABC_KEY.items()}


def abc_body_to_tokens(body: str, where: str = "") -> list[str]:
    """Split ABC music lines written by ``tunes.body_to_abc`` back into v2 tokens.

    Limits: only the ABC our writer produces (v2 pitches and durations, ``L:1/8``, C-rooted
    keys, inline ``[M:..]``/``[K:..]``); decorations, slurs, grace notes, ``||``, ``::`` and
    the like are not v2 tokens and raise ``UnknownTokenError``.
    """
    out: list[str] = []
    position = 0
    while position < len(body):
        m = _ABC_TOKEN.match(body, position)
        if not m or m.end() == position:
            raise vocab.UnknownTokenError(body[position:position + 10], where)
        text = m.group(0)
        position = m.end()
        if text.isspace():
            continue
        if text.startswith("[M:"):
            text = text[1:-1]
        elif text.startswith("[K:"):
            text = _ABC_KEY_TO_MODE.get(text[3:-1], text[1:-1])
        out.append(text)
    vocab.encode(out, where)
    return out


def parse_abc_text(text: str, path: str = "<string>") -> list[list[str]]:
    """Tunes from an ABC file written by ``tunes.tunes_to_abc`` as v2 token lists."""
    tunes: list[list[str]] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if not lines or not lines[0].startswith("X:"):
            continue
        meter = mode = None
        music = []
        for line in lines:
            if re.match(r"^[A-Za-z]:", line) and not music:
                if line.startswith("M:"):
                    meter = line
                elif line.startswith("K:"):
                    mode = _ABC_KEY_TO_MODE.get(line[2:].strip())
                    if mode is None:
                        raise vocab.UnknownTokenError(line, f"{path}, tune {lines[0]}")
                continue
            music.append(line)
        body = abc_body_to_tokens(" ".join(music), f"{path}, tune {lines[0]}")
        tunes.append([t for t in (meter, mode) if t] + body)
    return tunes


def read_tunes(path: str) -> list[list[str]]:
    """Tunes from a v2-format file or from an ABC file written by our sampler."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"tunes file not found: {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if re.search(r"^X:", text, re.MULTILINE):
        return parse_abc_text(text, path)
    return data.parse_v2_text(text, path)


# ---------------------------------------------------------------------------------------------
# Statistics of a set of tunes


def pitch_class(token: str, mode: str | None) -> int | None:
    """Pitch class 0..11 of a pitch token in the tune's C-rooted mode (accidentals apply to
    the note only, as v2 writes them on every note); None for non-pitches."""
    if not structure.is_pitch(token):
        return None
    accidental = token[0] if token[0] in "=^_" else ""
    letter = token[len(accidental)].upper()
    pc = _NATURAL[letter]
    if accidental == "^":
        pc += 1
    elif accidental == "_":
        pc -= 1
    elif accidental == "":
        pc += _KEY_SIGNATURE.get(mode or "K:Cmaj", {}).get(letter, 0)
    return pc % 12


def midi_pitch(token: str, mode: str | None) -> int | None:
    """MIDI number of a pitch token (C = 60, c = 72, commas and apostrophes move octaves)."""
    pc = pitch_class(token, mode)
    if pc is None:
        return None
    accidental = token[0] if token[0] in "=^_" else ""
    letter = token[len(accidental)]
    octave = 60 if letter.isupper() else 72
    octave += 12 * token.count("'") - 12 * token.count(",")
    natural = _NATURAL[letter.upper()]
    return octave + natural + ((pc - natural + 6) % 12 - 6)


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
        meter, mode, body = tunes_lib.split_tune(tune)
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


# ---------------------------------------------------------------------------------------------
# Novelty: longest common token n-gram with any training tune


_BASE = np.uint64(1_000_003)


class NgramIndex:
    """Hashes of every token n-gram of a corpus (for any n, computed on demand and cached), to
    find the longest n-gram a tune shares with any corpus tune by binary search on n."""

    def __init__(self, corpus: Sequence[Sequence[str]]):
        seqs = [vocab.encode([t for t in tune if t not in (vocab.START, vocab.END)]) for tune in corpus]
        self.ids = (np.concatenate(seqs) if seqs else np.zeros(0, np.int32)).astype(np.uint64) + np.uint64(1)
        self.tune_of = np.concatenate([np.full(len(s), i) for i, s in enumerate(seqs)]) if seqs else np.zeros(0, int)
        self.max_length = max((len(s) for s in seqs), default=0)
        self._powers: dict[int, np.ndarray] = {1: self.ids}  # H_L for L a power of two
        self._sets: dict[int, np.ndarray] = {}

    def _hash_power(self, L: int) -> np.ndarray:
        if L not in self._powers:
            half = self._hash_power(L // 2)
            n = len(self.ids) - L + 1
            with np.errstate(over="ignore"):
                self._powers[L] = half[:n] * _pow(_BASE, L // 2) + half[L // 2: L // 2 + n]
        return self._powers[L]

    def _hash_any(self, ids: np.ndarray, L: int, cache: dict) -> np.ndarray:
        """Hashes of every length-L window of ``ids`` by binary composition of power-of-two
        windows: H_{a+b}[i] = H_a[i] * B^b + H_b[i+a]."""
        result = None
        offset = 0
        bit = 1
        pieces = []
        while bit <= L:
            if L & bit:
                pieces.append(bit)
            bit <<= 1
        n = len(ids) - L + 1
        if n <= 0:
            return np.zeros(0, np.uint64)
        with np.errstate(over="ignore"):
            for size in reversed(pieces):
                h = cache(size)[offset: offset + n]
                result = h if result is None else result * _pow(_BASE, size) + h
                offset += size
        return result

    def _corpus_set(self, L: int) -> np.ndarray:
        if L not in self._sets:
            if L > self.max_length:
                self._sets[L] = np.zeros(0, np.uint64)
            else:
                h = self._hash_any(self.ids, L, self._hash_power)
                same = self.tune_of[: len(h)] == self.tune_of[L - 1: L - 1 + len(h)]
                self._sets[L] = np.sort(h[same])
        return self._sets[L]

    def longest_common(self, tune: Sequence[str]) -> int:
        """Length of the longest token n-gram of ``tune`` that occurs in some corpus tune."""
        ids = vocab.encode([t for t in tune if t not in (vocab.START, vocab.END)]).astype(np.uint64) + np.uint64(1)
        powers: dict[int, np.ndarray] = {1: ids}

        def tune_power(L: int) -> np.ndarray:
            if L not in powers:
                half = tune_power(L // 2)
                n = len(ids) - L + 1
                with np.errstate(over="ignore"):
                    powers[L] = half[:n] * _pow(_BASE, L // 2) + half[L // 2: L // 2 + n]
            return powers[L]

        def shares(L: int) -> bool:
            if L > len(ids):
                return False
            h = self._hash_any(ids, L, tune_power)
            corpus = self._corpus_set(L)
            if len(h) == 0 or len(corpus) == 0:
                return False
            pos = np.searchsorted(corpus, h)
            pos = np.minimum(pos, len(corpus) - 1)
            return bool(np.any(corpus[pos] == h))

        # The same upper bound for every tune makes every tune probe the same n values, so
        # the corpus hash sets are shared across tunes.
        lo, hi = 0, self.max_length
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if shares(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo


def _pow(base: np.uint64, exponent: int) -> np.uint64:
    return np.uint64(pow(int(base), exponent, 1 << 64))


def novelty(
    generated: Sequence[Sequence[str]], training: Sequence[Sequence[str]],
    threshold: int = DEFAULT_NOVELTY_THRESHOLD, index: NgramIndex | None = None,
) -> dict[str, Any]:
    """Per generated tune, the longest token n-gram (headers included) it shares with any
    training tune; tunes sharing ``threshold`` tokens or more are flagged as possible copies."""
    index = index or NgramIndex(training)
    longest = [index.longest_common(t) for t in generated]
    lengths = [len([x for x in t if x not in (vocab.START, vocab.END)]) for t in generated]
    flagged = [i for i, l in enumerate(longest) if l >= threshold]
    return {
        "threshold": threshold,
        "longest_common_ngram": longest,
        "longest_common_share": [l / max(n, 1) for l, n in zip(longest, lengths)],
        "novel": [l < threshold for l in longest],
        "possible_copies": flagged,
        "possible_copy_share": len(flagged) / len(generated) if generated else 0.0,
        "median_longest_common_ngram": float(np.median(longest)) if longest else 0.0,
    }


# ---------------------------------------------------------------------------------------------
# Validation loss of a run


def validation_metrics(workdir: str, data_path: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Validation NLL (nats/token and per-tune-normalised) and perplexity of the run's latest
    checkpoint on its own validation split (the split the run trained with), with dropout on
    only if the run's config says ``eval_dropout`` (the published v2 numbers had it on)."""
    import jax

    from folkrnn_jax import checkpoints, runs, train

    config = checkpoints.load_config(workdir)
    if data_path:
        config.data_path = data_path
    model, params, step = runs.load_run(workdir)
    valid = train.load_sequences(config).valid
    batches = {name: data.evaluation_batches(seqs, config.batch_size) for name, seqs in valid.items()}
    dropout = bool(config.get("eval_dropout", False))  # as the run itself evaluated
    eval_step = train.make_eval_step(model, dropout=dropout)
    metrics = train.evaluate_sources(eval_step, params, batches, jax.random.PRNGKey(seed))
    metrics.update(
        step=step, valid_tunes=sum(len(v) for v in valid.values()), data_path=config.data_path,
        dropout=dropout, valid_tunes_by_source={name: len(v) for name, v in valid.items()},
    )
    return metrics


# ---------------------------------------------------------------------------------------------
# Report


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def comparison_rows(train_stats: dict, gen_stats: dict | None) -> list[tuple[str, str, str]]:
    def both(fn):
        return fn(train_stats), fn(gen_stats) if gen_stats else "-"

    rows = [
        ("tunes", *both(lambda s: str(s["num_tunes"]))),
        ("M:4/4 / 6/8 / 3/4 / 2/4 / 9/8 / 12/8 / 3/2 (%)",
         *both(lambda s: " / ".join(_pct(s["meter_share"][m]) for m in vocab.METER_TOKENS))),
        ("K:Cmaj / Cdor / Cmin / Cmix (%)",
         *both(lambda s: " / ".join(_pct(s["mode_share"][m]) for m in ("K:Cmaj", "K:Cdor", "K:Cmin", "K:Cmix")))),
        ("tune length (tokens): mean / median / peak bin",
         *both(lambda s: f"{s['length_mean']:.0f} / {s['length_median']:.0f} / {s['length_mode_bin'][0]}-{s['length_mode_bin'][1]}")),
        ("bars fitting the meter (%)", *both(lambda s: _pct(s["bars_fitting_meter_share"]))),
        ("distinct bar-line patterns", *both(lambda s: str(s["distinct_bar_line_patterns"]))),
        ("share of the 15 commonest patterns (%)", *both(lambda s: _pct(s["top_patterns_share"]))),
        ("commonest part structure", *both(lambda s: s["commonest_part_structure"])),
        ("AABB with 8-bar parts (%)", *both(lambda s: _pct(s["aabb_8_share"]))),
        ("tunes with repeat/ending/bracket errors (%)", *both(lambda s: _pct(s["repeat_ending_bracket_error_share"]))),
        ("tunes passing every structural check (%)", *both(lambda s: _pct(s["valid_share"]))),
    ]
    return rows


def markdown_report(report: dict, images: Sequence[str]) -> str:
    lines = ["# folkrnn_jax evaluation", ""]
    if report.get("validation"):
        v = report["validation"]
        lines += [
            f"Checkpoint step {v['step']}, validation split of `{v['data_path']}` ({v['valid_tunes']} tunes, "
            f"{v['valid_tokens']} tokens): NLL {v['valid_loss']:.4f} nats/token, "
            f"{v['valid_loss_per_tune']:.4f} per-tune-normalised, perplexity {v['valid_perplexity']:.3f}.",
            "",
        ]
    lines += ["| statistic | training | generated |", "|---|---|---|"]
    for name, a, b in comparison_rows(report["training"], report.get("generated")):
        lines.append(f"| {name} | {a} | {b} |")
    if report.get("novelty"):
        nv = report["novelty"]
        lines += [
            "",
            f"Novelty: median longest token n-gram shared with a training tune "
            f"{nv['median_longest_common_ngram']:.0f}; {len(nv['possible_copies'])} tunes "
            f"({_pct(nv['possible_copy_share'])} %) share {nv['threshold']} tokens or more (possible copies: "
            f"{', '.join(str(i + 1) for i in nv['possible_copies'][:20]) or 'none'}).",
        ]
    lines.append("")
    for image in images:
        lines.append(f"![{os.path.splitext(os.path.basename(image))[0]}]({os.path.basename(image)})")
    return "\n".join(lines) + "\n"


def plot_comparison(train_stats: dict, gen_stats: dict | None, output_dir: str) -> list[str]:
    plt = plots.pyplot()
    sets = [("training", train_stats)] + ([("generated", gen_stats)] if gen_stats else [])
    paths = []

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    width = 0.8 / len(sets)
    for k, (name, s) in enumerate(sets):
        x = np.arange(len(vocab.METER_TOKENS))
        axes[0].bar(x + k * width, [100 * s["meter_share"][m] for m in vocab.METER_TOKENS], width, label=name)
        axes[0].set_xticks(x + width / 2, [m[2:] for m in vocab.METER_TOKENS])
        x = np.arange(len(vocab.MODE_TOKENS))
        axes[1].bar(x + k * width, [100 * s["mode_share"][m] for m in vocab.MODE_TOKENS], width, label=name)
        axes[1].set_xticks(x + width / 2, [m[2:] for m in vocab.MODE_TOKENS])
        axes[2].hist(s["lengths"], bins=np.arange(0, 600, 10), alpha=0.5, density=True, label=name)
    axes[0].set_title("meter (%)")
    axes[1].set_title("mode (%)")
    axes[2].set_title("tune length (tokens)")
    axes[0].legend()
    paths.append(plots.save_figure(fig, os.path.join(output_dir, "meter_mode_length.png"), dpi=80))

    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), sharey=True)
    for ax, mode in zip(axes, vocab.MODE_TOKENS):
        for k, (name, s) in enumerate(sets):
            counts = np.asarray(s["pitch_class_histogram_by_mode"][mode], float)
            ax.bar(np.arange(12) + k * width, counts / max(counts.sum(), 1), width, label=name)
        ax.set_xticks(np.arange(12), PITCH_CLASSES, fontsize=7)
        ax.set_title(f"pitch classes, {mode}")
    axes[0].legend()
    paths.append(plots.save_figure(fig, os.path.join(output_dir, "pitch_classes.png"), dpi=80))

    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), sharey=True)
    for ax, mode in zip(axes, vocab.MODE_TOKENS):
        for name, s in sets:
            hist = s["pitch_histogram_by_mode"][mode]
            keys = sorted(int(p) for p in hist)
            total = max(sum(hist.values()), 1)
            ax.plot(keys, [hist[str(p)] / total for p in keys], marker=".", label=name)
        ax.set_title(f"pitch (MIDI), {mode}")
    axes[0].legend()
    paths.append(plots.save_figure(fig, os.path.join(output_dir, "pitches.png"), dpi=80))
    return paths


def write_report(report: dict, output_dir: str) -> dict[str, str]:
    """Write report.json, report.md and the PNG plots into ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    images = plot_comparison(report["training"], report.get("generated"), output_dir)
    with open(os.path.join(output_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(output_dir, "report.md"), "w") as f:
        f.write(markdown_report(report, images))
    return {
        "json": os.path.join(output_dir, "report.json"),
        "markdown": os.path.join(output_dir, "report.md"),
        "images": images,
    }
