import json
import logging
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from folkrnn_jax.training import loop as loop_lib
from folkrnn_jax.training import loss as loss_lib
from folkrnn_jax.training import metrics as metrics_lib
from tests.conftest import ROOT, fixture_config, run_module


def test_tiny_preset_learns(tmp_path, excerpt_path):
    config = fixture_config(excerpt_path, num_train_steps=150, log_every_steps=50, eval_every_steps=0)
    loop_lib.train_and_evaluate(config, str(tmp_path))
    records = metrics_lib.read_metrics(str(tmp_path))
    final = [r for r in records if "valid_loss" in r][-1]
    first_valid = next(r for r in records if "valid_loss" in r)
    assert final["step"] == 150
    # Perplexity under a third of the uniform 137: the model has learned the tunes' statistics.
    assert final["valid_loss"] < 0.8 * math.log(137)
    assert first_valid["step"] < final["step"] and final["valid_loss"] < first_valid["valid_loss"] - 0.5
    for key in ("step", "epoch", "train_loss", "learning_rate", "tokens_per_s"):
        assert key in final
    assert final["learning_rate"] == pytest.approx(0.003)
    # The run's config records the LSTM schedule that trained it, not "auto".
    assert json.loads((tmp_path / "config.json").read_text())["lstm_schedule"] in ("layerwise", "wavefront")


def test_loss_ignores_padding():
    import jax.numpy as jnp

    logits = jnp.asarray(np.random.RandomState(0).randn(2, 5, 137), jnp.float32)
    targets = jnp.asarray(np.random.RandomState(1).randint(0, 137, (2, 5)))
    mask = jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], jnp.float32)
    lengths = jnp.asarray([4, 6])
    garbage = logits.at[0, 3:].set(100.0)
    for norm in ("token", "tune"):
        a = loss_lib.sequence_loss(logits, targets, mask, lengths, norm)
        b = loss_lib.sequence_loss(garbage, targets, mask, lengths, norm)
        assert float(a) == pytest.approx(float(b))
    nll = np.asarray(loss_lib.token_nll(logits, targets)) * np.asarray(mask)
    assert float(loss_lib.sequence_loss(logits, targets, mask, lengths, "token")) == pytest.approx(nll.sum() / 8, rel=1e-6)
    per_tune = (nll[0].sum() / 4 + nll[1].sum() / 6) / 2
    assert float(loss_lib.sequence_loss(logits, targets, mask, lengths, "tune")) == pytest.approx(per_tune, rel=1e-6)


def _train_args(excerpt_path, workdir, steps):
    return [
        "--config=experiments/configs/tiny.py", f"--workdir={workdir}",
        f"--config.data_path={excerpt_path}", "--config.batch_size=4", "--config.valid_fraction=0.2",
        f"--config.num_train_steps={steps}", "--config.log_every_steps=1",
        "--config.eval_every_steps=0", "--config.checkpoint_every_steps=5",
    ]


def test_killed_run_resumes_with_identical_losses(tmp_path, excerpt_path):
    steps = 60
    reference = tmp_path / "reference"
    config = fixture_config(
        excerpt_path, num_train_steps=steps, log_every_steps=1, eval_every_steps=0, checkpoint_every_steps=5
    )
    loop_lib.train_and_evaluate(config, str(reference))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.train", *_train_args(excerpt_path, killed, steps)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    first_checkpoint = killed / "checkpoints" / "5" / "commit_success.txt"
    deadline = time.time() + 300
    while not first_checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first_checkpoint.exists()
    assert not (killed / "checkpoints" / str(steps)).exists(), "run finished before it could be killed"

    result = run_module("experiments.train", *_train_args(excerpt_path, killed, steps))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed from the checkpoint at step" in result.stderr

    ref = {r["step"]: r for r in metrics_lib.read_metrics(str(reference))}
    got = {r["step"]: r for r in metrics_lib.read_metrics(str(killed))}
    assert sorted(got) == list(range(1, steps + 1)) == sorted(ref)
    for step in ref:
        assert got[step]["train_loss"] == pytest.approx(ref[step]["train_loss"], abs=1e-6), step
    assert got[steps]["valid_loss"] == pytest.approx(ref[steps]["valid_loss"], abs=1e-6)


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.data_path=no/such/file.txt", "error: data file not found: no/such/file.txt"),
        ("--config.data_path={bad}", "bad.txt:5: tune 2 has 2 lines"),
    ],
)
def test_bad_data_gives_one_line_error(tmp_path, override, message):
    bad = tmp_path / "bad.txt"
    bad.write_text("M:4/4\nK:Cmaj\nC D E |\n\nM:4/4\nC D E |\n")
    result = run_module(
        "experiments.train", "--config=experiments/configs/tiny.py", f"--workdir={tmp_path / 'run'}",
        override.format(bad=bad),
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0]


