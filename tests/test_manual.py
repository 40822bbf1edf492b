"""The manual (docs/manual.md) and the README checked against the code.

- Every Python name written in backticks with dots (``folkrnn_jax.generate.sampler.sample_tunes``,
  ``jax.vmap``) resolves: its module imports and the rest are attributes. Short forms such as
  ``sample.sample_tunes`` fail: the manual writes names in full.
- Every config field of every preset is named in the manual.
- Every command (fenced blocks, and inline code starting ``python -m``): ``--help`` of its
  module runs and lists every flag the command uses (``--config.FIELD`` among the config
  fields of the command's ``--config``; ``--noFLAG`` for a boolean).
- ``-m slow``: every command runs, shrunk by one rule (``shrink``): ``--num_tunes`` 2; training
  ``--config.num_train_steps=4`` on a fresh temporary workdir; ``DIR``, ``RUN``, ``WORKDIR`` and
  ``runs/NAME`` become folders under a temporary ``runs/`` holding a tiny trained ``runs/tiny``
  (with ``samples.abc``); outputs go to the temporary folder; input files the reader brings
  (``tunes.txt``, ``folkrnn_v2.pkl``, ``my_tunes/``, ``tunes.csv``) become the test fixtures (the
  pickle written from the tiny run); optional ``[...]`` parts are left out; evaluate checks
  4 training tunes with abc2midi and skips the validation pass on the shipped model; the
  composer is started and stopped once it answers. What cannot run here is in ``NOT_RUN`` with
  the reason.
"""

import importlib
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from tests.conftest import ROOT, fixture_path

DOCS = ("docs/manual.md", "README.md")
# Extensions of file names written in backticks (`config.json`): not Python names.
FILE_EXTENSIONS = {"json", "jsonl", "md", "abc", "txt", "py", "png", "csv", "npz", "pkl", "mid", "svg", "pdf",
                   "safetensors", "toml", "sh", "html", "js", "css", "sqlite", "mp3", "whl"}
# Optional packages the manual names without needing them installed.
OPTIONAL_MODULES = {"torch"}
# Steps of the set-up commands that the test suite does not run (with why).
NOT_RUN = {
    "apt-get": "installs system packages",
    "python -m pip": "installs packages (tests/test_package.py installs the package)",
    "python -m pytest": "the test suite itself",
    "python -m ruff": "the linter (.ci/run runs it)",
    "python -m experiments.NAME": "a pattern: NAME stands for a command",
    "python -m benchmarks.": "benchmarks take minutes by design (their --help is checked)",
    "--source=oneills1850": "converts three music21 collections with abc2midi checks (minutes)",
}


def _read(doc: str) -> str:
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        return f.read()


def _prose(text: str) -> str:
    """The text outside fenced blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def dotted_names(text: str) -> list[str]:
    """Backticked dotted Python names (``a.b.c`` or ``a.b.c(...)``), file names left out."""
    names = []
    for span in re.findall(r"`([^`\n]+)`", _prose(text)):
        match = re.fullmatch(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(\(.*\))?", span.strip())
        if match and match.group(1).rsplit(".", 1)[-1] not in FILE_EXTENSIONS:
            names.append(match.group(1))
    return names


# Entry-point packages: their modules define absl flags when imported (twice is an error), so
# they are found, not imported.
ENTRY_POINT_PACKAGES = ("experiments", "benchmarks")


def _find_entry_point(parts: list[str]):
    import importlib.util

    for cut in range(len(parts), 0, -1):
        spec = importlib.util.find_spec(".".join(parts[:cut]))
        if spec is not None:
            rest = parts[cut:]
            if rest:
                with open(spec.origin, encoding="utf-8") as f:
                    source = f.read()
                if len(rest) > 1 or not re.search(rf"^(def|class) {rest[0]}\b|^{rest[0]} =", source, re.M):
                    raise AttributeError(f"{spec.name} has no {'.'.join(rest)}")
            return spec
    raise ModuleNotFoundError(f"no module {'.'.join(parts)}")


def resolve(name: str):
    """The object a dotted name names: the longest importable module prefix, then attributes
    (for ``experiments``/``benchmarks``: the module's spec)."""
    parts = name.split(".")
    if parts[0] in ENTRY_POINT_PACKAGES:
        return _find_entry_point(parts)
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and not module_name.startswith(error.name):
                raise  # the module exists but one of its imports is missing
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(f"no module {parts[0]!r}: write the full name (folkrnn_jax....)")


def commands(text: str) -> list[str]:
    """Command lines: each line of the fenced blocks (continuations joined, comments cut)
    and inline code starting with ``python -m``; ``&&`` splits a line into its steps."""
    lines = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line:
                lines.append(line)
    lines += [span.strip() for span in re.findall(r"`(python -m [^`]+)`", re.sub(r"\s*\n\s*", " ", _prose(text)))]
    steps = []
    for line in lines:
        steps += [step.strip() for step in line.split("&&")]
    return steps


def _all_commands() -> list[tuple[str, str]]:
    return [(doc, command) for doc in DOCS for command in commands(_read(doc))]


def _skip_reason(command: str) -> str | None:
    if "..." in command.replace("[--config.FIELD=VALUE ...]", ""):
        return "a pattern with '...', not a command"
    for start, reason in NOT_RUN.items():
        if command.startswith(start) or start in command:
            return reason
    return None


def parse(command: str) -> tuple[str, list[str], list[str]]:
    """``(module, required args, optional args)`` of a ``[nice -n N] python -m MODULE ...``
    command; ``[...]`` groups are optional."""
    words = shlex.split(command)
    if words[:1] == ["nice"]:
        words = words[3:]
    words = [w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w)]  # VAR=value before the command
    assert words[:2] == ["python", "-m"], command
    module, required, optional, depth = words[2], [], [], 0
    for word in words[3:]:
        opened = word.startswith("[")
        depth += word.count("[") if opened else 0
        clean = word.lstrip("[").rstrip("]") if opened or word.endswith("]") else word
        (optional if depth > 0 else required).append(clean)
        if word.endswith("]"):
            depth = max(0, depth - 1)
    return module, required, optional


