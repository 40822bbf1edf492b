"""Matplotlib helpers shared by the evaluation report and the analyses (files only, no
screen): titles that wrap instead of being clipped, heat maps with a colour bar and token
labels, a "no data" note for empty panels, and the vocabulary in a musical order."""

from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np

from folkrnn_jax.music import pitch, vocab


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, imported on first use so that importing the
    library does not pull in matplotlib."""
    import matplotlib  # slow to import and only needed for plots: on first use

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the Agg backend

    return plt


def save_figure(fig, path: str, dpi: int = 90) -> str:
    """Lay out, write and close ``fig`` (trimmed to what is drawn, so that no title or label
    is cut off); returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return path


def set_title(ax, text: str, width: int = 45, **kwargs) -> None:
    """``ax.set_title`` with ``text`` wrapped at ``width`` characters, so a long title takes
    two lines instead of running past its panel."""
    ax.set_title("\n".join(textwrap.wrap(text, width)), **kwargs)


ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")


def layer_name(index: int) -> str:
    """A layer as the blog names it, counted from the input: index 0 is ``"first layer"``."""
    return f"{ORDINALS[index]} layer" if 0 <= index < len(ORDINALS) else f"layer {index + 1}"


def caption(fig, text: str, width: int = 110) -> None:
    """What a figure looked at (model, step, tunes, layer), wrapped, above all its panels."""
    fig.suptitle("\n".join(textwrap.wrap(text, width)), fontsize=10)


def no_data(ax, text: str = "no data") -> None:
    """Mark an empty panel: ``text`` in its middle, no ticks."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def label_ticks(ax, labels: Sequence[str], axis: str = "x", max_labels: int = 140,
                fontsize: float | None = None, rotation: float = 90) -> None:
    """Put ``labels`` (one per row/column of what is plotted) on an axis: all of them when
    there are at most ``max_labels``, else every k-th. The font shrinks with the count."""
    n = len(labels)
    step = max(1, int(np.ceil(n / max_labels)))
    positions = np.arange(0, n, step)
    size = fontsize or float(np.clip(900 / max(n / step, 1), 5, 9))
    if axis == "x":
        ax.set_xticks(positions, [labels[i] for i in positions], rotation=rotation, fontsize=size)
    else:
        ax.set_yticks(positions, [labels[i] for i in positions], fontsize=size)


def heatmap(fig, ax, matrix: np.ndarray, *, title: str, colorbar_label: str, cmap: str = "RdBu_r",
            vmin: float | None = None, vmax: float | None = None, x_labels: Sequence[str] | None = None,
            y_labels: Sequence[str] | None = None, xlabel: str = "", ylabel: str = "",
            max_labels: int = 140) -> None:
    """``matrix`` [rows, columns] as an image with a colour bar, a wrapped title, axis labels
    and, where given, one tick label per row/column."""
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label(colorbar_label)
    set_title(ax, title)
    if x_labels is not None:
        label_ticks(ax, x_labels, "x", max_labels)
    if y_labels is not None:
        label_ticks(ax, y_labels, "y", max_labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _token_group(token: str) -> tuple:
    """Sort key of a token in ``musical_order``: kind, then pitch (low to high) or value."""
    if token in (vocab.START, vocab.END):
        return (0, token != vocab.START)
    if token.startswith("M:"):
        return (1, vocab.METER_TOKENS.index(token))
    if token.startswith("K:"):
        return (2, vocab.MODE_TOKENS.index(token))
    if vocab.is_pitch(token):
        return (3, pitch.token_pitch(token, "K:Cmaj"), token)
    if token == "z":
        return (4,)
    if token in vocab.BAR_TOKENS:
        return (8, vocab.BAR_TOKENS.index(token))
    if token.startswith("("):
        return (7, int(token[1:]))
    if token in ("[", "]"):
        return (9, token)
    if token.endswith(("<", ">")):
        return (6, token)
    return (5, _duration_value(token), token)


def _duration_value(token: str) -> float:
    numerator, _, denominator = token.partition("/")
    return (float(numerator) if numerator else 1.0) / (float(denominator) if denominator else 1.0)


def musical_order() -> list[int]:
    """Token ids grouped for reading a vocabulary-sized heat map: ``<s>``, ``</s>``, meters,
    modes, pitches from low to high, the rest, durations (short to long), broken rhythms,
    tuplets, bar lines, chord brackets (the vocabulary's own order is the original's
    arbitrary set order)."""
    return sorted(range(vocab.VOCAB_SIZE), key=lambda i: _token_group(vocab.TOKENS[i]))


def token_heatmap_figure(matrix: np.ndarray, title: str, colorbar_label: str, path: str) -> str:
    """A vocabulary-by-vocabulary matrix [137, 137] (vocabulary order) as its own square PNG,
    tokens in ``musical_order`` with every token labelled on both axes, values -1..1."""
    order = musical_order()
    names = [vocab.TOKENS[i] for i in order]
    fig, ax = pyplot().subplots(figsize=(15, 13.5))
    heatmap(fig, ax, np.asarray(matrix)[np.ix_(order, order)], title=title, colorbar_label=colorbar_label,
            vmin=-1, vmax=1, x_labels=names, y_labels=names)
    return save_figure(fig, path, dpi=100)
