"""Typesetting tunes: one tune as SVG, a collection as a printed PDF book (abcm2ps, then
Ghostscript), safely for text that came from a user.

Only ABC music and headers reach abcm2ps: ``abc_for_typesetting`` drops every line that is a
directive (``%%postscript``, ``%%begintext``, ``%%abc-include``...), a comment, or a field that
instructs the typesetter (``I:``, ``U:``, ``m:``...), and ``one_line`` keeps a user's text
(a title, a prefix) on the line it was put on. abcm2ps and Ghostscript run with short timeouts,
Ghostscript with ``-dSAFER``, and at most ``MAX_CONCURRENT`` at a time (``ToolBusyError``
when that many are already waiting).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from typing import Sequence

from folkrnn_jax import files
from folkrnn_jax.music import tools

ABCM2PS_TIMEOUT = 10.0  # seconds: a 50-tune book takes well under one
GHOSTSCRIPT_TIMEOUT = 20.0
MAX_CONCURRENT = 2  # typesetting processes at once
MAX_WAITING = 4  # callers waiting for one of them; more get ToolBusyError

# Header fields a tune may keep; any other ``X:`` line (I: instructions, U: symbol
# definitions, m: macros, F: file names, s: symbol lines...) is dropped.
_HEADERS = set("XTCORMLQKNZSPHBDGAW")
_FIELD = re.compile(r"^([A-Za-z+]):")

_slots = threading.BoundedSemaphore(MAX_CONCURRENT)
_waiting = threading.Semaphore(MAX_CONCURRENT + MAX_WAITING)


class ToolBusyError(tools.ToolError):
    """Too many typesetting runs are in flight or waiting: try again in a moment."""


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines, carriage returns, Unicode line
    separators) as one space: a user's field stays on its own ABC line."""
    return " ".join(str(text).split())


def abc_for_typesetting(abc_text: str) -> str:
    """Only the music and header lines of ``abc_text``: directives (``%%...``), comments,
    stylesheet and instruction fields (``I:``, ``U:``, ``m:``, ``%``...) are dropped, so that
    nothing but notation reaches abcm2ps."""
    kept = []
    for line in abc_text.replace("\r", "\n").split("\n"):
        stripped = line.lstrip()
        if stripped.startswith("%"):
            continue
        field = _FIELD.match(stripped)
        if field and field.group(1) not in _HEADERS:
            continue
        kept.append(line.split("%", 1)[0].rstrip() if not field else line.rstrip())
    return "\n".join(kept).rstrip("\n") + "\n"


def _ps_string(text: str) -> str:
    """``text`` as the inside of a PostScript string: letters, digits and plain punctuation."""
    return re.sub(r"[^A-Za-z0-9 .,;:'!?&+-]", "", one_line(text))[:200]


class _Slot:
    """One of ``MAX_CONCURRENT`` typesetting runs; refuses at once when ``MAX_WAITING`` callers
    already wait, so a burst of exports cannot tie up every worker thread."""

    def __enter__(self) -> None:
        if not _waiting.acquire(blocking=False):
            raise ToolBusyError("typesetting is busy; try again in a moment")
        _slots.acquire()

    def __exit__(self, *exc) -> None:
        _slots.release()
        _waiting.release()


def _run(command: Sequence[str], cwd: str, timeout: float, made: str) -> None:
    name = os.path.basename(command[0])
    try:
        result = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, errors="replace",
                                timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise tools.ToolError(f"{name} took longer than {timeout:g} s") from None
    if result.returncode != 0 or not os.path.exists(made) or os.path.getsize(made) == 0:
        # The tools' messages name the temporary files: the reason is given without them.
        message = (result.stdout + result.stderr).replace(cwd + os.sep, "").strip()[-500:]
        raise tools.ToolError(f"{name} failed (exit {result.returncode}): {message}")


