"""Matplotlib set-up shared by the evaluation report and the analyses: files only, no screen."""

from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, imported on first use so that importing the
    library does not pull in matplotlib."""
    import matplotlib  # slow to import and only needed for plots: on first use

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the Agg backend

    return plt


def save_figure(fig, path: str, dpi: int = 70) -> str:
    """Lay out, write and close ``fig``; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
