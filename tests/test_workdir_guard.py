"""A busy or mismatched workdir (issue 13): a second training on a workdir that another holds
stops with one line before writing anything; resuming with other model fields is refused and
leaves ``config.json`` as it was."""

import json
import os

import pytest

from folkrnn_jax.training import checkpoints
from folkrnn_jax.training import loop as loop_lib
from tests.conftest import fixture_config, fixture_path, run_module


def test_second_lock_is_refused_and_released(tmp_path):
    first = checkpoints.lock_workdir(str(tmp_path))
    with pytest.raises(checkpoints.WorkdirBusyError, match=f"process {os.getpid()}"):
        checkpoints.lock_workdir(str(tmp_path))
    first.close()
    checkpoints.lock_workdir(str(tmp_path)).close()  # free again once the holder is gone


def test_second_training_on_a_busy_workdir_is_one_line(tmp_path):
    workdir = tmp_path / "run"
    held = checkpoints.lock_workdir(str(workdir))  # stands for a first training still running
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
    assert sorted(os.listdir(workdir)) == [checkpoints.LOCK_FILE]  # nothing of the second run


def test_model_mismatch_on_resume_keeps_config(tmp_path):
    workdir = str(tmp_path)
    config = fixture_config(fixture_path("data_v2_excerpt.txt"), num_train_steps=2, hidden_size=16,
                            log_every_steps=1)
    loop_lib.train_and_evaluate(config, workdir)
    before = open(os.path.join(workdir, checkpoints.CONFIG_FILE)).read()
    changed = fixture_config(fixture_path("data_v2_excerpt.txt"), num_train_steps=4, hidden_size=32,
                             log_every_steps=1)
    with pytest.raises(loop_lib.InputError, match="hidden_size was 16, now 32"):
        loop_lib.train_and_evaluate(changed, workdir)
    assert open(os.path.join(workdir, checkpoints.CONFIG_FILE)).read() == before
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