def svg_text(abc_text: str) -> str:
    """The first page of the tune engraved by abcm2ps, as SVG text.

    Raises:
        ToolMissingError: abcm2ps is not installed.
        ToolError: it failed or took too long; ToolBusyError: too many runs at once.
    """
    abcm2ps = tools.require("abcm2ps")
    with _Slot(), tempfile.TemporaryDirectory(prefix="folkrnn_svg_") as folder:
        with open(os.path.join(folder, "tune.abc"), "w", encoding="utf-8") as f:
            f.write(abc_for_typesetting(abc_text))
        made = os.path.join(folder, "tune001.svg")
        _run([abcm2ps, "-g", "-O", os.path.join(folder, "tune"), "tune.abc"], folder, ABCM2PS_TIMEOUT, made)
        with open(made, encoding="utf-8") as f:
            return f.read()


def typeset_pdf(abc_text: str, output: str, title: str = "Tunebook") -> str:
    """Typeset ``abc_text`` (any number of tunes, already holding the book's own formatting
    lines) as a PDF whose Title property is ``title``: abcm2ps to PostScript, then Ghostscript
    with ``-dSAFER``. Writes ``output`` whole or not at all.

    Returns:
        ``output``.

    Raises:
        ToolMissingError: abcm2ps or Ghostscript is missing (the message names the package).
        ToolError: either tool failed or took too long; ToolBusyError: too many runs at once.
    """
    abcm2ps = tools.require("abcm2ps")
    gs = tools.require("gs")
    with _Slot(), tempfile.TemporaryDirectory(prefix="folkrnn_pdf_") as folder:
        with open(os.path.join(folder, "book.abc"), "w", encoding="utf-8") as f:
            f.write(abc_text)
        ps, pdf = os.path.join(folder, "book.ps"), os.path.join(folder, "book.pdf")
        _run([abcm2ps, "book.abc", "-O", ps], folder, ABCM2PS_TIMEOUT, ps)
        # The DOCINFO mark after the document, so it replaces the PostScript's %%Title (a path).
        _run([gs, "-dSAFER", "-dBATCH", "-dNOPAUSE", "-dQUIET", "-sDEVICE=pdfwrite", f"-sOutputFile={pdf}",
              ps, "-c", f"[ /Title ({_ps_string(title)}) /DOCINFO pdfmark"], folder, GHOSTSCRIPT_TIMEOUT, pdf)
        with open(pdf, "rb") as f:
            files.atomic_write_bytes(output, f.read())
    return output


_FORMAT = """%abc-2.1
%%pagewidth 21cm
%%pageheight 29.7cm
%%topmargin 1.5cm
%%botmargin 1.5cm
%%leftmargin 1.8cm
%%rightmargin 1.8cm
%%titlefont Times-Bold 16
%%subtitlefont Times-Italic 12
%%footer "\t$P\t"
%%writefields N 0
"""


def book_abc(tunes_abc: Sequence[str], title: str, subtitle: str = "", show_notes: bool = False) -> str:
    """One ABC file for the book: this module's formatting header, the book's title, then the
    tunes (music and headers only, ``abc_for_typesetting``) numbered from 1 (``X:`` and a
    "N. " before each title).

    Args:
        tunes_abc: one ABC tune each (``X:``, ``T:``...).
        title: the book's title, printed on the first page.
        subtitle: a line under it (e.g. the model and seed).
        show_notes: print the tunes' ``N:`` lines under each tune.

    Returns:
        The ABC text.
    """
    header = _FORMAT if not show_notes else _FORMAT.replace("%%writefields N 0", "%%writefields N 1")
    parts = [header, f"%%center {one_line(title)}"]
    if subtitle:
        parts.append(f"%%center {one_line(subtitle)}")
    parts.append("%%vskip 0.6cm\n")
    for number, text in enumerate(tunes_abc, start=1):
        text = abc_for_typesetting(text)
        text = re.sub(r"^X:.*$", f"X:{number}", text, count=1, flags=re.MULTILINE)
        text = re.sub(r"^T:", f"T:{number}. ", text, count=1, flags=re.MULTILINE)
        parts.append(text.rstrip("\n") + "\n")
    return "\n".join(parts)


def typeset_book(tunes_abc: Sequence[str], output: str, title: str, subtitle: str = "",
                 show_notes: bool = False) -> str:
    """Write the book as a PDF at ``output`` (see ``book_abc``).

    Returns:
        ``output``.
    """
    return typeset_pdf(book_abc(tunes_abc, title, subtitle, show_notes), output, title)
