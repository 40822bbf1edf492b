"""A busy or mismatched workdir (issue 13): a second training on a workdir that another holds
stops with one line before writing anything; resuming with other model fields is refused and
leaves ``config.json`` as it was."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from folkrnn_jax.training import loop as loop_lib
from folkrnn_jax.training import rundir
from tests.conftest import ROOT, fixture_config, fixture_path, run_module


def test_second_lock_is_refused_and_released(tmp_path):
    first = rundir.lock_workdir(str(tmp_path))
    with pytest.raises(rundir.WorkdirBusyError, match=f"process {os.getpid()}"):
        rundir.lock_workdir(str(tmp_path))
    first.close()
    rundir.lock_workdir(str(tmp_path)).close()  # free again once the holder is gone


def test_second_training_on_a_busy_workdir_is_one_line(tmp_path):
    workdir = tmp_path / "run"
    held = rundir.lock_workdir(str(workdir))  # stands for a first training still running
    try:
        proc = run_module(
            "experiments.train", "--config=experiments/configs/tiny.py", f"--workdir={workdir}",
            f"--config.data_path={fixture_path('data_v2_excerpt.txt')}", "--config.num_train_steps=2",
            timeout=300,
        )
    finally:
        held.close()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "in use by another training" in errors[0]
    assert sorted(os.listdir(workdir)) == [rundir.LOCK_FILE]  # nothing of the second run


def _train_args(workdir) -> list[str]:
    return [
        "--config=experiments/configs/tiny.py", f"--workdir={workdir}",
        f"--config.data_path={fixture_path('data_v2_excerpt.txt')}", "--config.batch_size=4",
        "--config.valid_fraction=0.2", "--config.num_layers=1", "--config.hidden_size=16",
        "--config.num_train_steps=300", "--config.log_every_steps=10", "--config.eval_every_steps=50",
        "--config.checkpoint_every_steps=100",
    ]


@pytest.mark.slow  # two training processes, beyond the default suite's budget; the lock alone is tested above
def test_two_real_trainings_on_one_workdir(tmp_path):
    """Two real training processes: the second, started while the first trains, exits with one
    line naming the workdir and its lock; the first finishes with every step logged once."""
    workdir = tmp_path / "run"
    metrics_path = workdir / "metrics.jsonl"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([sys.executable, "-m", "experiments.train", *_train_args(workdir)], cwd=ROOT,
                                 stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.time() + 900
        # Training has begun once the first metrics line is written (the lock comes before it).
        while not (metrics_path.exists() and metrics_path.read_text().strip()):
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
            assert time.time() < deadline, "the first training wrote no metrics in 900 s"
            time.sleep(0.05)
        # Held still mid-run, so that it is certainly running (and holding the lock) for as
        # long as the second takes to start, however slow the machine.
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = run_module("experiments.train", *_train_args(workdir), timeout=900)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert first.wait(timeout=900) == 0, (tmp_path / "first.log").read_text()[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr[-2000:]
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert str(workdir) in errors[0] and rundir.LOCK_FILE in errors[0] and f"process {first.pid}" in errors[0]
    steps = [json.loads(line)["step"] for line in metrics_path.read_text().splitlines()]
    assert len(steps) == len(set(steps)) and steps == sorted(steps) and steps[-1] == 300
    assert "300" in os.listdir(workdir / "checkpoints")


def test_model_mismatch_on_resume_keeps_config(tmp_path):
    workdir = str(tmp_path)
    config = fixture_config(fixture_path("data_v2_excerpt.txt"), num_train_steps=2, hidden_size=16,
                            log_every_steps=1)
    loop_lib.train_and_evaluate(config, workdir)
    before = open(os.path.join(workdir, rundir.CONFIG_FILE)).read()
    changed = fixture_config(fixture_path("data_v2_excerpt.txt"), num_train_steps=4, hidden_size=32,
                             log_every_steps=1)
    with pytest.raises(loop_lib.InputError, match="hidden_size was 16, now 32"):
        loop_lib.train_and_evaluate(changed, workdir)
    assert open(os.path.join(workdir, rundir.CONFIG_FILE)).read() == before
    assert json.loads(before)["hidden_size"] == 16


def test_torn_metrics_line_does_not_block_resume(tmp_path):
    from folkrnn_jax.training import metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\nnot json\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    writer = metrics.MetricsWriter(str(tmp_path), restored_step=2)
    writer.write({"step": 3, "loss": 1.0})
    assert [r["step"] for r in metrics.read_metrics(str(tmp_path))] == [1, 2, 3]
    path.write_text(path.read_text() + "\x00\x00garbage")
    assert [r["step"] for r in metrics.read_metrics(str(tmp_path))] == [1, 2, 3]
