"""The metrics file of a run: one JSON object per line in ``WORKDIR/metrics.jsonl``."""

from __future__ import annotations

import json
import os

from folkrnn_jax import files


class MetricsWriter:
    """Appends one JSON object per line to ``workdir/metrics.jsonl``. On resume, records
    past the restored step are dropped, since the resumed run writes them again."""

    def __init__(self, workdir: str, restored_step: int):
        self.path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(self.path):
            with open(self.path) as f:
                kept = [line for line in f if line.strip() and json.loads(line)["step"] <= restored_step]
            files.atomic_write_text(self.path, "".join(kept))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
