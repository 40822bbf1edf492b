"""Matplotlib set-up shared by the evaluation report and the analyses: files only, no screen."""

from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, imported on first use so that importing the
    library does not pull in matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, dpi: int = 70) -> str:
    """Lay out, write and close ``fig``; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