def test_epochs_without_improvement_counts_from_the_best_record():
    records = [
        {"step": 10, "epoch": 1.0, "valid_loss": 3.0},
        {"step": 15, "epoch": 1.5, "train_loss": 2.0},
        {"step": 20, "epoch": 2.0, "valid_loss": 2.5},
        {"step": 30, "epoch": 3.0, "valid_loss": 2.6},
        {"step": 40, "epoch": 4.0, "valid_loss": 2.5},  # a tie is no improvement
    ]
    assert metrics_lib.epochs_without_improvement(records, "valid_loss") == (2.5, 2.0)
    assert metrics_lib.epochs_without_improvement(records[:3], "valid_loss") == (2.5, 0.0)
    assert metrics_lib.epochs_without_improvement(records, "valid_loss/other") == (float("inf"), 0.0)


def test_early_stopping_ends_a_run_that_stopped_improving(tmp_path, excerpt_path):
    # A learning rate too small to move the weights: the validation loss stays where it is, so
    # the run stops two epochs after its first evaluation instead of running 20 epochs.
    config = fixture_config(
        excerpt_path, num_epochs=20, learning_rate=1e-12, early_stopping_epochs=2,
        log_every_steps=1000, eval_every_steps=0,
    )
    loop_lib.train_and_evaluate(config, str(tmp_path))
    evaluated = [r for r in metrics_lib.read_metrics(str(tmp_path)) if "valid_loss" in r]
    assert [r["epoch"] for r in evaluated] == [1.0, 2.0, 3.0]
    assert (tmp_path / "checkpoints" / str(evaluated[-1]["step"])).is_dir()


def test_console_compiles_estimates_and_summarises(tmp_path, excerpt_path):
    """Issue 25: a "compiling" line, no time-left estimate before a measured post-compile
    step, plain numbers, a closing summary; asked for more steps, a finished run says so;
    the compiled steps land in the persistent cache (issue 21)."""
    workdir, cache = tmp_path / "run", tmp_path / "cache"
    args = [*_train_args(excerpt_path, workdir, 8), "--config.log_every_steps=2", f"--compile_cache={cache}"]
    first = run_module("experiments.train", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    lines = first.stderr.splitlines()
    compiling = [i for i, line in enumerate(lines) if "compiling the train step for batches of 4 x" in line]
    progress = [i for i, line in enumerate(lines) if " step " in f" {line}" and "/8 [" in line]
    assert compiling and progress
    # The first progress line's window compiled: no estimate there.
    assert "left" not in lines[progress[0]]
    assert not any("e+0" in line for line in lines)  # 43,440 tok/s, not 4.344e+04
    assert any(" tok/s" in line for line in lines)
    summary = first.stderr[first.stderr.index("done: "):]
    records = metrics_lib.read_metrics(str(workdir))
    best = min(r["valid_loss"] for r in records if "valid_loss" in r)
    assert f"best {best:.4f}" in summary
    assert f"checkpoint: {workdir / 'checkpoints' / '8'}" in summary
    assert f"python -m experiments.sample --workdir={workdir}" in summary
    assert any(name.startswith("jit_train_step") for name in os.listdir(cache))

    again = run_module("experiments.train", *args)
    assert "has already trained 8 steps, and 8 are asked: nothing to train" in again.stderr
    more = run_module("experiments.train", *args[:-1], "--config.num_train_steps=10", "--compile_cache=off")
    assert more.returncode == 0, more.stderr[-3000:]
    assert "resumed from the checkpoint at step 8" in more.stderr and "training steps 9 to 10" in more.stderr


def test_a_resume_with_other_epoch_lengths_is_told(caplog):
    """A run resumed with other batching (bucketed, 72 steps an epoch, then packed, 57) is warned
    that its epoch count and learning-rate schedule jump; the same batching is not."""
    history = [{"step": 1080, "epoch": 15.0, "valid_loss": 2.147}, {"step": 1100, "epoch": 1100 / 72}]
    with caplog.at_level(logging.WARNING):
        loop_lib.warn_if_epochs_changed(history, 72, 1100)
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        loop_lib.warn_if_epochs_changed(history, 57, 1100)
    assert "were 72 steps long and are now 57" in caplog.text and "epoch 19.30 (was 15.28)" in caplog.text
