"""Looking inside a trained model, after "Making sense of the folk-rnn v2 model" (parts 2-10).

Every intervention goes through the jit-compiled model's explicit arguments: ``unit_mask``
[num_layers, hidden] multiplies each layer's hidden state inside the recurrence (ablation),
``logit_bias`` [vocab] is added to the logits (nudging), and float inputs [batch, time, vocab]
replace the one-hot encoding (two-hot input forcing). Nothing edits the model's code.

Each ``run_*`` function writes PNG + JSON (and the recording an ``.npz``) into an output
directory and returns the written paths; ``experiments/analyze_*.py`` are their entry points.
``AnalysisOptions`` says which tunes (a file and indices, or sampled with a seed), how many and
which layer; every figure's caption and every JSON's ``about`` name the model, its step, the
tunes and their number, and the layer, counted from the input as the blog does (first, second,
third).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from folkrnn_jax import files
from folkrnn_jax.analysis import plots
from folkrnn_jax.data import mix, v2_format
from folkrnn_jax.errors import InputError
from folkrnn_jax.generate import prefix as prefix_lib
from folkrnn_jax.generate import sampler
from folkrnn_jax.model import weights
from folkrnn_jax.model.folkrnn import FolkRNN
from folkrnn_jax.music import structure, vocab
from folkrnn_jax.training import rundir, runs

BAR_IDS = np.asarray([vocab.TOKEN_TO_ID[t] for t in vocab.BAR_TOKENS])
PITCH_IDS = np.asarray([i for i, t in enumerate(vocab.TOKENS) if vocab.is_pitch(t)])
ENHARMONIC_CANDIDATES = [
    ("_C", "B,"), ("_c", "B"), ("^B,", "C"), ("^E", "F"), ("_F", "E"),
    ("^C", "_D"), ("^c", "_d"), ("^D", "_E"), ("^d", "_e"), ("^F", "_G"), ("^f", "_g"),
    ("^G", "_A"), ("^g", "_a"), ("^A", "_B"), ("^a", "_b"), ("^A,", "_B,"), ("^C,", "_D,"),
    ("^F,", "_G,"), ("^G,", "_A,"), ("^c'", "_d'"), ("^D,", "_E,"),
    ("=C", "C"), ("=c", "c"), ("=B", "B"), ("=E", "E"), ("=F", "F"), ("=G", "G"), ("=A", "A"),
    ("=D", "D"), ("=b", "b"), ("=e", "e"), ("=f", "f"), ("=g", "g"), ("=a", "a"), ("=d", "d"),
]


def enharmonic_pairs() -> list[tuple[str, str]]:
    """Pairs of tokens naming the same pitch (in C major / no key signature) that are both
    in the vocabulary, e.g. ``^f``/``_g``, ``_C``/``B,`` ... and natural-sign twins ``=c``/``c``."""
    return [(a, b) for a, b in ENHARMONIC_CANDIDATES if a in vocab.TOKEN_TO_ID and b in vocab.TOKEN_TO_ID]


def _write_json(obj: Any, path: str) -> str:
    return files.atomic_write_text(path, json.dumps(obj, indent=1))


SAMPLED = "sampled"


@dataclasses.dataclass(frozen=True)
class AnalysisOptions:
    """What an analysis looks at (the flags of ``experiments/analyze_*.py``).

    Attributes:
      seed: RNG seed of sampled tunes and of the random controls (random units, random pitches).
      tunes: where the tunes come from: a v2 or ABC file, ``"sampled"`` (drawn from the model
        with ``seed`` after ``prefix``), or ``""`` for the analysis's default (bars: the first
        file of the run's training data; the others: sampled).
      indices: which tunes of the file, numbered from 1 in file order; empty: the first
        ``num_tunes`` of at most ``max_length`` tokens.
      num_tunes: how many tunes; 0: the analysis's default (``DEFAULT_NUM_TUNES``).
      layer: the layer to probe, 1 for the first (nearest the input); 0: bars picks the layer
        with the most bar-period power, record and gram show every layer.
      prefix: what sampled tunes start with (v2 tokens or ABC, as ``--prefix`` of sampling).
      max_length: tokens per tune at most, counting ``<s>`` and ``</s>``.
    """

    seed: int = 0
    tunes: str = ""
    indices: tuple[int, ...] = ()
    num_tunes: int = 0
    layer: int = 0
    prefix: str = "M:4/4 K:Cmaj"
    max_length: int = 400


# Tunes an analysis looks at unless --num_tunes says otherwise (forcing: per setting).
DEFAULT_NUM_TUNES = {"record": 1, "gram": 1, "bars": 8, "forcing": 4}


@dataclasses.dataclass(frozen=True)
class Subject:
    """What an analysis looked at: the model (its folder and step) and the tunes (token lists
    with ``<s>``, and ``</s>`` where they ended), with where they came from."""

    model: str
    step: int
    tunes: list[list[str]]
    source: str

    def describe(self, layer: str = "") -> str:
        """One line for a caption or the console: model, step, n, the tunes, the layer."""
        n = len(self.tunes)
        text = f"{self.model}, step {self.step}; n = {n} tune{'' if n == 1 else 's'} ({self.source})"
        return text + (f"; {layer}" if layer else "")

    def about(self, **extra: Any) -> dict[str, Any]:
        """The same for a JSON file."""
        return {"model": self.model, "step": self.step, "num_tunes": len(self.tunes), "tunes": self.source, **extra}


def model_name(workdir: str) -> str:
    """How titles name a run or model folder (the shipped one as ``models/default``)."""
    if os.path.abspath(workdir) == os.path.abspath(weights.DEFAULT_MODEL_DIR):
        return "models/default"
    return workdir


def _numbers(indices: Sequence[int]) -> str:
    """``1-4, 9`` for [1, 2, 3, 4, 9]."""
    parts: list[str] = []
    for i in indices:
        if parts and parts[-1].split("-")[-1] == str(i - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        else:
            parts.append(str(i))
    return ", ".join(parts)


def select_tunes(model: FolkRNN, params: Any, workdir: str, step: int, options: AnalysisOptions,
                 default_num_tunes: int, default_source: str = SAMPLED) -> Subject:
    """The tunes an analysis looks at, as ``options`` says.

    Args:
      model, params, workdir, step: the model (``runs.load_run(workdir)``).
      options: ``tunes``, ``indices``, ``num_tunes``, ``seed``, ``prefix``, ``max_length``.
      default_num_tunes: how many when ``options.num_tunes`` is 0.
      default_source: ``"sampled"`` or ``""`` (the run's training data) when ``options.tunes``
        is empty.

    Returns:
      The ``Subject``: tunes with ``<s>`` (and ``</s>``) and a description of where they came
      from.

    Raises:
      InputError: indices outside the file, indices for sampled tunes, or no tune short enough.
    """
    n = options.num_tunes or default_num_tunes
    source = options.tunes or default_source
    if n < 1:
        raise InputError(f"--num_tunes must be at least 1 (got {n})")
    if source == SAMPLED:
        if options.indices:
            raise InputError("--indices picks tunes of a file (--tunes=FILE), not sampled ones")
        result = sampler.sample_tunes(model, params, jax.random.PRNGKey(options.seed), n, options.prefix, 1.0,
                                      options.max_length, constrain=False)  # the model's own tunes
        return Subject(model_name(workdir), step, result.all_tokens(),
                       f"sampled with seed {options.seed} after {options.prefix!r}, at most "
                       f"{options.max_length} tokens")
    path = source or mix.source_paths(rundir.load_config(workdir).data_path)[0]
    found = v2_format.read_tunes(path)
    if options.indices:
        outside = [i for i in options.indices if not 1 <= i <= len(found)]
        if outside:
            raise InputError(f"--indices {_numbers(outside)}: {path} holds tunes 1-{len(found)}")
        chosen = list(options.indices)
    else:
        chosen = [i + 1 for i, t in enumerate(found) if len(t) + 2 <= options.max_length][:n]
        if not chosen:
            raise InputError(f"no tune of {path} has at most {options.max_length} tokens (--max_length)")
    tunes = [[vocab.START] + found[i - 1] + [vocab.END] for i in chosen]
    return Subject(model_name(workdir), step, tunes, f"tunes {_numbers(chosen)} of {path}")


def _layer_index(options: AnalysisOptions, num_layers: int) -> int | None:
    """``options.layer`` (1 = first) as an index from 0; None when 0 (not chosen)."""
    if not 0 <= options.layer <= num_layers:
        raise InputError(f"--layer={options.layer}: the model has layers 1-{num_layers} (1 is the first, "
                         "nearest the input)")
    return options.layer - 1 if options.layer else None


# ---------------------------------------------------------------------------------------------
# Recording every internal signal


@functools.partial(jax.jit, static_argnames=("model",))
def _record(model: FolkRNN, params: Any, inputs: jax.Array, unit_mask, logit_bias):
    return model.apply({"params": params}, inputs, None, unit_mask, logit_bias, method=FolkRNN.record)


def record(
    model: FolkRNN, params: Any, tokens: Sequence[str] | np.ndarray,
    unit_mask: np.ndarray | None = None, logit_bias: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Teacher-forced pass over one tune (tokens or a float input [time, vocab]); returns numpy
    arrays ``layer_j/{i,f,o,g,c,h}`` [time, hidden], ``probs`` and ``logits`` [time, vocab]."""
    if isinstance(tokens, np.ndarray) and tokens.ndim == 2:
        inputs = jnp.asarray(tokens, jnp.float32)[None]
    else:
        inputs = jnp.asarray(vocab.encode(tokens))[None]
    um = None if unit_mask is None else jnp.asarray(unit_mask, jnp.float32)
    lb = None if logit_bias is None else jnp.asarray(logit_bias, jnp.float32)
    logits, _, internals = _record(model, params, inputs, um, lb)
    out = {"logits": np.asarray(logits[0]), "probs": np.asarray(internals["probs"][0])}
    for layer, signals in internals.items():
        if layer.startswith("layer_"):
            for name, value in signals.items():
                out[f"{layer}/{name}"] = np.asarray(value[0])
    return out


def save_record(path: str, recorded: dict[str, np.ndarray], tokens: Sequence[str]) -> str:
    np.savez_compressed(path, tokens=np.asarray(list(tokens)), vocab=np.asarray(vocab.TOKENS), **recorded)
    return path


def run_record(workdir: str, output: str, options: AnalysisOptions = AnalysisOptions(),
               log: Callable[[str], None] = print) -> list[str]:
    """Record every internal signal over one tune (sampled, or ``options.indices[0]`` of a
    file), plot the hidden states of every layer (or of ``options.layer``)."""
    os.makedirs(output, exist_ok=True)
    model, params, step = runs.load_run(workdir)
    subject = select_tunes(model, params, workdir, step, options, DEFAULT_NUM_TUNES["record"])
    tokens = subject.tunes[0]
    chosen = _layer_index(options, model.num_layers)
    layers = list(range(model.num_layers)) if chosen is None else [chosen]
    log(f"record: {subject.describe(', '.join(plots.layer_name(j) for j in layers))}")
    rec = record(model, params, tokens)
    paths = [save_record(os.path.join(output, "record.npz"), rec, tokens)]
    plt = plots.pyplot()
    fig, axes = plt.subplots(len(layers), 1, figsize=(max(10, 0.13 * len(tokens)), 2.8 * len(layers) + 0.6),
                             squeeze=False)
    for row, j in enumerate(layers):
        last = row == len(layers) - 1
        plots.heatmap(fig, axes[row, 0], rec[f"layer_{j}/h"].T,
                      title=f"Hidden state h of the {plots.layer_name(j)} over the tune",
                      colorbar_label="h", vmin=-1, vmax=1, ylabel="unit",
                      x_labels=tokens if last else None, xlabel="input token" if last else "", max_labels=400)
    plots.label_ticks(axes[-1, 0], tokens, "x", max_labels=400, fontsize=7)
    plots.caption(fig, subject.describe(f"layers counted from the input ({len(layers)} shown)"))
    paths.append(plots.save_figure(fig, os.path.join(output, "record_hidden.png")))
    summary = {
        "about": subject.about(layers=[plots.layer_name(j) for j in range(model.num_layers)]),
        "tokens": tokens,
        "mean_abs_h": [float(np.abs(rec[f"layer_{j}/h"]).mean()) for j in range(model.num_layers)],
        "share_abs_h_below_0.1": [float((np.abs(rec[f"layer_{j}/h"]) < 0.1).mean()) for j in range(model.num_layers)],
    }
    paths.append(_write_json(summary, os.path.join(output, "record.json")))
    return paths


# ---------------------------------------------------------------------------------------------
# Softmax layer (parts 2, 3) and first-layer input weights


def softmax_analysis(params: Any) -> dict[str, Any]:
    """Output bias, the correlation of the softmax weight columns and their singular values."""
    kernel = np.asarray(params["output"]["kernel"])  # [H, V]
    bias = np.asarray(params["output"]["bias"])
    corr = np.corrcoef(kernel.T)
    singular = np.linalg.svd(kernel, compute_uv=False)
    return {"bias": bias, "column_correlation": corr, "singular_values": singular}


def run_softmax(workdir: str, output: str, options: AnalysisOptions = AnalysisOptions(),
                log: Callable[[str], None] = print) -> list[str]:
    """The softmax layer's bias, weight-column correlations and singular values (no tunes)."""
    os.makedirs(output, exist_ok=True)
    model, params, step = runs.load_run(workdir)
    where = f"{model_name(workdir)}, step {step}; the softmax (output) layer, after the {plots.layer_name(model.num_layers - 1)}; no tunes"
    log(f"softmax: {where}")
    result = softmax_analysis(params)
    plt = plots.pyplot()
    fig = plt.figure(figsize=(22, 8))
    grid = fig.add_gridspec(1, 2, width_ratios=(3, 1))
    order = np.argsort(result["bias"])[::-1]
    ax = fig.add_subplot(grid[0, 0])
    ax.bar(np.arange(len(order)), result["bias"][order])
    plots.set_title(ax, "Softmax output bias per token, largest first", width=80)
    plots.label_ticks(ax, [vocab.TOKENS[i] for i in order], "x")
    ax.set_xlim(-1, len(order))
    ax.set_xlabel("token")
    ax.set_ylabel("bias")
    ax = fig.add_subplot(grid[0, 1])
    ax.semilogy(np.arange(1, len(result["singular_values"]) + 1), result["singular_values"], ".")
    plots.set_title(ax, f"Singular values of the softmax weights (largest {result['singular_values'][0]:.1f})")
    ax.set_xlabel("rank")
    ax.set_ylabel("singular value")
    plots.caption(fig, where)
    paths = [plots.save_figure(fig, os.path.join(output, "softmax.png"))]
    paths.append(plots.token_heatmap_figure(
        result["column_correlation"], f"Correlation of the softmax weight columns (tokens grouped by kind, "
        f"pitches low to high); {where}", "Pearson correlation", os.path.join(output, "softmax_correlation.png")))
    top = [(vocab.TOKENS[i], float(result["bias"][i])) for i in order[:10]]
    paths.append(_write_json({
        "about": {"model": model_name(workdir), "step": step, "num_tunes": 0, "layer": "softmax"},
        "largest_singular_value": float(result["singular_values"][0]),
        "singular_values": result["singular_values"].tolist(),
        "bias_top10": top,
        "bias": dict(zip(vocab.TOKENS, result["bias"].tolist())),
    }, os.path.join(output, "softmax.json")))
    return paths


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    y = x / np.maximum(n, 1e-12)
    return y @ y.T


def input_similarity(params: Any, seed: int = 0, num_random: int = 2000) -> dict[str, Any]:
    """Cosine similarity of the first layer's input weight rows (one per token); enharmonic
    pairs compared with random pairs of pitch tokens."""
    w = np.asarray(params["lstm_0_w_in"])  # [V, 4H]
    sim = cosine_matrix(w)
    pairs = enharmonic_pairs()
    pair_sims = {f"{a}/{b}": float(sim[vocab.TOKEN_TO_ID[a], vocab.TOKEN_TO_ID[b]]) for a, b in pairs}
    rng = np.random.default_rng(seed)
    a = rng.choice(PITCH_IDS, num_random)
    b = rng.choice(PITCH_IDS, num_random)
    keep = a != b
    random_sims = sim[a[keep], b[keep]]
    return {
        "similarity": sim,
        "enharmonic": pair_sims,
        "enharmonic_mean": float(np.mean(list(pair_sims.values()))) if pair_sims else 0.0,
        "random_mean": float(random_sims.mean()),
        "random_std": float(random_sims.std()),
        "random": random_sims,
    }


def run_embeddings(workdir: str, output: str, options: AnalysisOptions = AnalysisOptions(),
                   log: Callable[[str], None] = print) -> list[str]:
    """Similarity of the first layer's input weight rows; enharmonic against random pairs
    (``options.seed`` draws the random pairs; no tunes)."""
    os.makedirs(output, exist_ok=True)
    model, params, step = runs.load_run(workdir)
    where = f"{model_name(workdir)}, step {step}; input weights of the {plots.layer_name(0)}; no tunes"
    log(f"embeddings: {where}")
    result = input_similarity(params, options.seed)
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.hist(result["random"], bins=40, density=True, alpha=0.6, label="random pitch pairs")
    for k, v in enumerate(result["enharmonic"].values()):
        ax.axvline(v, color="C3", alpha=0.6, label="enharmonic pairs" if k == 0 else None)
    ax.legend()
    plots.set_title(ax, "Input weight similarity: enharmonic pairs (e.g. ^f/_g) against random pitch pairs")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    plots.caption(fig, where, width=70)
    paths = [plots.save_figure(fig, os.path.join(output, "embeddings.png"))]
    paths.append(plots.token_heatmap_figure(
        result["similarity"], f"Cosine similarity of the first layer's input weight rows (tokens grouped by "
        f"kind, pitches low to high); {where}", "cosine similarity", os.path.join(output, "embeddings_similarity.png")))
    about = {"model": model_name(workdir), "step": step, "num_tunes": 0, "layer": plots.layer_name(0)}
    paths.append(_write_json({"about": about, **{k: result[k] for k in ("enharmonic", "enharmonic_mean", "random_mean",
                                                                       "random_std")}},
                             os.path.join(output, "embeddings.json")))
    return paths


# ---------------------------------------------------------------------------------------------
# Bar counting (part 6): Fourier power at the bar period, then ablation


def bar_period_power(h: np.ndarray, tokens: Sequence[str]) -> tuple[np.ndarray, float]:
    """Share of each unit's (mean-removed) spectral power at the tune's bar-line period,
    the mean number of tokens per bar. h is [time, hidden] aligned with ``tokens``."""
    positions = [i for i, t in enumerate(tokens) if t in vocab.BAR_TOKENS]
    period = float(np.mean(np.diff(positions))) if len(positions) > 1 else float(len(tokens))
    x = h - h.mean(axis=0)
    spectrum = np.abs(np.fft.rfft(x, axis=0)) ** 2
    freqs = np.fft.rfftfreq(len(x))
    k = int(np.argmin(np.abs(freqs - 1.0 / period)))
    total = spectrum[1:].sum(axis=0) + 1e-12
    return spectrum[k] / total, period


def bar_placement_accuracy(probs: np.ndarray, targets: Sequence[int]) -> float:
    """Balanced accuracy of 'a bar line comes next' (probability mass on bar tokens > 0.5)
    against where the tune's bar lines are."""
    targets = np.asarray(targets)
    predicted = probs[:, BAR_IDS].sum(axis=1) > 0.5
    actual = np.isin(targets, BAR_IDS)
    hit = predicted[actual].mean() if actual.any() else 1.0
    reject = (~predicted[~actual]).mean() if (~actual).any() else 1.0
    return float(0.5 * (hit + reject))


def bar_probability(probs: np.ndarray, targets: Sequence[int]) -> float:
    """Mean probability the model gives to bar-line tokens where the tune has a bar line."""
    targets = np.asarray(targets)
    actual = np.isin(targets, BAR_IDS)
    return float(probs[actual][:, BAR_IDS].sum(axis=1).mean()) if actual.any() else 0.0


def strongest_bar_layer(power: np.ndarray, top: int = 8) -> int:
    """The layer (from 0) whose ``top`` units with the largest bar-period power share
    ([layers, hidden]) have the largest mean share."""
    top = min(top, power.shape[1])
    return int(np.argmax(np.sort(power, axis=1)[:, -top:].mean(axis=1)))


def bar_ablation(model: FolkRNN, params: Any, tunes: Sequence[Sequence[str]], ks: Sequence[int] = (0, 4, 16, 32),
                 layer: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Fourier power of every unit at the bar period (averaged over tunes), then bar-line
    placement accuracy with the top-k units (by that power) zeroed, against k random units.

    Args:
      model, params: the model.
      tunes: token lists with ``<s>`` and ``</s>``.
      ks: the numbers of units to zero.
      layer: the layer whose units are zeroed, from 0; None: the layer whose 8 strongest units
        have the most bar-period power on average (``strongest_bar_layer``).
      seed: draws the random units.

    Returns:
      ``power`` [layers, hidden], the ``layer`` zeroed, and ``ablation``: per k the accuracy
      and P(bar) with the top and with random units zeroed.
    """
    L, H = model.num_layers, model.hidden_size
    power = np.zeros((L, H))
    for tune in tunes:
        rec = record(model, params, tune)
        for j in range(L):
            p, _ = bar_period_power(rec[f"layer_{j}/h"], tune)
            power[j] += p / len(tunes)
    layer = strongest_bar_layer(power) if layer is None else layer
    rng = np.random.default_rng(seed)
    results = {"k": [], "top": [], "random": [], "top_probability": [], "random_probability": []}
    for k in ks:
        k = min(k, H)
        accs, probs = [], []
        for units in (np.argsort(power[layer])[::-1][:k], rng.choice(H, k, replace=False)):
            mask = np.ones((L, H), np.float32)
            mask[layer, units] = 0.0
            acc, prob = [], []
            for t in tunes:
                p = record(model, params, t[:-1], unit_mask=mask)["probs"]
                targets = vocab.encode(t[1:])
                acc.append(bar_placement_accuracy(p, targets))
                prob.append(bar_probability(p, targets))
            accs.append(float(np.mean(acc)))
            probs.append(float(np.mean(prob)))
        results["k"].append(k)
        results["top"].append(accs[0])
        results["random"].append(accs[1])
        results["top_probability"].append(probs[0])
        results["random_probability"].append(probs[1])
    return {"power": power, "layer": layer, "ablation": results}


def run_bars(workdir: str, output: str, options: AnalysisOptions = AnalysisOptions(),
             log: Callable[[str], None] = print) -> list[str]:
    """Bar-period power of every unit over ``options``' tunes (default: the first 8 of the run's
    training data), then zeroing units of ``options.layer`` (default: the layer with the most
    bar-period power)."""
    os.makedirs(output, exist_ok=True)
    model, params, step = runs.load_run(workdir)
    subject = select_tunes(model, params, workdir, step, options, DEFAULT_NUM_TUNES["bars"], default_source="")
    chosen = _layer_index(options, model.num_layers)
    ks = [k for k in (0, 2, 8, 32, 64) if k <= model.hidden_size]
    result = bar_ablation(model, params, subject.tunes, ks, layer=chosen, seed=options.seed)
    layer = plots.layer_name(result["layer"])
    how = "--layer" if chosen is not None else "the layer with the most bar-period power"
    log(f"bars: {subject.describe(f'units zeroed in the {layer} ({how})')}")
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    for j in range(model.num_layers):
        axes[0].plot(np.sort(result["power"][j])[::-1], label=plots.layer_name(j))
    plots.set_title(axes[0], "Share of each unit's power at the bar-line period")
    axes[0].set_xlabel("unit (sorted by share, largest first)")
    axes[0].set_ylabel("share of spectral power")
    axes[0].legend()
    ab = result["ablation"]
    axes[1].plot(ab["k"], ab["top"], "o-", color="C0", label="accuracy, top units zeroed")
    axes[1].plot(ab["k"], ab["random"], "s--", color="C0", label="accuracy, random units zeroed")
    axes[1].plot(ab["k"], ab["top_probability"], "o-", color="C3", label="P(bar), top units zeroed")
    axes[1].plot(ab["k"], ab["random_probability"], "s--", color="C3", label="P(bar), random units zeroed")
    axes[1].set_xlabel(f"units zeroed in the {layer}")
    axes[1].set_ylabel("accuracy / probability")
    plots.set_title(axes[1], f"Bar lines with units of the {layer} zeroed: balanced accuracy and P(bar) at "
                    "true bar lines")
    axes[1].legend()
    plots.caption(fig, subject.describe(f"units zeroed in the {layer}"))
    paths = [plots.save_figure(fig, os.path.join(output, "bars.png"))]
    paths.append(_write_json({"about": subject.about(layer=layer, layer_chosen_by=how),
                              "power": result["power"].tolist(), "layer": result["layer"] + 1, "ablation": ab},
                             os.path.join(output, "bars.json")))
    return paths


# ---------------------------------------------------------------------------------------------
# Input forcing and nudging (parts 2, 7)


@functools.partial(jax.jit, static_argnames=("model", "num_steps"))
def forced_sample(model: FolkRNN, params: Any, key: jax.Array, prefix: jax.Array, num_steps: int,
                  forcing: jax.Array, logit_bias: jax.Array, unit_mask: jax.Array | None = None):
    """Sample ``num_steps`` tokens after ``prefix`` (int ids [P]); each fed-back token enters
    as a two-hot vector: (1 - forcing) on the token and ``forcing`` on a random pitch token.
    ``logit_bias`` [vocab] is added to the logits. Returns ids [num_steps] (after </s> the
    sequence just continues; cut it at the first </s>)."""
    variables = {"params": params}
    V = model.vocab_size
    carry = model.apply(variables, 1, method=FolkRNN.initial_carry)
    if prefix.shape[0] > 1:
        _, carry = model.apply(variables, prefix[None, :-1], carry, unit_mask=unit_mask,
                               logit_bias=logit_bias, method=FolkRNN.decode)
    pitch_ids = jnp.asarray(PITCH_IDS)

    def step(state, k):
        token, carry = state
        k_pitch, k_next = jax.random.split(k)
        pitch = jax.random.choice(k_pitch, pitch_ids)
        x = (1.0 - forcing) * jax.nn.one_hot(token, V) + forcing * jax.nn.one_hot(pitch, V)
        logits, carry = model.apply(variables, x[None, None, :], carry, unit_mask=unit_mask,
                                    logit_bias=logit_bias, method=FolkRNN.decode)
        nxt = jax.random.categorical(k_next, logits[0, 0]).astype(jnp.int32)
        return (nxt, carry), nxt

    _, out = jax.lax.scan(step, (prefix[-1], carry), jax.random.split(key, num_steps))
    return out


def forced_tunes(model, params, seed: int, num_tunes: int, forcing: float, logit_bias: np.ndarray,
                 prefix: str = "M:4/4 K:Cmaj", num_steps: int = 250,
                 prefixes: Sequence[Sequence[str]] | None = None) -> list[list[str]]:
    """``num_tunes`` tunes sampled with ``forced_sample`` (tune i with the key ``seed * 1000 +
    i``), each after ``prefix`` or after ``prefixes[i]`` (v2 tokens starting with ``<s>``);
    returned without ``<s>`` and cut at ``</s>``. A tune has at most ``num_steps`` tokens after
    its prefix."""
    out = []
    for i in range(num_tunes):
        tokens_in = list(prefixes[i]) if prefixes is not None else prefix_lib.parse_prefix(prefix)
        ids = np.asarray(forced_sample(model, params, jax.random.PRNGKey(seed * 1000 + i),
                                       jnp.asarray(vocab.encode(tokens_in)), num_steps, jnp.float32(forcing),
                                       jnp.asarray(logit_bias, jnp.float32)))
        tokens = vocab.decode(ids)
        if vocab.END in tokens:
            tokens = tokens[: tokens.index(vocab.END)]
        out.append(tokens_in[1:] + tokens)
    return out


def _opening(tune: Sequence[str]) -> list[str]:
    """A tune's header and first bar (through its first bar line): the prefix forcing starts
    from when the tunes come from a file."""
    bars = [i for i, t in enumerate(tune) if t in vocab.BAR_TOKENS and i > 3]
    end = bars[0] + 1 if bars else min(len(tune) - 1, 3)
    return list(tune[:end])


def run_forcing(workdir: str, output: str, options: AnalysisOptions = AnalysisOptions(),
                log: Callable[[str], None] = print) -> list[str]:
    """Two-hot forcing (0.7 token + 0.3 random pitch) and a logit nudge towards ``^f``,
    compared with plain sampling: share of valid tunes and of the nudged token. Each setting
    draws ``options.num_tunes`` tunes (default 4) after ``options.prefix``, or after the
    opening bar of each tune chosen from ``options.tunes`` (a file)."""
    os.makedirs(output, exist_ok=True)
    model, params, step = runs.load_run(workdir)
    if options.layer:
        raise InputError("--layer does not apply to analyze_forcing: the two-hot input enters the first layer")
    n = options.num_tunes or DEFAULT_NUM_TUNES["forcing"]
    if (options.tunes or SAMPLED) == SAMPLED:
        if options.indices:
            raise InputError("--indices picks tunes of a file (--tunes=FILE), not sampled ones")
        prefixes = [prefix_lib.parse_prefix(options.prefix)] * n
        source = f"after {options.prefix!r}"
    else:
        chosen = select_tunes(model, params, workdir, step, options, n)
        prefixes = [_opening(t) for t in chosen.tunes]
        source = f"after the opening bar of {chosen.source}"
    longest = max(len(p) for p in prefixes)
    if options.max_length <= longest:
        raise InputError(f"--max_length={options.max_length} leaves no room after a prefix of {longest} tokens")
    subject = Subject(model_name(workdir), step, prefixes,
                      f"drawn per setting with seed {options.seed} {source}, at most {options.max_length} tokens")
    log(f"forcing: {subject.describe('two-hot input into the first layer')}")
    zero = np.zeros(vocab.VOCAB_SIZE, np.float32)
    nudge = zero.copy()
    nudge[vocab.TOKEN_TO_ID["^f"]] = 3.0
    settings = {"plain": (0.0, zero), "two-hot 0.3": (0.3, zero), "nudge ^f +3": (0.0, nudge)}
    summary = {}
    for name, (forcing, bias) in settings.items():
        tunes = forced_tunes(model, params, options.seed, len(prefixes), forcing, bias,
                             num_steps=options.max_length - longest, prefixes=prefixes)
        body_tokens = [t for tune in tunes for t in tune[2:]]
        summary[name] = {
            "valid_share": float(np.mean([structure.is_valid_tune(t) for t in tunes])),
            "share_^f": body_tokens.count("^f") / max(len(body_tokens), 1),
            "share_bar_tokens": sum(t in vocab.BAR_TOKENS for t in body_tokens) / max(len(body_tokens), 1),
            "mean_length": float(np.mean([len(t) for t in tunes])),
            "first_tune": " ".join(tunes[0]),
        }
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    names = list(summary)
    panels = (("valid_share", "Tunes passing the structure checks", "share of tunes"),
              ("share_^f", "Share of ^f among body tokens", "share of tokens"),
              ("share_bar_tokens", "Share of bar lines among body tokens", "share of tokens"))
    for ax, (key, title, ylabel) in zip(axes, panels):
        ax.bar(names, [summary[n][key] for n in names], color=["C0", "C1", "C2"])
        plots.set_title(ax, title)
        ax.set_xlabel("input forcing")
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelsize=8)
    plots.caption(fig, subject.describe("two-hot input into the first layer; nudge on the softmax"))
    paths = [plots.save_figure(fig, os.path.join(output, "forcing.png"))]
    paths.append(_write_json({"about": subject.about(layer=plots.layer_name(0)), **summary},
                             os.path.join(output, "forcing.json")))
    return paths


# ---------------------------------------------------------------------------------------------
# Self-similarity (Gram) matrices (parts 9, 10)


def gram_matrices(rec: dict[str, np.ndarray], tokens: Sequence[str], num_layers: int) -> dict[str, np.ndarray]:
    """Cosine self-similarity over time of the one-hot inputs, the softmax outputs and each
    layer's hidden state."""
    onehot = np.eye(vocab.VOCAB_SIZE)[vocab.encode(tokens)]
    out = {"inputs": onehot @ onehot.T, "softmax": cosine_matrix(rec["probs"])}
    for j in range(num_layers):
        out[f"layer_{j}"] = cosine_matrix(rec[f"layer_{j}/h"])
    return out


def run_gram(workdir: str, output: str, options: AnalysisOptions = AnalysisOptions(),
             log: Callable[[str], None] = print) -> list[str]:
    """Self-similarity of the inputs, the softmax outputs and the hidden states of every layer
    (or of ``options.layer``) over one tune (sampled, or ``options.indices[0]`` of a file)."""
    os.makedirs(output, exist_ok=True)
    model, params, step = runs.load_run(workdir)
    subject = select_tunes(model, params, workdir, step, options, DEFAULT_NUM_TUNES["gram"])
    tokens = subject.tunes[0]
    chosen = _layer_index(options, model.num_layers)
    grams = gram_matrices(record(model, params, tokens), tokens, model.num_layers)
    if chosen is not None:
        grams = {k: v for k, v in grams.items() if not k.startswith("layer_") or k == f"layer_{chosen}"}
    shown = [plots.layer_name(int(k.split("_")[1])) for k in grams if k.startswith("layer_")]
    log(f"gram: {subject.describe('hidden states of the ' + ', '.join(shown))}")
    plt = plots.pyplot()
    columns = 2
    rows = -(-len(grams) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(9 * columns, 8 * rows), squeeze=False)
    # Tick labels at the tune's bar lines and inline header changes, with their positions: a
    # label per token would not be readable over a whole tune.
    marks = [i for i, t in enumerate(tokens) if t in vocab.BAR_TOKENS or (i > 2 and t[:2] in ("M:", "K:"))]
    labels = [f"{tokens[i]} {i}" for i in marks]
    titles = {"inputs": "inputs (one-hot tokens)", "softmax": "softmax outputs"}
    for ax, (name, g) in zip(axes.flat, grams.items()):
        what = titles.get(name) or f"hidden state of the {plots.layer_name(int(name.split('_')[1]))}"
        plots.heatmap(fig, ax, g, title=f"Self-similarity over the tune: {what}",
                      colorbar_label="cosine similarity", cmap="viridis", vmin=0 if name == "inputs" else -1,
                      vmax=1, xlabel="token (bar lines labelled, with position)",
                      ylabel="token")
        ax.set_xticks(marks, labels, rotation=90, fontsize=7)
        ax.set_yticks(marks, labels, fontsize=7)
    for ax in axes.flat[len(grams):]:
        ax.set_visible(False)
    plots.caption(fig, subject.describe("layers counted from the input"))
    paths = [plots.save_figure(fig, os.path.join(output, "gram.png"))]
    paths.append(_write_json({"about": subject.about(layers=shown), "tokens": tokens,
                              "mean_similarity": {k: float(v.mean()) for k, v in grams.items()}},
                             os.path.join(output, "gram.json")))
    return paths


ANALYSES = {
    "record": run_record,
    "softmax": run_softmax,
    "embeddings": run_embeddings,
    "bars": run_bars,
    "forcing": run_forcing,
    "gram": run_gram,
}
