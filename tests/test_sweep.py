"""A 4-run sweep of tiny models completes, survives being killed, and writes its summary."""

import csv
import os
import subprocess
import sys
import time

import pytest

from folkrnn_jax.training import sweep
from tests.conftest import ROOT


def _args(excerpt_path, workdir):
    return [
        "-m", "experiments.sweep", "--config=experiments/configs/tiny.py",
        "--sweep=experiments/sweeps/tiny_lr_seed.py", f"--workdir={workdir}",
        f"--config.data_path={excerpt_path}", "--config.batch_size=4", "--config.valid_fraction=0.2",
        "--config.hidden_size=16", "--config.num_layers=1", "--config.num_train_steps=20",
        "--config.log_every_steps=10", "--config.eval_every_steps=0", "--config.checkpoint_every_steps=10",
    ]


def test_expand_grid_and_random():
    grid = sweep.expand({"grid": {"a": [1, 2], "b": [0.5]}, "fixed": {"c": 3}})
    assert [o for _, o in grid] == [{"c": 3, "a": 1, "b": 0.5}, {"c": 3, "a": 2, "b": 0.5}]
    spec = {"random": {"lr": {"log_uniform": [1e-4, 1e-2]}, "h": [8, 16]}, "num_runs": 5, "seed": 1}
    runs = sweep.expand(spec)
    assert len(runs) == 5 and runs == sweep.expand(spec)
    assert all(1e-4 <= o["lr"] <= 1e-2 and o["h"] in (8, 16) for _, o in runs)


# About 65 s on 2 cores: the default suite must stay near 10 minutes (run with -m slow).
@pytest.mark.slow
def test_sweep_resumes_after_kill(tmp_path, excerpt_path):
    workdir = tmp_path / "sweep"
    log_path = tmp_path / "first_attempt.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, *_args(excerpt_path, workdir)], cwd=ROOT, stdout=log, stderr=log)
        # Kill it as soon as its first run has finished. No short wall-clock limit: on a loaded
        # 2-core machine start-up and the first compilation alone can take minutes, and the
        # point is the resumption, not the speed (the process ending on its own stops the wait).
        deadline = time.time() + 1500
        finished = []
        while time.time() < deadline and proc.poll() is None:
            finished = list(workdir.glob("run_*/final_metrics.json"))
            if finished:
                break
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    assert finished, f"no run finished before the kill; the sweep's log ends:\n{log_path.read_text()[-3000:]}"
    done = {p.parent.name: p.stat().st_mtime for p in workdir.glob("run_*/final_metrics.json")}
    assert len(done) < 4, "killed too late to test resumption"

    result = subprocess.run(
        [sys.executable, *_args(excerpt_path, workdir)], cwd=ROOT, capture_output=True, text=True, timeout=1500
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name, mtime in done.items():
        assert f"skipping finished run {name[len('run_'):]}" in result.stderr
        assert (workdir / name / "final_metrics.json").stat().st_mtime == mtime
    assert len(list(workdir.glob("run_*/final_metrics.json"))) == 4
    with open(workdir / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(r["status"] == "finished" for r in rows)
    losses = [float(r["best_valid_loss"]) for r in rows]
    assert losses == sorted(losses)
    assert os.path.exists(workdir / "summary.md")
    for row in rows:
        assert (workdir / f"run_{row['run']}" / "config.json").exists()
