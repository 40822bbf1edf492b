"""The ``folkrnn-*`` commands that ``pip install -e .`` puts on the PATH (pyproject.toml's
``[project.scripts]``): each runs an ``experiments`` module exactly as ``python -m
experiments.NAME`` does, with the same flags, help and messages.

folkrnn-sample --num_tunes=10 --output=out/tunes.abc     # = python -m experiments.sample ...
folkrnn-analyze bars --num_tunes=8                       # = python -m experiments.analyze_bars ...
"""

import runpy
import sys

ANALYSES = ("bars", "embeddings", "forcing", "gram", "record", "softmax")


def _run_module(name: str) -> None:
    """Run ``experiments.NAME`` as ``__main__`` (``sys.argv[0]`` named after it, so absl's
    flags and ``--help`` read as with ``python -m``)."""
    sys.argv[0] = f"experiments.{name}"
    runpy.run_module(f"experiments.{name}", run_name="__main__", alter_sys=True)


def train() -> None:
    _run_module("train")


def sample() -> None:
    _run_module("sample")


def serve() -> None:
    _run_module("serve")


def evaluate() -> None:
    _run_module("evaluate")


def book() -> None:
    _run_module("book")


def score() -> None:
    _run_module("score")


def export_model() -> None:
    _run_module("export_model")


def prepare_data() -> None:
    _run_module("prepare_data")


def import_folkrnn() -> None:
    _run_module("import_folkrnn")


def import_model() -> None:
    _run_module("import_model")


def sweep() -> None:
    _run_module("sweep")


def plot_curves() -> None:
    _run_module("plot_curves")


def analyze() -> None:
    """``folkrnn-analyze KIND [flags]``: one of the ``experiments/analyze_*.py`` commands."""
    if len(sys.argv) < 2 or sys.argv[1] not in ANALYSES:
        print(f"usage: folkrnn-analyze {{{','.join(ANALYSES)}}} [flags]  (--help after the kind lists them)",
              file=sys.stderr)
        sys.exit(2)
    kind = sys.argv.pop(1)
    _run_module(f"analyze_{kind}")
