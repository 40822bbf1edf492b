import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SHARED_DATA = os.path.join(ROOT, "..", "shared", "data")


def fixture_path(name: str) -> str:
    return os.path.join(FIXTURES, name)


@pytest.fixture
def excerpt_path() -> str:
    return fixture_path("data_v2_excerpt.txt")


@pytest.fixture
def first5000_path() -> str:
    path = os.path.join(SHARED_DATA, "data_v2_first5000.txt")
    if not os.path.exists(path):
        pytest.skip("../shared/data/data_v2_first5000.txt is not present")
    return path


def fixture_config(excerpt_path: str, **overrides):
    """The tiny preset on the fixture tunes (batch 4, 20% validation), with overrides."""
    from experiments.configs import tiny

    config = tiny.get_config()
    config.data_path = excerpt_path
    config.batch_size = 4
    config.valid_fraction = 0.2
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def train_fixture_run(workdir, **overrides) -> str:
    """Train a small model on the fixture tunes into ``workdir`` (for module-scoped fixtures of
    tests that need a trained run) and return the workdir."""
    from folkrnn_jax.training import loop as loop_lib

    config = fixture_config(fixture_path("data_v2_excerpt.txt"), **overrides)
    loop_lib.train_and_evaluate(config, str(workdir))
    return str(workdir)


def run_module(module: str, *args: str, timeout: int = 600, cwd: str = ROOT):
    """Run ``python -m module args`` (from the repository root unless ``cwd`` says otherwise)
    and return the completed process."""
    import subprocess

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env=env,
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> str:
    """A model trained for 60 steps on the fixture tunes (2 x 64), shared by the sampling tests."""
    return train_fixture_run(tmp_path_factory.mktemp("run"), num_train_steps=60, hidden_size=64,
                             log_every_steps=30)
