"""The golden outputs of ``tests/golden`` (written by ``tests/golden/make_golden.py`` before the
package was reorganised): sampling with fixed seeds, the raw-ABC converter on the fixtures, the
ABC/MIDI writers, structure checks, statistics, and a short training run give the same bytes
and losses."""

import json

import numpy as np
import pytest

from tests.golden import make_golden


def _load(name):
    with open(make_golden.golden_path(name)) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    return make_golden.training_run(str(tmp_path_factory.mktemp("golden_run")))


def test_training_losses_match(short_run):
    losses, _ = short_run
    expected = _load("training.json")
    assert len(losses["train_loss"]) == make_golden.TRAIN_STEPS
    for key in ("train_loss", "learning_rate"):
        np.testing.assert_allclose(losses[key], expected[key], rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(losses["valid"]), np.asarray(expected["valid"]), rtol=0, atol=1e-6)


def test_sampling_matches(short_run):
    _, params = short_run
    assert make_golden.sampling_outputs(params) == _load("sampling.json")


def test_converter_matches():
    with open(make_golden.golden_path("converter.txt"), encoding="utf-8") as f:
        assert make_golden.converter_output() == f.read()


def test_music_outputs_match():
    assert json.loads(json.dumps(make_golden.music_outputs(), default=str)) == _load("music.json")
