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


def run_module(module: str, *args: str, timeout: int = 600):
    """Run ``python -m module args`` from the repository root and return the completed process."""
    import subprocess

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env=env,
    )
