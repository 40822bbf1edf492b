"""Thin wrappers over the ABC command-line tools this project uses (Debian ``abcmidi`` and
``abcm2ps``), and a MIDI note reader (``mido``).

- ``abc_to_midi(abc_text)`` runs ``abc2midi`` in a temporary folder and returns the MIDI bytes.
- ``midi_notes(midi_bytes)`` lists ``(start_tick, pitch, duration_ticks)`` sorted by onset.
- ``render_svg(abc_text, out_dir)`` runs ``abcm2ps -g`` and returns the SVG paths.
- ``check_tunes(abc_tunes)`` runs ``abc2midi`` once per tune, a few at a time, and sorts
  each tune's messages into errors, bar-length warnings, "not a power of 2", "denominator"
  and other warnings (``Abc2MidiCheck``); ``summarize_checks`` counts the tunes of each kind.

Each raises :class:`ToolMissingError` (with the package to install) when its tool is absent,
and :class:`ToolError` with the tool's own message when it fails.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import os
import re
import shutil
import subprocess
import tempfile
from typing import Sequence

from folkrnn_jax.errors import UserError


class ToolMissingError(UserError, RuntimeError):
    """A command-line tool this wrapper needs is not installed."""


class ToolError(UserError, RuntimeError):
    """A command-line tool ran and failed."""


PACKAGES = {"abc2midi": "abcmidi", "abc2abc": "abcmidi", "abcm2ps": "abcm2ps", "gs": "ghostscript"}


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


# The kinds of abc2midi message ``classify_abc2midi_output`` tells apart. "error" is any other
# "Error" line (or a crash, a timeout, no MIDI written); "other" any other "Warning" line.
ABC2MIDI_KINDS = ("error", "bar_length", "power_of_2", "denominator", "other")
# abc2midi's bar check: "Track 0 Bar 3 has 15/2 time units while the time signature has 4".
_BAR_LENGTH = re.compile(r"Bar \d+ has [\d/]+ time units")
_MESSAGE = re.compile(r"^(Error|Warning)\b")


def classify_abc2midi_output(text: str) -> dict[str, list[str]]:
    """Sort abc2midi's ``Error ...``/``Warning ...`` lines by kind (``ABC2MIDI_KINDS``).

    "not a power of 2" and "note length denominator is zero or less" are errors abc2midi
    reports for durations such as ``C/3``; they get their own kinds (not "error") so that a
    report can count them apart. Other lines (version, "writing MIDI file") are ignored.

    Args:
      text: abc2midi's stdout and stderr for one tune.

    Returns:
      Each kind of ``ABC2MIDI_KINDS`` mapped to its message lines, in order.
    """
    found: dict[str, list[str]] = {kind: [] for kind in ABC2MIDI_KINDS}
    for line in text.splitlines():
        line = line.strip()
        match = _MESSAGE.match(line)
        if not match:
            continue
        if "not a power of 2" in line:
            kind = "power_of_2"
        elif "denominator" in line:
            kind = "denominator"
        elif _BAR_LENGTH.search(line):
            kind = "bar_length"
        else:
            kind = "error" if match.group(1) == "Error" else "other"
        found[kind].append(line)
    return found


@dataclasses.dataclass(frozen=True)
class Abc2MidiCheck:
    """What abc2midi said about one tune.

    ``messages`` maps each kind of ``ABC2MIDI_KINDS`` to its lines; ``failure`` is set when
    abc2midi crashed, timed out or wrote no MIDI (and then "error" holds that reason too).
    """

    messages: dict[str, list[str]]
    returncode: int | None
    failure: str = ""

    @property
    def clean(self) -> bool:
        """abc2midi wrote the MIDI and reported no error of any kind (warnings allowed)."""
        return not (self.failure or self.messages["error"] or self.messages["power_of_2"]
                    or self.messages["denominator"])

    def has(self, kind: str) -> bool:
        return bool(self.messages[kind])


def check_tune(abc_tune: str, timeout: float = 20.0, binary: str | None = None) -> Abc2MidiCheck:
    """Run abc2midi on one ABC tune (one ``X:`` block) in a temporary folder and classify its
    messages (``classify_abc2midi_output``).

    Args:
      abc_tune: the tune's ABC text, headers included.
      timeout: seconds before the run counts as an error.
      binary: the abc2midi path (default: looked up on PATH).

    Returns:
      The tune's ``Abc2MidiCheck``.
    """
    binary = binary or require("abc2midi")
    with tempfile.TemporaryDirectory(prefix="abc2midi_") as folder:
        source = os.path.join(folder, "tune.abc")
        target = os.path.join(folder, "tune.mid")
        with open(source, "w", encoding="utf-8") as f:
            f.write(abc_tune)
        try:
            result = subprocess.run([binary, source, "-o", target], cwd=folder, capture_output=True,
                                    text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            messages = classify_abc2midi_output("")
            messages["error"].append(f"abc2midi took longer than {timeout} s")
            return Abc2MidiCheck(messages, None, "timeout")
        messages = classify_abc2midi_output(result.stdout + "\n" + result.stderr)
        failure = ""
        if result.returncode < 0:
            failure = f"abc2midi crashed (signal {-result.returncode})"
        elif not os.path.exists(target) or os.path.getsize(target) == 0:
            failure = f"abc2midi wrote no MIDI (exit {result.returncode})"
        if failure:
            messages["error"].append(failure)
        return Abc2MidiCheck(messages, result.returncode, failure)


def check_tunes(abc_tunes: Sequence[str], workers: int = 2, timeout: float = 20.0) -> list[Abc2MidiCheck]:
    """``check_tune`` for each tune, ``workers`` abc2midi processes at a time.

    One process per tune, because abc2midi that crashes on one tune of a file drops every
    later tune of it.

    Args:
      abc_tunes: one ABC text per tune.
      workers: abc2midi processes run at once.
      timeout: seconds per tune.

    Returns:
      One ``Abc2MidiCheck`` per tune, in order.
    """
    binary = require("abc2midi")
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(lambda text: check_tune(text, timeout, binary), abc_tunes))


def summarize_checks(checks: Sequence[Abc2MidiCheck]) -> dict[str, int]:
    """Tune counts: ``tunes``, ``clean`` (no error of any kind), ``failed`` (crash, timeout or
    no MIDI) and, for each kind of ``ABC2MIDI_KINDS``, the tunes with at least one such
    message."""
    summary = {"tunes": len(checks), "clean": sum(c.clean for c in checks),
               "failed": sum(bool(c.failure) for c in checks)}
    for kind in ABC2MIDI_KINDS:
        summary[kind] = sum(c.has(kind) for c in checks)
    return summary
