"""Model folders: export, exact round trip, and refusal of damaged or mismatched files; the
shipped default model loads and is what commands use when given no run directory."""

import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from folkrnn_jax.model import folkrnn, weights
from folkrnn_jax.training import runs
from tests.conftest import ROOT, fixture_config, fixture_path


@pytest.fixture
def exported(tmp_path):
    config = fixture_config(fixture_path("data_v2_excerpt.txt"))
    model = folkrnn.model_from_config(config)
    params = model.init(jax.random.PRNGKey(3), jnp.zeros((1, 2), jnp.int32))["params"]
    directory = str(tmp_path / "model")
    weights.export_model(directory, params, config, {"step": 7})
    return directory, params, config


def test_round_trip_is_exact(exported):
    directory, params, _ = exported
    _, loaded, _, manifest = weights.load_model(directory)
    assert manifest["step"] == 7
    want, got = weights.flat_params(params), weights.flat_params(loaded)
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_array_equal(want[name], got[name])
    model, params_again, step = runs.load_run(directory)
    assert step == 7 and model.hidden_size == 128


def test_one_flipped_bit_is_refused(exported):
    directory = exported[0]
    path = os.path.join(directory, weights.WEIGHTS_FILE)
    blob = bytearray(open(path, "rb").read())
    blob[-5] ^= 0x40  # one bit of one float
    open(path, "wb").write(bytes(blob))
    with pytest.raises(weights.WeightsError, match="checksum mismatch"):
        weights.load_model(directory)


def test_wrong_shape_is_refused_even_with_a_matching_checksum(exported, tmp_path):
    _, params, config = exported
    config.hidden_size = 64  # the config now builds a smaller model than the weights
    weights.export_model(str(tmp_path / "other"), params, config, {"step": 7})
    with pytest.raises(weights.WeightsError, match=r"tensor lstm_0_bias is float32\[512\], the model of config.json needs float32\[256\]"):
        weights.load_model(str(tmp_path / "other"))


def test_non_finite_weights_are_refused(exported, tmp_path):
    _, params, config = exported
    params = jax.tree_util.tree_map(lambda x: x, params)
    params["output"]["bias"] = params["output"]["bias"].at[3].set(jnp.nan)
    weights.export_model(str(tmp_path / "nan"), params, config, {"step": 7})
    with pytest.raises(weights.WeightsError, match="output/bias holds NaN"):
        weights.load_model(str(tmp_path / "nan"))


def test_shipped_model_loads_and_is_small():
    model, params, config, manifest = weights.load_model()
    assert folkrnn.count_params(params) == manifest["num_params"]
    assert config.num_layers == model.num_layers == 3
    size = os.path.getsize(os.path.join(weights.DEFAULT_MODEL_DIR, weights.WEIGHTS_FILE))
    assert size < 25 * 2**20


def _sample(*flags):
    return subprocess.run(
        [sys.executable, "-m", "experiments.sample", "--num_tunes=2", "--max_length=60", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )


def test_damaged_shipped_copy_gives_one_line_error(tmp_path):
    copy = tmp_path / "default"
    shutil.copytree(weights.DEFAULT_MODEL_DIR, copy)
    path = copy / weights.WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:1000])  # a truncated download
    result = _sample(f"--workdir={copy}", f"--output={tmp_path / 'tunes.abc'}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "checksum mismatch" in errors[0] and str(path) in errors[0]


def test_sample_without_workdir_uses_the_shipped_model(tmp_path):
    result = _sample(f"--output={tmp_path / 'tunes.abc'}")
    assert result.returncode == 0, result.stderr[-2000:]
    text = (tmp_path / "tunes.abc").read_text()
    manifest = weights.read_manifest(weights.DEFAULT_MODEL_DIR)
    assert text.count("X:") == 2 and f"step {manifest['step']}" in text


def test_export_model_refuses_to_overwrite_a_folder_without_overwrite(trained_run, tmp_path):
    from tests.conftest import run_module

    target = tmp_path / "new" / "model"
    result = run_module("experiments.export_model", f"--workdir={trained_run}", f"--output={target}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"note: creating the folder {target}" in result.stderr
    written = (target / weights.WEIGHTS_FILE).read_bytes()
    result = run_module("experiments.export_model", f"--workdir={trained_run}", f"--output={target}")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "--overwrite" in errors[0], result.stderr[-2000:]
    assert (target / weights.WEIGHTS_FILE).read_bytes() == written  # left as it was
    (target / weights.WEIGHTS_FILE).write_bytes(b"damaged")
    runs.export_run(trained_run, str(target), overwrite=True)
    assert (target / weights.WEIGHTS_FILE).read_bytes() == written


def test_a_run_goes_on_from_an_exported_model_folder(tmp_path):
    from folkrnn_jax.training import loop as loop_lib
    from folkrnn_jax.training import metrics as metrics_lib

    config = fixture_config(fixture_path("data_v2_excerpt.txt"), num_train_steps=8, hidden_size=32,
                            log_every_steps=2, checkpoint_every_steps=4)
    first = tmp_path / "first"
    loop_lib.train_and_evaluate(config, str(first))
    folder = str(tmp_path / "model")
    runs.export_run(str(first), folder)
    # The folder carries the run's history up to the exported step.
    assert metrics_lib.read_metrics(folder) == metrics_lib.read_metrics(str(first))

    second = tmp_path / "second"
    assert runs.run_from_model(folder, str(second)) == 8
    with pytest.raises(runs.InputError, match="already holds checkpoints"):
        runs.run_from_model(folder, str(second))
    # The run starts from the folder's weights, exactly.
    _, exported_params, _ = runs.load_run(folder)
    _, started_params, step = runs.load_run(str(second))
    want, got = weights.flat_params(exported_params), weights.flat_params(started_params)
    assert step == 8 and want.keys() == got.keys()
    for name in want:
        np.testing.assert_array_equal(want[name], got[name])
    config.num_train_steps = 12
    state = loop_lib.train_and_evaluate(config, str(second))
    assert int(state.step) == 12
    records = metrics_lib.read_metrics(str(second))
    assert [r["step"] for r in records] == [2, 3, 4, 6, 8, 9, 10, 12]  # every 2 steps, epochs of 3
    assert np.isfinite(records[-1]["valid_loss"])