def _runnable() -> list[tuple[str, str]]:
    return [(doc, c) for doc, c in _all_commands() if c.startswith(("python -m", "nice "))
            and not c.startswith(("python -m pip", "python -m pytest", "python -m ruff", "python -m experiments.NAME"))]


# ---------------------------------------------------------------------------------------------
# Default suite: names, config fields, --help of every command


def test_the_docs_have_commands_and_names():
    found = _all_commands()
    assert len(found) >= 20 and any("experiments.export_model" in c for _, c in found)
    assert any("experiments.book" in c for _, c in found) and any("experiments.serve" in c for _, c in found)
    assert "sample.sample_tunes" in " ".join(dotted_names("`sample.sample_tunes(model)` and `config.json`"))
    assert dotted_names("`config.json` `run.report.md`") == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_dotted_name_resolves(doc):
    failures = []
    for name in dotted_names(_read(doc)):
        if name.split(".")[0] in OPTIONAL_MODULES:
            continue
        try:
            resolve(name)
        except (ImportError, AttributeError) as error:
            failures.append(f"{name}: {error}")
    assert not failures, f"{doc}: names that do not resolve: {failures}"


def test_short_names_are_refused():
    with pytest.raises(ModuleNotFoundError):
        resolve("sample.sample_tunes")
    assert resolve("folkrnn_jax.generate.sampler.sample_tunes").__name__ == "sample_tunes"


def test_every_config_field_is_documented():
    import runpy

    manual = _read("docs/manual.md")
    folder = os.path.join(ROOT, "experiments", "configs")
    missing = set()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py") and name != "__init__.py":
            fields = runpy.run_path(os.path.join(folder, name))["get_config"]().keys()
            missing |= {f for f in fields if f"`{f}`" not in manual and f"--config.{f}=" not in manual}
    assert not missing, f"config fields the manual does not name: {sorted(missing)}"


def _help(module: str, config: str | None) -> str:
    args = [sys.executable, "-m", module, "--help"] + ([f"--config={config}"] if config else [])
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    # The experiments exit 0 after --help (experiments.cli); the benchmarks use plain absl,
    # which prints the same help and exits 1.
    expected = (0, 1) if module.startswith("benchmarks.") else (0,)
    assert result.returncode in expected and "--" in result.stdout, f"{module} --help: {result.stderr[-1500:]}"
    return result.stdout


def _flag_names(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0][2:] for a in args if a.startswith("--")]


def test_every_command_help_runs_and_knows_its_flags():
    """One ``--help`` per module (and ``--config`` file): exit 0, and every flag a command of
    the docs uses is listed (config fields from the ``--config`` the command names)."""
    by_help: dict[tuple[str, str | None], set[str]] = {}
    for doc, command in _runnable():
        module, required, optional = parse(command)
        args = required + optional
        config = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
        by_help.setdefault((module, config), set()).update((doc + ": " + name) for name in _flag_names(args))
    problems = []
    for (module, config), uses in sorted(by_help.items(), key=str):
        text = _help(module, config)
        known = set(re.findall(r"--([\w.]+)", text))
        for use in sorted(uses):
            doc, name = use.split(": ", 1)
            if name == "config.FIELD" or name.startswith("help"):
                continue
            plain = name[2:] if name.startswith("no") and name[2:] in known else name
            if plain not in known:
                problems.append(f"{doc}: {module} --{name}")
    assert not problems, f"flags that --help does not list: {problems}"


