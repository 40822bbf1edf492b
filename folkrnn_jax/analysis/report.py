"""The evaluation report of a run: validation loss, statistics of training and generated tunes,
novelty, as JSON, Markdown and PNG plots."""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jax
import numpy as np

from folkrnn_jax import files
from folkrnn_jax.analysis import plots
from folkrnn_jax.analysis.statistics import PITCH_CLASSES
from folkrnn_jax.data import batching
from folkrnn_jax.music import vocab
from folkrnn_jax.training import checkpoints, loop, runs, steps


def validation_metrics(workdir: str, data_path: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Validation NLL (nats/token and per-tune-normalised) and perplexity of the run's latest
    checkpoint on its own validation split (the split the run trained with), with dropout on
    only if the run's config says ``eval_dropout`` (the published v2 numbers had it on)."""
    config = checkpoints.load_config(workdir)
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
    files.atomic_write_text(os.path.join(output_dir, "report.json"), json.dumps(report, indent=1))
    files.atomic_write_text(os.path.join(output_dir, "report.md"), markdown_report(report, images))
    return {
        "json": os.path.join(output_dir, "report.json"),
        "markdown": os.path.join(output_dir, "report.md"),
        "images": images,
    }
