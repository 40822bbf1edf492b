"""The metrics file of a run: one JSON object per line in ``WORKDIR/metrics.jsonl``."""

from __future__ import annotations

import json
import os

from absl import logging

from folkrnn_jax import files


def _parse(line: str) -> dict | None:
    """One record, or None for a line that is not one (torn by a kill mid-write, or garbage)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        return None
    return record


class MetricsWriter:
    """Appends one JSON object per line to ``workdir/metrics.jsonl``. On resume, records
    past the restored step are dropped, since the resumed run writes them again."""

    def __init__(self, workdir: str, restored_step: int):
        self.path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(self.path):
            with open(self.path, errors="replace") as f:
                lines = [line for line in f if line.strip()]
            records = [_parse(line) for line in lines]
            bad = sum(record is None for record in records)
            if bad:
                # A torn last line is what a kill during a write leaves: not worth stopping for.
                logging.warning("%s: dropping %d line(s) that are not metrics records", self.path, bad)
            kept = [json.dumps(r) + "\n" for r in records if r is not None and r["step"] <= restored_step]
            files.atomic_write_text(self.path, "".join(kept))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path, errors="replace") as f:
        records = [_parse(line) for line in f if line.strip()]
    return [r for r in records if r is not None]


def epochs_without_improvement(records: list[dict], metric: str) -> tuple[float, float]:
    """The best value of ``metric`` among the records and how many epochs have passed since it.

    Args:
      records: metrics records (``step``, ``epoch``, ...), oldest first.
      metric: the key to watch, lower is better (e.g. ``valid_loss`` or
        ``valid_loss/data_v2_first5000``).

    Returns:
      ``(best, epochs)``: the lowest value seen (inf if none) and the epochs from the record
      that holds it to the newest record that has the metric (0 if none).
    """
    seen = [(r["epoch"], r[metric]) for r in records if metric in r and "epoch" in r]
    if not seen:
        return float("inf"), 0.0
    best_epoch, best = min(seen, key=lambda item: (item[1], item[0]))
    return best, seen[-1][0] - best_epoch
