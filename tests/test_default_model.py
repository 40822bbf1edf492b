"""The shipped model's recipe, ``experiments/configs/default_model.py``, trains from a clean
checkout on the committed data (real v2 tunes and the folk corpus) and resumes exactly."""

import json

import pytest

from folkrnn_jax.training import metrics as metrics_lib
from tests.conftest import run_module


def _train(workdir, steps):
    result = run_module(
        "experiments.train", "--config=experiments/configs/default_model.py", f"--workdir={workdir}",
        f"--config.num_train_steps={steps}", "--config.log_every_steps=1",
        "--config.checkpoint_every_steps=2", "--config.eval_every_steps=0",
        # Short tunes only, so that three short runs compile few batch shapes and evaluate a
        # small validation split; architecture, data mix and optimiser are the recipe's.
        "--config.max_tune_length=120",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_default_recipe_trains_and_resumes(tmp_path):
    _train(tmp_path / "split", 2)
    resumed = _train(tmp_path / "split", 3)
    assert "resumed from the checkpoint at step 2" in resumed.stderr
    _train(tmp_path / "whole", 3)

    split = metrics_lib.read_metrics(str(tmp_path / "split"))
    whole = {r["step"]: r for r in metrics_lib.read_metrics(str(tmp_path / "whole"))}
    assert [r["step"] for r in split] == [1, 2, 3]  # no step lost or written twice
    for record in split:
        assert record["train_loss"] == pytest.approx(whole[record["step"]]["train_loss"], abs=1e-6)
    last = split[-1]
    # Both sources are held out and reported on their own.
    assert {"valid_loss/data_v2_first5000", "valid_loss/folk_corpus"} <= set(last)
    config = json.loads((tmp_path / "split" / "config.json").read_text())
    assert (config["num_layers"], config["data_path"]) == (3, "data/data_v2_first5000.txt,data/folk_corpus.txt")
