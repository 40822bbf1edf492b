"""The evaluation report of a model (its report card): validation loss, and tunes sampled
freely and with the structure constraint set beside the training split and folk-rnn v2's
published figures, as one table laid out like the published v2 table; abc2midi's verdict on
every tune (run once per tune); novelty; written as JSON, Markdown and PNG plots.

``evaluate_model`` gathers it all (``python -m experiments.evaluate`` is its command line) and
``write_report`` writes it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Sequence

import jax
import numpy as np

from folkrnn_jax import files
from folkrnn_jax.analysis import musical, plots
from folkrnn_jax.analysis import novelty as novelty_lib
from folkrnn_jax.analysis import statistics as statistics_lib
from folkrnn_jax.data import batching, v2_format
from folkrnn_jax.generate import rerank
from folkrnn_jax.music import abc_out, tools, vocab
from folkrnn_jax.training import loop, rundir, runs, steps

# Sampling modes of the report and their column headings.
SAMPLING_MODES = ("free", "constrained")
# abc2midi's verdicts as the table's rows and the plot's bars show them, one entry per kind of
# ``tools.summarize_checks`` (so every bar has its row): (kind, row name, bar label).
ABC2MIDI_CLASSES = (
    ("clean", "no error, warnings allowed", "no error\n(warnings\nallowed)"),
    ("bar_length", "bar-length warnings", "bar-length\nwarning"),
    ("other", "other warnings", "other\nwarning"),
    ("power_of_2", '"not a power of 2"', "not a\npower of 2"),
    ("denominator", '"denominator"', "denominator"),
    ("error", "other errors", "other\nerror"),
)

LABELS = {
    "training": "training split",
    "free": "ours, free",
    "constrained": "ours, constrained",
    "samples": "ours (--samples)",
}
COMPARE_PREFIX = "file: "  # the column of a tune file given to compare (EvaluateOptions.compare)


def _label(name: str) -> str:
    """A column's heading: ``LABELS``, or a compared file's column name as it stands."""
    return LABELS.get(name, name)

# folk-rnn v2's published comparison (../shared/reference/folk-rnn-v2-facts.md): 30,000
# generated tunes against 23,635 training tunes; shares in %, many read off a figure.
V2_PUBLISHED: dict[str, dict[str, Any]] = {
    "generated": {
        "tunes": 30000,
        "meter": {"M:4/4": 66.5, "M:6/8": 22.5, "M:3/4": 4.5, "M:2/4": 4, "M:9/8": 1, "M:12/8": 1.3},
        "mode": {"K:Cmaj": 64, "K:Cdor": 14.5, "K:Cmin": 13.5, "K:Cmix": 7.5},
        "distinct_bar_line_patterns": 1867,
        "top_patterns_share": 68.4,
        "commonest_part_structure": "AABB, 8-bar parts",
        "aabb_8_share": 17.7,
        "repeat_ending_bracket_error_share": 0.37,
        "length": "peaked at 140-155",
    },
    "training": {
        "tunes": 23635,
        "meter": {"M:4/4": 53, "M:6/8": 25, "M:3/4": 8, "M:2/4": 7.5, "M:9/8": 3.5, "M:12/8": 2},
        "mode": {"K:Cmaj": 67, "K:Cdor": 12.5, "K:Cmin": 13.5, "K:Cmix": 7},
        "distinct_bar_line_patterns": 3322,
        "top_patterns_share": 43.4,
        "commonest_part_structure": "AABB, 8-bar parts",
        "repeat_ending_bracket_error_share": 0.0,
        "length": "broad",
    },
}


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """What ``evaluate_model`` samples and checks.

    ``modes``: sampling modes (``SAMPLING_MODES``), one table column each; ``num_tunes`` tunes
    each at ``temperature`` from ``seed``. ``samples``: a file of tunes to report instead of
    sampling. ``data``: training data (default: the run's ``data_path``). ``abc2midi_training``:
    training tunes (a fixed random subset) abc2midi checks, and the size at which the
    training split's distinct bar-line patterns are counted again. ``compare``: tune files
    (v2 format or our ABC) set beside the others, one column each. ``best_of``: candidates
    drawn per sampled tune, the one the model scores highest kept (``ranking``:
    ``rerank.RANKINGS``).
    """

    modes: tuple[str, ...] = SAMPLING_MODES
    num_tunes: int = 1000
    temperature: float = 1.0
    seed: int = 0
    max_length: int = 1000
    chunk_size: int = 256
    samples: str | None = None
    data: str | None = None
    validation: bool = True
    novelty_threshold: int = novelty_lib.DEFAULT_NOVELTY_THRESHOLD
    abc2midi_training: int = 1000
    abc2midi_workers: int = 2
    compare: tuple[str, ...] = ()
    best_of: int = 1
    ranking: str = "tune"


def validation_metrics(workdir: str, data_path: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Validation NLL (nats/token and per-tune-normalised) and perplexity of the run's latest
    checkpoint on its own validation split (the split the run trained with), with dropout on
    only if the run's config says ``eval_dropout`` (the published v2 numbers had it on)."""
    config = rundir.load_config(workdir)
    if data_path:
        config.data_path = data_path
    model, params, step = runs.load_run(workdir)
    valid = loop.load_sequences(config).valid
    batches = {name: batching.evaluation_batches(seqs, config.batch_size) for name, seqs in valid.items()}
    dropout = bool(config.get("eval_dropout", False))  # as the run itself evaluated
    eval_step = steps.make_eval_step(model, dropout=dropout)
    metrics = steps.evaluate_sources(eval_step, params, batches, jax.random.PRNGKey(seed))
    metrics.update(
        step=step, valid_tunes=sum(len(v) for v in valid.values()), data_path=config.data_path,
        dropout=dropout, valid_tunes_by_source={name: len(v) for name, v in valid.items()},
    )
    return metrics


def training_split(workdir: str, data_path: str | None = None) -> list[list[str]]:
    """The training tunes of the run's training mix (``mix.load_training_mix`` with the run's
    own split settings: the tunes it trained on, not its validation tunes), as token lists
    without ``<s>``/``</s>``."""
    config = rundir.load_config(workdir)
    if data_path:
        config.data_path = data_path
    return [_strip(vocab.decode(ids)) for ids in loop.load_sequences(config).train]


def _strip(tokens: Sequence[str]) -> list[str]:
    return [t for t in tokens if t not in (vocab.START, vocab.END)]


def subset(num_tunes: int, size: int, seed: int = 0) -> list[int]:
    """Sorted indices of a fixed random subset of ``size`` of ``num_tunes`` tunes (all of them
    when there are no more than ``size``)."""
    if num_tunes <= size:
        return list(range(num_tunes))
    return sorted(int(i) for i in np.random.RandomState(seed).choice(num_tunes, size, replace=False))


def abc2midi_report(tunes: Sequence[Sequence[str]], workers: int = 2, examples: int = 3) -> dict[str, Any]:
    """abc2midi's verdict on each tune written as our ABC (``abc_out.tokens_to_abc``), one
    abc2midi run per tune (``tools.check_tunes``).

    Returns:
      ``tools.summarize_checks``'s counts, and ``examples``: for each message kind, up to
      ``examples`` ``(tune number from 1, message)`` pairs. ``{"missing": reason}`` when
      abc2midi is not installed.
    """
    if not tools.have("abc2midi"):
        return {"missing": "abc2midi is not installed (apt-get install abcmidi)"}
    checks = tools.check_tunes([abc_out.tokens_to_abc(t, index=i + 1) for i, t in enumerate(tunes)], workers)
    result: dict[str, Any] = tools.summarize_checks(checks)
    result["examples"] = {
        kind: [[i + 1, c.messages[kind][0]] for i, c in enumerate(checks) if c.messages[kind]][:examples]
        for kind in tools.ABC2MIDI_KINDS
    }
    return result


def describe_tunes(tunes: Sequence[Sequence[str]], training: Sequence[Sequence[str]] | None,
                   options: EvaluateOptions, index: novelty_lib.NgramIndex | None = None) -> dict[str, Any]:
    """One column of the report: ``statistics`` (``statistics_lib.corpus_statistics``),
    ``abc2midi`` (``abc2midi_report``, on a subset of ``options.abc2midi_training`` tunes when
    ``training`` is None, i.e. for the training split itself) and, for generated tunes,
    ``novelty`` against ``training``."""
    column: dict[str, Any] = {"statistics": statistics_lib.corpus_statistics(tunes),
                              "musical": musical.musical_statistics(tunes)}
    if training is None:
        chosen = [tunes[i] for i in subset(len(tunes), options.abc2midi_training)]
        column["subset"] = {"tunes": len(chosen),
                            "distinct_bar_line_patterns": statistics_lib.corpus_statistics(chosen)[
                                "distinct_bar_line_patterns"]}
    else:
        chosen = tunes
        column["novelty"] = novelty_lib.novelty(tunes, training, options.novelty_threshold, index)
    column["abc2midi"] = abc2midi_report(chosen, options.abc2midi_workers)
    return column


def sample_set(model, params, mode: str, options: EvaluateOptions,
               progress: Callable[[int, int], None] | None = None) -> tuple[list[list[str]], dict[str, Any]]:
    """``options.num_tunes`` tunes sampled freely or with the structure constraint
    (``mode`` ``"free"`` or ``"constrained"``); returns the tunes (no ``<s>``/``</s>``) and
    the sampling settings with the count that reached ``max_length``."""
    many = rerank.best_of(
        model, params, jax.random.PRNGKey(options.seed), options.num_tunes, options.best_of,
        ranking=options.ranking, chunk_size=options.chunk_size, progress=progress,
        temperature=options.temperature, max_length=options.max_length, constrain=mode == "constrained",
    )
    settings = {"mode": mode, "num_tunes": len(many.tunes), "temperature": options.temperature,
                "seed": options.seed, "max_length": options.max_length, "truncated": many.truncated,
                "best_of": options.best_of, "ranking": options.ranking,
                "seconds": many.sampling_seconds + many.scoring_seconds}
    return [_strip(t) for t in many.tunes], settings


def mean_log_likelihood(model, params, tunes: Sequence[Sequence[str]]) -> float:
    """The mean over ``tunes`` of each tune's log-probability per token under the model
    (unconstrained, dropout off; tokens after ``<s>`` through ``</s>``)."""
    sequences = [vocab.encode([vocab.START, *t, vocab.END]) for t in tunes]
    per_token = [lp.mean() for lp in rerank.token_log_probs(model, params, sequences) if len(lp)]
    return float(np.mean(per_token)) if per_token else 0.0


def evaluate_model(workdir: str | None, options: EvaluateOptions,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole report of a run or model folder (None: the shipped model).

    Args:
      workdir: run directory or model folder; None for ``models/default``.
      options: what to sample and check.
      log: gets a line of progress now and then.

    Returns:
      A JSON-ready dict: ``workdir``, ``data_path``, ``validation`` (if asked), ``columns``
      (column names in table order: ``training`` then the sampling modes or ``samples``) and
      ``sets`` (each column's ``describe_tunes`` result; generated ones with ``sampling``).
    """
    # A bad --samples or --compare file fails now, not after the minutes of validation and sampling.
    samples = [_strip(t) for t in v2_format.read_tunes(options.samples)] if options.samples else None
    compared = {path: [_strip(t) for t in v2_format.read_tunes(path)] for path in options.compare}
    directory = runs.resolve(workdir)
    config = rundir.load_config(directory)
    data_path = options.data or config.data_path
    training = training_split(directory, options.data)
    log(f"training split of {data_path}: {len(training)} tunes")
    report: dict[str, Any] = {"workdir": directory, "data_path": data_path, "options": dataclasses.asdict(options)}
    if options.validation:
        report["validation"] = validation_metrics(directory, options.data)
        log(f"validation NLL {report['validation']['valid_loss']:.4f} nats/token")
    index = novelty_lib.NgramIndex(training)
    sets: dict[str, Any] = {}
    model, params, step = runs.load_run(workdir)
    report["step"] = step
    generated: dict[str, list[list[str]]] = {}
    if samples is not None:
        generated["samples"] = samples
        sets["samples"] = describe_tunes(samples, training, options, index)
        sets["samples"]["sampling"] = {"file": options.samples, "num_tunes": len(samples)}
    else:
        for mode in options.modes:
            tunes, settings = sample_set(
                model, params, mode, options,
                lambda kept, sampled, mode=mode: log(f"{mode}: sampled {kept} of {options.num_tunes * options.best_of}"))
            generated[mode] = tunes
            sets[mode] = describe_tunes(tunes, training, options, index)
            sets[mode]["sampling"] = settings
            log(f"{mode}: {len(tunes)} tunes described")
    for path, tunes in compared.items():
        name = COMPARE_PREFIX + os.path.basename(path)
        generated[name] = tunes
        sets[name] = describe_tunes(tunes, training, options, index)
        sets[name]["sampling"] = {"file": path, "num_tunes": len(tunes)}
    for name, tunes in generated.items():
        sets[name]["log_likelihood_per_token"] = mean_log_likelihood(model, params, tunes)
    sets = {"training": describe_tunes(training, None, options), **sets}
    report["columns"] = list(sets)
    report["sets"] = sets
    return report


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _count(n: int) -> str:
    return f"{n:,}"


def _abc2midi_cell(column: dict, kind: str) -> str:
    result = column.get("abc2midi", {})
    if "tunes" not in result or not result["tunes"]:
        return "-"
    return f"{100 * result[kind] / result['tunes']:.1f} ({result[kind]:,})"


def _v2(key: str, sub: str | None = None, fmt: Callable[[Any], str] = str) -> str:
    """The v2 published cell: ``generated; training`` ("-" where not published)."""
    values = []
    for side in ("generated", "training"):
        value = V2_PUBLISHED[side].get(key)
        if sub is not None and isinstance(value, dict):
            value = value.get(sub)
        values.append("-" if value is None else fmt(value))
    return "-" if values == ["-", "-"] else "; ".join(values)


def comparison_rows(report: dict) -> list[tuple[str, list[str], str]]:
    """The table's rows: ``(statistic, one cell per column of report["columns"], v2 cell)``.

    Meter and mode rows include ``other`` and ``missing``, so each block adds up to 100%.
    abc2midi cells are ``% of tunes (count)``; the training column's abc2midi figures are for
    a fixed random subset of its tunes (the "abc2midi: tunes checked" row)."""
    columns = [report["sets"][name] for name in report["columns"]]

    def row(name: str, fn: Callable[[dict], str], v2: str = "-"):
        cells = []
        for column in columns:
            try:
                cells.append(fn(column))
            except KeyError:  # a figure this column does not have (novelty of the training split)
                cells.append("-")
        return name, cells, v2

    def stat(key: str, fmt: Callable[[Any], str]) -> Callable[[dict], str]:
        return lambda c: fmt(c["statistics"][key])

    rows = [row("tunes", stat("num_tunes", _count), _v2("tunes", fmt=_count))]
    for meter in (*vocab.METER_TOKENS, statistics_lib.OTHER, statistics_lib.MISSING):
        rows.append(row(f"meter {meter} (%)", lambda c, m=meter: _pct(c["statistics"]["meter_share"][m]),
                        _v2("meter", meter, fmt=str)))
    for mode in (*vocab.MODE_TOKENS, statistics_lib.OTHER, statistics_lib.MISSING):
        rows.append(row(f"mode {mode} (%)", lambda c, m=mode: _pct(c["statistics"]["mode_share"][m]),
                        _v2("mode", mode, fmt=str)))
    rows += [
        row("mean length (tokens)", stat("length_mean", lambda v: f"{v:.0f}")),
        row("median length / commonest 15-token bin", lambda c: (
            f"{c['statistics']['length_median']:.0f} / {c['statistics']['length_mode_bin'][0]}-"
            f"{c['statistics']['length_mode_bin'][1]}"), _v2("length")),
        row("tunes reaching the length limit", lambda c: _count(c["sampling"]["truncated"])),
        row("passing `structure` (%)", stat("valid_share", _pct)),
        row("bars fitting the meter (%)", stat("bars_fitting_meter_share", _pct)),
        row("repeat/ending/bracket errors (%)", stat("repeat_ending_bracket_error_share", _pct),
            _v2("repeat_ending_bracket_error_share", fmt=lambda v: f"{v:g}")),
        row("abc2midi: tunes checked", lambda c: _count(c["abc2midi"]["tunes"])),
        *(row(f"abc2midi: {name} (%)", lambda c, kind=kind: _abc2midi_cell(c, kind))
          for kind, name, _ in ABC2MIDI_CLASSES),
        row("distinct bar-line patterns", lambda c: _count(c["statistics"]["distinct_bar_line_patterns"]) + (
            f" ({_count(c['subset']['distinct_bar_line_patterns'])} in {_count(c['subset']['tunes'])})"
            if "subset" in c else ""), _v2("distinct_bar_line_patterns", fmt=_count)),
        row("share of the 15 commonest patterns (%)", stat("top_patterns_share", _pct),
            _v2("top_patterns_share", fmt=lambda v: f"{v:g}")),
        row("commonest part structure", stat("commonest_part_structure", str), _v2("commonest_part_structure")),
        row("AABB with 8-bar parts (%)", stat("aabb_8_share", _pct), _v2("aabb_8_share", fmt=lambda v: f"{v:g}")),
        *musical_rows(row),
        row("log-likelihood per token (model, unconstrained)", lambda c: f"{c['log_likelihood_per_token']:.3f}"),
        row("sampling seconds (best of N)", lambda c: f"{c['sampling']['seconds']:.0f} (best of "
            f"{c['sampling']['best_of']}, by {c['sampling']['ranking']})"),
        row(f"sharing {report['options']['novelty_threshold']}+ tokens with a training tune (%)",
            lambda c: f"{_pct(c['novelty']['possible_copy_share'])} ({len(c['novelty']['possible_copies'])})"),
        row("median longest run shared with a training tune (tokens)",
            lambda c: f"{c['novelty']['median_longest_common_ngram']:.0f}"),
    ]
    return rows


def musical_rows(row: Callable) -> list:
    """The rows of ``musical.musical_statistics``' figures (issue 22: endings, form, rhythm,
    repetition, melody), made with ``comparison_rows``' ``row``."""

    def music(key: str, fmt: Callable[[Any], str] = _pct) -> Callable[[dict], str]:
        return lambda c: fmt(c["musical"][key])

    def b_parts(c: dict) -> str:
        m = c["musical"]
        counts = ", ".join(f"{bars}: {n}" for bars, n in sorted(m["b_part_bars"].items(), key=lambda kv: -kv[1])[:4])
        return f"{_pct(m['b_part_16_share'])} of {m['aabb_tunes']:,} ({counts})"

    return [
        row("last note on the tonic (%)", music("last_tonic_share")),
        row("last note on the tonic or dominant (%)", music("last_tonic_or_dominant_share")),
        row("part A ends on the tonic, AABB tunes (%)", lambda c: (
            f"{_pct(c['musical']['part_a_tonic_share'])} of {c['musical']['part_a_tunes']:,}")),
        row("part A ends on the tonic or dominant (%)", music("part_a_tonic_or_dominant_share")),
        row("ends on an empty ending (%)", music("empty_ending_share")),
        row("AABB, 8+8 bars (%)", music("aabb_8_share")),
        row("B part of 16 bars, of AABB tunes (%; commonest B lengths)", b_parts),
        row("sixteenths (/2) per 100 notes", music("sixteenths_per_100_notes", lambda v: f"{v:.1f}")),
        row("bars repeating an earlier bar (%)", music("repeated_bar_share")),
        row("2-bar units repeating an earlier one (%)", music("repeated_unit_share")),
        row("pitch range (semitones, mean)", music("pitch_range_mean", lambda v: f"{v:.1f}")),
        row("steps (1-2 semitones) among intervals (%)", music("stepwise_share")),
    ]


def pitch_class_tables(report: dict) -> list[str]:
    """Markdown: per mode, each column's pitch-class shares (%), the classes named for the
    mode (``K:Cmin``: ``Eb``, ``Ab``, ``Bb``)."""
    lines = []
    for mode in vocab.MODE_TOKENS:
        names = statistics_lib.pitch_class_names(mode)
        lines += [f"Pitch classes in {mode} tunes (% of notes):", "",
                  "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for name in report["columns"]:
            counts = np.asarray(report["sets"][name]["statistics"]["pitch_class_histogram_by_mode"][mode], float)
            cells = [_pct(c / counts.sum()) for c in counts] if counts.sum() else ["-"] * 12
            lines.append(f"| {_label(name)} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def markdown_report(report: dict, images: Sequence[str]) -> str:
    """report.md: validation, the comparison table, abc2midi examples, pitch-class tables,
    the plots."""
    lines = ["# folkrnn_jax evaluation", ""]
    if report.get("validation"):
        v = report["validation"]
        by_source = "; ".join(f"{name} {loss:.4f}" for name, loss in sorted(v.items())
                              if name.startswith("valid_loss/"))
        lines += [
            f"Model `{report['workdir']}`, step {v['step']}. Validation split of `{v['data_path']}` "
            f"({v['valid_tunes']} tunes, {v['valid_tokens']} tokens, dropout {'on' if v['dropout'] else 'off'}): "
            f"NLL {v['valid_loss']:.4f} nats/token, {v['valid_loss_per_tune']:.4f} per-tune-normalised, "
            f"perplexity {v['valid_perplexity']:.3f}" + (f" (by source: {by_source})" if by_source else "") + ".",
            "",
        ]
    sampling = [f"{_label(name)}: {s['sampling'].get('num_tunes')} tunes" + (
        f" at T={s['sampling']['temperature']}, seed {s['sampling']['seed']}, best of {s['sampling']['best_of']} "
        f"by {s['sampling']['ranking']}" if "temperature" in s["sampling"]
        else f" from `{s['sampling'].get('file')}`") for name, s in report["sets"].items() if "sampling" in s]
    lines += [
        f"Training split: the tunes the model trained on (`{report['data_path']}`, validation tunes "
        f"left out). {'; '.join(sampling)}. v2 published: 30,000 generated; 23,635 training tunes "
        "(shares partly read off a figure). Each meter and mode block adds up to 100% with its "
        "\"other\" and \"missing\" rows. abc2midi runs once per tune, written as our ABC; cells "
        "are % of the tunes checked (count). The abc2midi rows overlap: each counts the tunes with "
        "at least one message of its kind, and \"no error, warnings allowed\" the tunes abc2midi "
        "turned into MIDI without an error, so a tune with only bar-length or other warnings (e.g. "
        "\"Assuming repeat\") counts there too. Counts of distinct patterns grow with the number "
        "of tunes: compare them at equal size.",
        "",
    ]
    header = ["statistic", *(_label(name) for name in report["columns"]), "v2 published (generated; training)"]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, cells, v2 in comparison_rows(report):
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {v2} |")
    lines.append("")
    for name in report["columns"]:
        examples = report["sets"][name].get("abc2midi", {}).get("examples", {})
        shown = [f"tune {i} \"{message}\"" for kind in tools.ABC2MIDI_KINDS for i, message in examples.get(kind, [])[:1]]
        if shown:
            lines.append(f"abc2midi examples, {_label(name)}: " + "; ".join(shown) + ".")
    lines.append("")
    lines += pitch_class_tables(report)
    for image in images:
        lines.append(f"![{os.path.splitext(os.path.basename(image))[0]}]({os.path.basename(image)})")
    return "\n".join(lines) + "\n"


def _grouped_bars(ax, keys: Sequence[str], labels: Sequence[str], sets: Sequence[tuple[str, dict]],
                  value: Callable[[dict, str], float]) -> None:
    width = 0.8 / max(len(sets), 1)
    x = np.arange(len(keys))
    for k, (name, column) in enumerate(sets):
        ax.bar(x + k * width - 0.4 + width / 2, [value(column, key) for key in keys], width, label=_label(name))
    ax.set_xticks(x, labels, rotation=0 if len(keys) < 8 else 45, fontsize=8)


def plot_comparison(report: dict, output_dir: str) -> list[str]:
    """PNG plots of the report's columns: meter, mode and length; pitch classes per mode;
    pitches per mode; abc2midi's verdicts. Returns their paths."""
    plt = plots.pyplot()
    sets = [(name, report["sets"][name]) for name in report["columns"]]
    paths = []

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    meters = (*vocab.METER_TOKENS, statistics_lib.OTHER, statistics_lib.MISSING)
    _grouped_bars(axes[0], meters, [m.removeprefix("M:") for m in meters], sets,
                  lambda c, m: 100 * c["statistics"]["meter_share"][m])
    modes = (*vocab.MODE_TOKENS, statistics_lib.OTHER, statistics_lib.MISSING)
    _grouped_bars(axes[1], modes, [m.removeprefix("K:C") for m in modes], sets,
                  lambda c, m: 100 * c["statistics"]["mode_share"][m])
    for name, column in sets:
        axes[2].hist(column["statistics"]["lengths"], bins=np.arange(0, 610, 10), histtype="step", density=True,
                     label=_label(name), linewidth=1.5)
    for ax, title, xlabel, ylabel in (
        (axes[0], "Meter", "meter (M:)", "% of tunes"),
        (axes[1], "Mode (C root)", "mode (K:C...)", "% of tunes"),
        (axes[2], "Tune length", "tokens (header and body)", "share of tunes per token"),
    ):
        plots.set_title(ax, title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    paths.append(plots.save_figure(fig, os.path.join(output_dir, "meter_mode_length.png")))

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), sharey=True)
    width = 0.8 / max(len(sets), 1)
    for ax, mode in zip(axes, vocab.MODE_TOKENS):
        plotted = False
        for k, (name, column) in enumerate(sets):
            counts = np.asarray(column["statistics"]["pitch_class_histogram_by_mode"][mode], float)
            if counts.sum():
                ax.bar(np.arange(12) + k * width - 0.4 + width / 2, 100 * counts / counts.sum(), width,
                       label=_label(name))
                plotted = True
        plots.set_title(ax, f"Pitch classes in {mode} tunes")
        if plotted:
            ax.set_xticks(np.arange(12), statistics_lib.pitch_class_names(mode), fontsize=8)
            ax.set_xlabel("pitch class (spelled for the mode)")
        else:
            plots.no_data(ax)
    axes[0].set_ylabel("% of notes")
    axes[0].legend(fontsize=8)
    paths.append(plots.save_figure(fig, os.path.join(output_dir, "pitch_classes.png")))

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), sharey=True)
    for ax, mode in zip(axes, vocab.MODE_TOKENS):
        shares = []
        for name, column in sets:
            hist = column["statistics"]["pitch_histogram_by_mode"][mode]
            total = sum(hist.values())
            if total:
                shares.append((name, {int(p): 100 * c / total for p, c in hist.items()}))
        plots.set_title(ax, f"Pitches in {mode} tunes")
        # The range any column uses for at least 0.1% of its notes (leaving out stray extremes).
        used = [p for _, share in shares for p, v in share.items() if v >= 0.1]
        if not used:
            plots.no_data(ax)
            continue
        low, high = min(used), max(used)
        for k, (name, share) in enumerate(shares):
            x = np.arange(low, high + 1)
            ax.bar(x + k * width - 0.4 + width / 2, [share.get(int(p), 0.0) for p in x], width, label=_label(name))
        # Tonic, third and fifth of the mode labelled in every octave.
        triad = {statistics_lib.midi_pitch(t, mode) % 12 for t in ("C", "E", "G")}
        ticks = [p for p in range(low, high + 1) if p % 12 in triad]
        ax.set_xticks(ticks, [statistics_lib.pitch_name(p, mode) for p in ticks], rotation=90, fontsize=8)
        ax.set_xlabel("pitch (tonic, third and fifth labelled)")
    axes[0].set_ylabel("% of notes")
    axes[0].legend(fontsize=8)
    paths.append(plots.save_figure(fig, os.path.join(output_dir, "pitches.png")))

    checked = [(name, c) for name, c in sets if c.get("abc2midi", {}).get("tunes")]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    if checked:
        _grouped_bars(ax, [kind for kind, _, _ in ABC2MIDI_CLASSES], [label for _, _, label in ABC2MIDI_CLASSES],
                      checked, lambda c, kind: 100 * c["abc2midi"][kind] / c["abc2midi"]["tunes"])
        ax.legend(fontsize=8)
    else:
        plots.no_data(ax, "abc2midi not run")
    plots.set_title(ax, "abc2midi, run once per tune", width=60)
    ax.set_ylabel("% of tunes checked")
    ax.set_xlabel("abc2midi message")
    paths.append(plots.save_figure(fig, os.path.join(output_dir, "abc2midi.png")))
    return paths


def write_report(report: dict, output_dir: str) -> dict[str, Any]:
    """Write report.json, report.md and the PNG plots into ``output_dir``.

    Returns:
      ``{"json": path, "markdown": path, "images": [paths]}``.
    """
    os.makedirs(output_dir, exist_ok=True)
    images = plot_comparison(report, output_dir)
    files.atomic_write_text(os.path.join(output_dir, "report.json"), json.dumps(report, indent=1))
    files.atomic_write_text(os.path.join(output_dir, "report.md"), markdown_report(report, images))
    return {
        "json": os.path.join(output_dir, "report.json"),
        "markdown": os.path.join(output_dir, "report.md"),
        "images": images,
    }
