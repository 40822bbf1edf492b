"""The installable package (pyproject.toml): its dependencies agree with requirements.txt's
pins, its data files are packaged, and on a fresh clone ``pip install -e .`` makes
``import folkrnn_jax`` work from another folder and the ``folkrnn-*`` commands run."""

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT


def _pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _pins() -> dict[str, str]:
    """requirements.txt as {normalised name: pinned version}."""
    pins = {}
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                requirement = Requirement(line)
                (specifier,) = requirement.specifier
                assert specifier.operator == "==", f"requirements.txt pins exact versions: {line}"
                pins[_normalise(requirement.name)] = specifier.version
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_pyproject_dependencies_admit_the_pins_of_requirements_txt():
    pyproject = _pyproject()
    project = pyproject["project"]
    build = [r for r in pyproject["build-system"]["requires"] if not r.startswith("setuptools")]
    declared = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"] + build]
    pins = _pins()
    names = {_normalise(r.name) for r in declared}
    assert names == set(pins), f"only in requirements.txt: {set(pins) - names}; only in pyproject: {names - set(pins)}"
    for requirement in declared:
        pinned = pins[_normalise(requirement.name)]
        assert requirement.specifier.contains(pinned), f"{requirement} does not admit the pin {pinned}"


def test_every_data_file_of_the_packages_is_packaged():
    """The files the code opens beside itself (rhythms.json, the composer's page) match a
    package-data pattern, so a wheel carries them too."""
    setuptools = _pyproject()["tool"]["setuptools"]
    patterns = setuptools["package-data"]
    missing = []
    for package_dir in ("folkrnn_jax", "experiments"):
        for folder, dirs, names in os.walk(os.path.join(ROOT, package_dir)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in names:
                path = os.path.relpath(os.path.join(folder, name), ROOT)
                if path.endswith(".py") and os.path.exists(os.path.join(folder, "__init__.py")):
                    continue  # a module of a package: packaged as code
                package, rest = _owning_package(path, patterns)
                if package is None or not any(fnmatch.fnmatch(rest, p) for p in patterns[package]):
                    missing.append(path)
    assert not missing, f"not packaged: {missing[:10]}"


def _owning_package(path: str, patterns: dict) -> tuple[str | None, str]:
    """The deepest package with package-data patterns that holds ``path``, and the path
    relative to it."""
    parts = path.split(os.sep)
    for cut in range(len(parts) - 1, 0, -1):
        package = ".".join(parts[:cut])
        if package in patterns:
            return package, "/".join(parts[cut:])
    return None, path


def test_every_command_has_a_console_script():
    """``python -m experiments.NAME`` is also ``folkrnn-NAME`` (``_`` written ``-``); the
    analyses share ``folkrnn-analyze KIND``."""
    from experiments import console

    scripts = _pyproject()["project"]["scripts"]
    for name, target in scripts.items():
        module, function = target.split(":")
        assert module == "experiments.console" and callable(getattr(console, function)), name
    folder = os.path.join(ROOT, "experiments")
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py") or 'if __name__ == "__main__"' not in open(os.path.join(folder, name)).read():
            continue
        command = name[:-3]
        if command.startswith("analyze_"):
            assert command.removeprefix("analyze_") in console.ANALYSES, command
        else:
            assert "folkrnn-" + command.replace("_", "-") in scripts, command


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory):
    """A fresh clone of this repository installed with ``pip install -e .`` into a new virtual
    environment. The environment sees the packages already installed (requirements.txt), and
    pip runs without build isolation and without resolving dependencies, so the test needs no
    network."""
    if not os.path.isdir(os.path.join(ROOT, ".git")) and not os.path.isfile(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout: nothing to clone")
    base = tmp_path_factory.mktemp("fresh")
    clone = base / "folkrnn_jax"
    subprocess.run(["git", "clone", "-q", ROOT, str(clone)], check=True)
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)], check=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "-e", str(clone)],
                   check=True, cwd=clone, capture_output=True)
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {"python": python, "bin": env_dir / "bin", "clone": clone, "elsewhere": elsewhere, "env": env}


def test_after_pip_install_e_the_package_imports_from_another_folder(fresh_install):
    result = subprocess.run(
        [fresh_install["python"], "-c", "import folkrnn_jax, folkrnn_jax.generate.rhythms as r; "
         "print(folkrnn_jax.__file__); print(len(r.load_table()) > 0)"],
        cwd=fresh_install["elsewhere"], env=fresh_install["env"], capture_output=True, text=True, check=True)
    where, table = result.stdout.split()
    assert where.startswith(str(fresh_install["clone"])), where
    assert table == "True"


@pytest.mark.slow  # about 50 s on the loaded 2-core machine: JAX starts and compiles in a new process
def test_console_script_samples_tunes_from_another_folder(fresh_install):
    script = fresh_install["bin"] / "folkrnn-sample"
    assert shutil.which(str(script)), "pip install -e . did not install folkrnn-sample"
    out = fresh_install["elsewhere"] / "out" / "tunes.abc"
    result = subprocess.run(
        [str(script), "--num_tunes=2", "--max_length=80", "--seed=3", f"--output={out}"],
        cwd=fresh_install["elsewhere"], env=fresh_install["env"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    abc = out.read_text()
    assert abc.count("X:") == 2 and "K:" in abc
    help_text = subprocess.run([str(fresh_install["bin"] / "folkrnn-train"), "--help"], cwd=fresh_install["elsewhere"],
                               env=fresh_install["env"], capture_output=True, text=True, timeout=300)
    assert help_text.returncode == 0 and "--workdir" in help_text.stdout
