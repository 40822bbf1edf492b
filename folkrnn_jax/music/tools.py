"""Thin wrappers over the ABC command-line tools this project uses (Debian ``abcmidi`` and
``abcm2ps``), and a MIDI note reader (``mido``).

- ``abc_to_midi(abc_text)`` runs ``abc2midi`` in a temporary folder and returns the MIDI bytes.
- ``midi_notes(midi_bytes)`` lists ``(start_tick, pitch, duration_ticks)`` sorted by onset.
- ``render_svg(abc_text, out_dir)`` runs ``abcm2ps -g`` and returns the SVG paths.

Each raises :class:`ToolMissingError` (with the package to install) when its tool is absent,
and :class:`ToolError` with the tool's own message when it fails.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from typing import Sequence

from folkrnn_jax.errors import UserError


class ToolMissingError(UserError, RuntimeError):
    """A command-line tool this wrapper needs is not installed."""


class ToolError(UserError, RuntimeError):
    """A command-line tool ran and failed."""


PACKAGES = {"abc2midi": "abcmidi", "abc2abc": "abcmidi", "abcm2ps": "abcm2ps"}


def require(tool: str) -> str:
    """Path of ``tool`` on PATH, or :class:`ToolMissingError` naming the package to install."""
    path = shutil.which(tool)
    if path is None:
        package = PACKAGES.get(tool, tool)
        raise ToolMissingError(
            f"{tool} is not installed (on Debian/Ubuntu: apt-get install {package})"
        )
    return path


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def _run(command: Sequence[str], cwd: str, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise ToolError(f"{command[0]} took longer than {timeout} s") from error


def abc_to_midi(
    abc_text: str,
    tune_number: int | None = None,
    options: Sequence[str] = (),
    timeout: float = 30.0,
) -> bytes:
    """MIDI file bytes for one tune of ``abc_text`` (the first, or the ``X:`` ``tune_number``).

    ``options`` go to abc2midi as they are, e.g. ``("-NGRA", "-NGUI")`` to leave out grace
    notes and chord-symbol accompaniment.
    """
    binary = require("abc2midi")
    with tempfile.TemporaryDirectory(prefix="abc2midi_") as folder:
        source = os.path.join(folder, "tune.abc")
        target = os.path.join(folder, "tune.mid")
        with open(source, "w", encoding="utf-8") as f:
            f.write(abc_text)
        command = [binary, source]
        if tune_number is not None:
            command.append(str(tune_number))
        command += ["-o", target, "-silent", *options]
        result = _run(command, folder, timeout)
        if not os.path.exists(target) or os.path.getsize(target) == 0:
            message = (result.stdout + result.stderr).strip()
            raise ToolError(f"abc2midi wrote no MIDI (exit {result.returncode}): {message[-2000:]}")
        with open(target, "rb") as f:
            return f.read()


def render_svg(abc_text: str, out_dir: str, stem: str = "tune", timeout: float = 60.0) -> list[str]:
    """Engrave ``abc_text`` with ``abcm2ps -g`` into ``out_dir``; return the SVG paths (one
    per page/tune, ``STEM001.svg``...)."""
    binary = require("abcm2ps")
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="abcm2ps_") as folder:
        source = os.path.join(folder, f"{stem}.abc")
        with open(source, "w", encoding="utf-8") as f:
            f.write(abc_text)
        result = _run([binary, "-g", "-O", os.path.join(folder, stem), source], folder, timeout)
        made = sorted(glob.glob(os.path.join(folder, f"{stem}*.svg")))
        if not made:
            message = (result.stdout + result.stderr).strip()
            raise ToolError(f"abcm2ps wrote no SVG (exit {result.returncode}): {message[-2000:]}")
        paths = []
        for path in made:
            target = os.path.join(out_dir, os.path.basename(path))
            shutil.move(path, target)
            paths.append(target)
        return paths