def test_train_help_lists_the_named_configs_fields():
    tiny = _help("experiments.train", "experiments/configs/tiny.py")
    assert "defaults of experiments/configs/tiny.py" in tiny and "--config.hidden_size=128" in tiny
    # The other spelling of the flag (a space instead of '=') names the same file.
    result = subprocess.run([sys.executable, "-m", "experiments.train", "--help", "--config",
                             "experiments/configs/tiny.py"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "--config.hidden_size=128" in result.stdout, result.stdout[-1500:]


# ---------------------------------------------------------------------------------------------
# -m slow: every command runs, shrunk


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A temporary folder with ``runs/tiny`` (the tiny preset trained 4 steps, with
    ``samples.abc``), the reader's input files, and the original's pickle of that run."""
    from folkrnn_jax.data import v2_format
    from folkrnn_jax.model import legacy
    from folkrnn_jax.music import abc_out
    from tests.conftest import run_module

    base = tmp_path_factory.mktemp("manual")
    tiny = base / "runs" / "tiny"
    result = run_module("experiments.train", "--config=experiments/configs/tiny.py", f"--workdir={tiny}",
                        *TRAIN_SHRINK, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    tunes = v2_format.read_v2_file(fixture_path("data_v2_excerpt.txt"))
    (tiny / "samples.abc").write_text(abc_out.tunes_to_abc(tunes[:3]))
    inputs = {
        "tunes.txt": fixture_path("data_v2_excerpt.txt"),
        "my_tunes/": fixture_path("raw_abc"),
        "tunes.csv": None,
        "folkrnn_v2.pkl": str(base / "folkrnn_v2.pkl"),
    }
    csv = [os.path.join(fixture_path("raw_abc"), f) for f in os.listdir(fixture_path("raw_abc")) if f.endswith(".csv")]
    inputs["tunes.csv"] = csv[0] if csv else fixture_path("raw_abc")
    from folkrnn_jax.training import runs

    model, params, _ = runs.load_run(str(tiny))
    params = dict(params)
    for j in range(model.num_layers):  # the original learned its initial states; these are zero
        for name in ("cell_init", "hid_init"):
            params.setdefault(f"lstm_{j}_{name}", np.zeros(model.hidden_size, np.float32))
    legacy.save_folkrnn_pickle(inputs["folkrnn_v2.pkl"], params)
    return {"base": base, "inputs": inputs}


TRAIN_SHRINK = ("--config.num_train_steps=4", "--config.log_every_steps=2", "--config.eval_every_steps=4",
                "--config.checkpoint_every_steps=4")


def shrink(module: str, args: list[str], sandbox: dict, index: int) -> list[str]:
    """The module docstring's rule, applied to one command's required arguments."""
    base, inputs = sandbox["base"], sandbox["inputs"]
    fresh = module in ("experiments.train", "experiments.sweep", "experiments.import_folkrnn")
    out = []
    for arg in args:
        name, _, value = arg.partition("=")
        if name in ("--workdir",):
            if fresh:
                value = str(base / f"fresh_{index}")
            elif value in ("DIR", "RUN", "WORKDIR") or value.startswith("runs/"):
                value = str(base / "runs" / ("tiny" if value in ("DIR", "RUN", "WORKDIR") else value[5:]))
        elif name in ("--output", "--output_dir"):
            value = str(base / f"out_{index}" / value.replace("/", "_"))
        elif name == "--num_tunes":
            value = "2"
        elif name.startswith("--config.num_train_steps"):
            continue  # TRAIN_SHRINK sets it
        elif value in inputs:
            value = inputs[value]
        elif value.startswith("runs/"):
            value = str(base / value)
        out.append(f"{name}={value}" if value or arg.endswith("=") else name)
    if module in ("experiments.train", "experiments.sweep"):
        out += TRAIN_SHRINK
    if module == "experiments.evaluate":
        out += ["--abc2midi_training_tunes=4", "--num_tunes=2"]
        if not any(a.startswith("--workdir") for a in out):
            out.append("--novalidation")  # the shipped model's validation pass takes minutes
    return out


def _serve(args: list[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "experiments.serve", f"--port={port}", *args], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            assert process.poll() is None, process.stdout.read()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    assert response.status == 200
                    return
            except OSError:
                time.sleep(2)
        raise AssertionError("the composer did not answer within 300 s")
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("doc,command", _runnable(), ids=lambda x: x if len(x) < 60 else x[:60])
def test_every_command_runs_shrunk(doc, command, sandbox):
    reason = _skip_reason(command)
    if reason:
        pytest.skip(reason)
    if "../shared/" in command and not os.path.isdir(os.path.join(ROOT, "..", "shared", "data")):
        pytest.skip("needs ../shared/data")
    module, required, _ = parse(command)
    index = _runnable().index((doc, command))
    args = shrink(module, required, sandbox, index)
    if module == "experiments.serve":
        _serve(args)
        return
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, f"{command}\nran as {args}\n{result.stderr[-3000:]}"
