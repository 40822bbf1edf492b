"""The shipped model's recipe, ``experiments/configs/v2_default.py``, trains on the real v2 tunes
(read from ``../shared/data``, never from the repository) and resumes exactly."""

import json
import os

import pytest

from folkrnn_jax.training import metrics as metrics_lib
from tests.conftest import ROOT, SHARED_DATA, run_module


def _train(workdir, steps, *extra):
    result = run_module(
        "experiments.train", "--config=experiments/configs/v2_default.py", f"--workdir={workdir}",
        f"--config.num_train_steps={steps}", "--config.log_every_steps=1",
        "--config.checkpoint_every_steps=2", "--config.eval_every_steps=0",
        # Short tunes only, so that three short runs compile few batch shapes and evaluate a
        # small validation split; architecture, data and optimiser are the recipe's.
        "--config.max_tune_length=100", *extra,
    )
    return result


def test_v2_recipe_trains_and_resumes(tmp_path):
    if not os.path.exists(os.path.join(SHARED_DATA, "data_v2_first5000.txt")):
        pytest.skip("../shared/data/data_v2_first5000.txt is not present (the v2 tunes live outside the repository)")
    for result in (_train(tmp_path / "split", 2), resumed := _train(tmp_path / "split", 3), _train(tmp_path / "whole", 3)):
        assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from the checkpoint at step 2" in resumed.stderr

    split = metrics_lib.read_metrics(str(tmp_path / "split"))
    whole = {r["step"]: r for r in metrics_lib.read_metrics(str(tmp_path / "whole"))}
    assert [r["step"] for r in split] == [1, 2, 3]  # no step lost or written twice
    for record in split:
        assert record["train_loss"] == pytest.approx(whole[record["step"]]["train_loss"], abs=1e-6)
    config = json.loads((tmp_path / "split" / "config.json").read_text())
    assert (config["num_layers"], config["hidden_size"], config["dropout_rate"]) == (3, 512, 0.5)
    assert config["data_path"] == "../shared/data/data_v2_first5000.txt"


def test_missing_v2_tunes_say_where_to_get_them(tmp_path):
    # From a folder with no ../shared beside it, as on a fresh clone of the repository alone.
    checkout = tmp_path / "clone"
    checkout.mkdir()
    os.symlink(os.path.join(ROOT, "experiments"), checkout / "experiments")
    os.symlink(os.path.join(ROOT, "folkrnn_jax"), checkout / "folkrnn_jax")
    result = run_module(
        "experiments.train", "--config=experiments/configs/v2_default.py", f"--workdir={tmp_path / 'run'}",
        cwd=str(checkout),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "data file not found: ../shared/data/data_v2_first5000.txt" in lines[0]
    assert "github.com/IraKorshunova/folk-rnn" in lines[0] and "data/README.md" in lines[0]
