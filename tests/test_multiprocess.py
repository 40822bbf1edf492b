"""Two training processes joined by ``jax.distributed`` on loopback (one CPU device each, one
shared workdir) train to the losses of one process with two devices; after ``kill -9`` of
either process, starting both again resumes from the last checkpoint (issue 21)."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from folkrnn_jax.training import metrics as metrics_lib
from tests.conftest import ROOT, fixture_path

STEPS = 8


def _args(workdir, steps=STEPS) -> list[str]:
    return [
        "-m", "experiments.train", "--config=experiments/configs/tiny.py", f"--workdir={workdir}",
        f"--config.data_path={fixture_path('data_v2_excerpt.txt')}", "--config.batch_size=4",
        "--config.valid_fraction=0.2", "--config.num_layers=1", "--config.hidden_size=16",
        "--config.batching=bucketed", f"--config.num_train_steps={steps}", "--config.log_every_steps=1",
        "--config.eval_every_steps=4", "--config.checkpoint_every_steps=2",
    ]


def _env(devices: int) -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices), PYTHONUNBUFFERED="1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_pair(workdir, log_dir, tag):
    port = _free_port()
    procs = []
    for index in range(2):
        log = open(os.path.join(log_dir, f"{tag}{index}.log"), "w")
        procs.append(subprocess.Popen(
            [sys.executable, *_args(workdir), f"--config.coordinator_address=127.0.0.1:{port}",
             "--config.num_processes=2", f"--config.process_id={index}"],
            cwd=ROOT, env=_env(1), stdout=log, stderr=subprocess.STDOUT,
        ))
    return procs


def _wait(procs, timeout=900):
    deadline = time.time() + timeout
    for proc in procs:
        proc.wait(timeout=max(1, deadline - time.time()))
    return [proc.returncode for proc in procs]


def _losses(workdir) -> dict:
    return {r["step"]: r for r in metrics_lib.read_metrics(str(workdir))}


@pytest.fixture(scope="module")
def one_process_two_devices(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("single") / "run"
    proc = subprocess.run([sys.executable, *_args(workdir)], cwd=ROOT, env=_env(2), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "data parallel over 2 devices (1 processes)" in proc.stderr
    return _losses(workdir)


def _assert_same(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected) == list(range(1, STEPS + 1))
    for step, record in expected.items():
        assert got[step]["train_loss"] == pytest.approx(record["train_loss"], abs=1e-5), step
        if "valid_loss" in record:
            assert got[step]["valid_loss"] == pytest.approx(record["valid_loss"], abs=1e-5), step


@pytest.mark.slow  # three to five JAX processes, each compiling; minutes on 2 cores
def test_two_processes_match_one_process_with_two_devices(tmp_path, one_process_two_devices):
    workdir = tmp_path / "run"
    codes = _wait(_start_pair(workdir, tmp_path, "p"))
    logs = [(tmp_path / f"p{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "data parallel over 2 devices (2 processes)" in logs[0]
    _assert_same(_losses(workdir), one_process_two_devices)
    assert os.path.exists(workdir / ".lock") and os.path.exists(workdir / ".lock.1")
    assert "done: " in logs[0] and "done: " not in logs[1]  # one summary, from process 0


@pytest.mark.slow
@pytest.mark.parametrize("victim", [0, 1])
def test_kill_either_process_then_restart_both_resumes(tmp_path, one_process_two_devices, victim):
    workdir = tmp_path / "run"
    procs = _start_pair(workdir, tmp_path, "first")
    checkpoint = workdir / "checkpoints" / "4" / "commit_success.txt"
    deadline = time.time() + 900
    while not checkpoint.exists() and time.time() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    procs[victim].send_signal(signal.SIGKILL)
    # The survivor waits on a collective that never completes (or its coordinator goes):
    # a cluster's scheduler would end it; here it is killed too.
    time.sleep(1)
    procs[1 - victim].send_signal(signal.SIGKILL)
    _wait(procs)
    assert checkpoint.exists()
    assert not (workdir / "checkpoints" / str(STEPS)).exists(), "the run finished before it was killed"

    codes = _wait(_start_pair(workdir, tmp_path, "second"))
    logs = [(tmp_path / f"second{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "resumed from the checkpoint at step" in logs[0] and "resumed from the checkpoint at step" in logs[1]
    _assert_same(_losses(workdir), one_process_two_devices)
