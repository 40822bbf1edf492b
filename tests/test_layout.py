"""The package's shape: no import cycles, imports at the top of modules, and a music layer
that works with JAX unimportable."""

import ast
import os
import subprocess
import sys

from tests.conftest import ROOT

PACKAGE = os.path.join(ROOT, "folkrnn_jax")


def _modules() -> dict[str, str]:
    """Dotted module name -> path, for every module of the package."""
    out = {}
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[dotted.removesuffix(".__init__")] = path
    return out


def _imported(tree: ast.AST, modules: dict[str, str]) -> set[str]:
    """The package modules a module imports (``from a.b import c`` counts ``a.b.c`` when that
    is a module, else ``a.b``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("folkrnn_jax"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
    return found


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imported(ast.parse(open(path).read()), modules) - {name} for name, path in modules.items()}
    # Depth-first search for a back edge; the path is reported.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                cycle = stack[stack.index(child):] + [child]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if child not in state:
                visit(child)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_layers_import_downwards_only():
    # music <- data <- model <- training <- generate <- analysis <- serve: a layer imports only the
    # layers before it (and the shared errors/files modules).
    order = ["errors", "files", "music", "data", "model", "training", "generate", "analysis", "serve"]
    modules = _modules()
    for name, path in modules.items():
        parts = name.split(".")
        if len(parts) < 2:
            continue
        layer = order.index(parts[1])
        for imported in _imported(ast.parse(open(path).read()), modules):
            other = imported.split(".")
            if len(other) < 2:
                continue
            assert order.index(other[1]) <= layer, f"{name} imports {imported}, a later layer"


def test_no_imports_inside_functions_without_a_reason():
    offenders = []
    for name, path in _modules().items():
        lines = open(path).read().splitlines()
        tree = ast.parse("\n".join(lines))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    # A comment on the import line says why it is deferred.
                    if "#" not in lines[node.lineno - 1]:
                        offenders.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not offenders, "imports inside functions with no comment saying why:\n" + "\n".join(offenders)


MUSIC_WITHOUT_JAX = r"""
import importlib, pkgutil, sys

class NoJax:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("jax", "jaxlib", "flax", "optax", "orbax"):
            raise ImportError(f"{name} is made unimportable for this test")
        return None

sys.meta_path.insert(0, NoJax())
import folkrnn_jax.music as music
names = [m.name for m in pkgutil.iter_modules(music.__path__)]
for name in names:
    importlib.import_module(f"folkrnn_jax.music.{name}")
assert not any(m.split(".")[0] in ("jax", "flax", "optax") for m in sys.modules), "JAX was imported"

from folkrnn_jax.music import abc_in, abc_out, midi, pitch, rhythm, structure, transpose, vocab
tune = "M:6/8 K:Cdor |: c 2> d 2 e f | (3 a b c' _B 2 :| |1 A 3 G 3 :| |2 G 6 |".split()
assert vocab.encode(tune).shape == (len(tune),)
assert structure.bar_durations(tune)[0] == 6
assert str(structure.part_structure(("M:4/4 K:Cmaj |: " + "c 8 | " * 7 + "c 8 :|").split())) == "AA"
assert abc_out.abc_body_to_tokens(abc_out.body_to_abc(tune[2:])) == tune[2:]
assert "K:Ddor" in abc_out.tokens_to_abc(tune, key="D")
assert transpose.parse_root("Bb")[1] == -2
notes = midi.tune_notes(tune)
assert notes[0][1] == 72 and notes[0][2] == 3
assert midi.midi_notes(midi.tokens_to_midi(tune))[0][1] == 72
assert pitch.token_pitch("E", "K:Cmin") == 63 and pitch.token_pitch("=E", "K:Cmin") == 64
assert rhythm.parse_broken("2>") == (2, ">")
result = abc_in.convert_tune("X:1\nM:6/8\nL:1/8\nK:Ddor\nd2>e fga|\n")
assert result.ok and result.tokens[:2] == ["M:6/8", "K:Cdor"], result
print("music without jax: ok", len(names), "modules")
"""


def test_music_layer_works_without_jax():
    result = subprocess.run(
        [sys.executable, "-c", MUSIC_WITHOUT_JAX], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "music without jax: ok" in result.stdout
