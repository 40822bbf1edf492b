"""Every dotted ``folkrnn_jax`` name written in the docs, help texts, docstrings and comments
names something that exists: a module that imports, or an attribute of one."""

import importlib
import os
import re

from tests.conftest import ROOT

# A dotted name; one followed by "/" is a format tag with a version (model.json's "format").
DOTTED = re.compile(r"\bfolkrnn_jax(?:\.[A-Za-z_]\w*)+(?![\w/])")
SOURCE_FOLDERS = ("folkrnn_jax", "experiments", "benchmarks", "tests", "docs", "models", "data")
SKIPPED_FOLDERS = {"__pycache__", "node_modules", "static", "fixtures", "golden"}


def _text_files() -> list[str]:
    """The repository's Python sources and Markdown documents."""
    paths = [os.path.join(ROOT, name) for name in os.listdir(ROOT) if name.endswith(".md")]
    for top in SOURCE_FOLDERS:
        for folder, subfolders, names in os.walk(os.path.join(ROOT, top)):
            subfolders[:] = [s for s in subfolders if s not in SKIPPED_FOLDERS and not s.startswith(".")]
            paths += [os.path.join(folder, n) for n in names if n.endswith((".py", ".md"))]
    return sorted(paths)


def _dotted_names() -> dict[str, list[str]]:
    """Dotted name -> the places ("path:line") that write it."""
    found: dict[str, list[str]] = {}
    for path in _text_files():
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                for name in DOTTED.findall(line):
                    found.setdefault(name, []).append(f"{os.path.relpath(path, ROOT)}:{number}")
    return found


def resolves(name: str) -> bool:
    """Whether ``name`` is an importable module or an attribute path below one."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and module_name.startswith(error.name):
                continue  # no such module: try the name one part shorter
            raise  # a module that exists but cannot import: a real failure, with its traceback
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_resolves_tells_names_apart():
    assert resolves("folkrnn_jax.model.lstm.ScanOptions")
    assert resolves("folkrnn_jax.music")
    # Written so that the walk below does not read them as names in this file.
    assert not resolves("folkrnn_jax" + ".model.lstm.no_such_function")
    assert not resolves("folkrnn_jax" + ".no_such_module.anything")


def test_every_dotted_name_resolves():
    names = _dotted_names()
    assert len(names) > 20  # the walk really read the documents
    stale = {name: places for name, places in names.items() if not resolves(name)}
    assert not stale, "names that do not resolve: " + "; ".join(
        f"{name} ({', '.join(places)})" for name, places in sorted(stale.items())
    )
