"""Hyperparameter sweeps: a grid or a random search over config fields, one run per workdir.

A sweep file defines ``get_sweep()`` returning either

    {"grid": {"hidden_size": [32, 64], "learning_rate": [1e-3, 3e-3]}, "fixed": {...}}

(every combination, in the order given), or

    {"random": {"learning_rate": {"log_uniform": [1e-4, 1e-2]}, "hidden_size": [64, 128],
                "dropout_rate": {"uniform": [0.0, 0.5]}, "num_layers": {"int": [1, 3]}},
     "num_runs": 8, "seed": 0}

(``num_runs`` draws; a list is a uniform choice). ``fixed`` (optional) sets fields in every run.
Each run trains in ``WORKDIR/run_NAME`` with its resolved ``config.json``; a run is finished
when its ``final_metrics.json`` exists and names a checkpoint step that is present, and is
then skipped. Unfinished runs resume from their latest checkpoint. After every run the summary
is rewritten: ``WORKDIR/summary.csv`` and ``WORKDIR/summary.md``, best validation loss first.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import itertools
import json
import math
import os
import re
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from folkrnn_jax import files
from folkrnn_jax.errors import InputError, MissingFileError
from folkrnn_jax.training import loop, metrics

FINAL_METRICS = "final_metrics.json"


def load_sweep(path: str) -> dict:
    """Import a sweep file and return its ``get_sweep()``."""
    if not os.path.exists(path):
        raise MissingFileError(f"sweep file not found: {path}")
    spec = importlib.util.spec_from_file_location("folkrnn_sweep_file", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:  # not UTF-8, or not Python: the file's fault, shown in one line
        raise InputError(f"{path}: line {error.lineno}: {error.msg}") from None
    if not hasattr(module, "get_sweep"):
        raise InputError(f"{path}: a sweep file must define get_sweep()")
    return module.get_sweep()


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_name(overrides: dict) -> str:
    text = "_".join(f"{k}={_format(v)}" for k, v in overrides.items()) or "base"
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", text)


def _draw(rng: np.random.RandomState, spec: Any) -> Any:
    if isinstance(spec, (list, tuple)):
        value = spec[rng.randint(len(spec))]
        return value.item() if hasattr(value, "item") else value
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, (low, high)), = spec.items()
        if kind == "uniform":
            return float(rng.uniform(low, high))
        if kind == "log_uniform":
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        if kind == "int":
            return int(rng.randint(low, high + 1))
    raise InputError(
        f"random sweep value {spec!r}: use a list (choice), {{'uniform': [a, b]}}, "
        "{'log_uniform': [a, b]} or {'int': [a, b]}"
    )


def expand(sweep: dict) -> list[tuple[str, dict]]:
    """The runs of a sweep as (name, overrides), in order."""
    fixed = dict(sweep.get("fixed", {}))
    runs = []
    if "grid" in sweep:
        keys = list(sweep["grid"])
        for values in itertools.product(*(sweep["grid"][k] for k in keys)):
            overrides = dict(zip(keys, values))
            runs.append((run_name(overrides), {**fixed, **overrides}))
    elif "random" in sweep:
        rng = np.random.RandomState(sweep.get("seed", 0))
        for i in range(int(sweep.get("num_runs", 1))):
            overrides = {k: _draw(rng, spec) for k, spec in sweep["random"].items()}
            runs.append((f"{i:03d}_{run_name(overrides)}", {**fixed, **overrides}))
    else:
        raise InputError("a sweep needs a 'grid' or a 'random' entry")
    names = [name for name, _ in runs]
    if len(set(names)) != len(names):
        raise InputError(f"the sweep expands to duplicate runs: {names}")
    return runs


def resolve_config(base: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(base.to_dict())
    for key, value in overrides.items():
        if key not in config:
            raise InputError(f"sweep field {key!r} is not a config field")
        current = config[key]
        if isinstance(current, float) and isinstance(value, int):
            value = float(value)
        config[key] = value
    return config


def is_finished(run_dir: str) -> bool:
    path = os.path.join(run_dir, FINAL_METRICS)
    if not os.path.exists(path):
        return False
    with open(path) as f:
        final = json.load(f)
    return os.path.isdir(os.path.join(run_dir, "checkpoints", str(final["step"])))


def final_metrics(run_dir: str) -> dict:
    records = metrics.read_metrics(run_dir)
    valid = [r for r in records if "valid_loss" in r]
    trained = [r for r in records if "train_loss" in r]
    out = {"step": records[-1]["step"] if records else 0}
    if trained:
        out["final_train_loss"] = trained[-1]["train_loss"]
        out["tokens_per_s"] = trained[-1].get("tokens_per_s")
    if valid:
        out["final_valid_loss"] = valid[-1]["valid_loss"]
        best = min(valid, key=lambda r: r["valid_loss"])
        out["best_valid_loss"] = best["valid_loss"]
        out["best_step"] = best["step"]
    return out


def write_summary(workdir: str, runs: list[tuple[str, dict]]) -> list[dict]:
    """Rewrite summary.csv and summary.md from the runs' final metrics, best first."""
    rows = []
    for name, overrides in runs:
        path = os.path.join(workdir, f"run_{name}", FINAL_METRICS)
        final = {}
        if os.path.exists(path):
            with open(path) as f:
                final = json.load(f)
        rows.append({"run": name, **overrides, "status": "finished" if final else "pending", **final})
    rows.sort(key=lambda r: (r.get("best_valid_loss") is None, r.get("best_valid_loss") or 0.0, r["run"]))
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, columns)
    writer.writeheader()
    writer.writerows(rows)
    files.atomic_write_text(os.path.join(workdir, "summary.csv"), table.getvalue())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(c, "")) for c in columns) + " |")
    files.atomic_write_text(os.path.join(workdir, "summary.md"), "\n".join(lines) + "\n")
    return rows


def run_sweep(base: ml_collections.ConfigDict, sweep: dict, workdir: str) -> list[dict]:
    """Train every run of the sweep that is not finished; return the summary rows."""
    os.makedirs(workdir, exist_ok=True)
    runs = expand(sweep)
    configs = [(name, resolve_config(base, overrides)) for name, overrides in runs]  # fail early
    files.atomic_write_text(
        os.path.join(workdir, "sweep.json"),
        json.dumps({"sweep": sweep, "runs": [name for name, _ in runs]}, indent=2, default=str),
    )
    for number, (name, config) in enumerate(configs, start=1):
        run_dir = os.path.join(workdir, f"run_{name}")
        if is_finished(run_dir):
            logging.info("sweep: skipping finished run %s (%d/%d)", name, number, len(runs))
            continue
        logging.info("sweep: running %s (%d/%d)", name, number, len(runs))
        loop.train_and_evaluate(config, run_dir)
        final = final_metrics(run_dir)
        files.atomic_write_text(os.path.join(run_dir, FINAL_METRICS), json.dumps(final, indent=2))
        logging.info("sweep: finished %s: %s", name, final)
        write_summary(workdir, runs)
    return write_summary(workdir, runs)
