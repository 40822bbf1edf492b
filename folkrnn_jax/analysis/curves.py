"""Learning curves of a run: training loss and every validation loss in ``metrics.jsonl``,
by epoch, as one figure (the model card's plot)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from folkrnn_jax.analysis import plots


def curve_series(records: Sequence[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The run's losses as series ``{name: (epochs, values)}``.

    Args:
      records: metrics records (``step``, ``epoch``, ``train_loss``, ``valid_loss``,
        ``valid_loss/SOURCE``, ...), oldest first, as ``metrics.read_metrics`` returns them.

    Returns:
      One series per key that is ``train_loss`` or starts with ``valid_loss`` (per-tune
      normalisations left out), each with its epochs and values in record order.
    """
    series: dict[str, tuple[list, list]] = {}
    for record in records:
        for key, value in record.items():
            if key == "train_loss" or (key.startswith("valid_loss") and not key.startswith("valid_loss_per_tune")):
                epochs, values = series.setdefault(key, ([], []))
                epochs.append(record["epoch"])
                values.append(value)
    return {k: (np.asarray(e, float), np.asarray(v, float)) for k, (e, v) in series.items()}


def learning_curve_figure(records: Sequence[dict], title: str, path: str) -> str:
    """Plot ``curve_series(records)`` (nats/token against epoch) and write it to ``path``.

    Args:
      records: the run's metrics records.
      title: the figure's title (say which run and model).
      path: the PNG to write.

    Returns:
      ``path``.
    """
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    series = curve_series(records)
    if not series:
        plots.no_data(ax, "no losses recorded")
    for name, (epochs, values) in sorted(series.items()):
        label = {"train_loss": "training (dropout on)", "valid_loss": "validation, all (dropout off)"}.get(
            name, f"validation, {name.split('/', 1)[-1]} (dropout off)")
        style = dict(marker="o", markersize=3) if name.startswith("valid") else dict(alpha=0.6)
        ax.plot(epochs, values, label=label, **style)
    if series:
        valid = [v for k, (_, v) in series.items() if k.startswith("valid")]
        if valid:
            best = min(float(v.min()) for v in valid)
            ax.axhline(best, color="0.6", linestyle=":", linewidth=1)
            ax.annotate(f"best validation {best:.3f}", (0.99, best), xycoords=("axes fraction", "data"),
                        ha="right", va="bottom", fontsize=8, color="0.3")
        ax.legend(fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("negative log-likelihood (nats/token)")
    ax.grid(alpha=0.3)
    plots.set_title(ax, title, width=70)
    return plots.save_figure(fig, path)
