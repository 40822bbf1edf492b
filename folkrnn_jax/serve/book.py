"""Typesetting collections of tunes as a printed book (abcm2ps, then ghostscript's ps2pdf).

The book is one ABC file with abcm2ps formatting directives: a title on the first page,
page numbers in the footer, each tune numbered in its title ("1. ..."), as the folk-rnn
session books were.
"""

from __future__ import annotations

import re
from typing import Sequence

from folkrnn_jax.serve import engine

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
    """One ABC file for the book: the formatting header, the book's title, then the tunes
    numbered from 1 (``X:`` and a "N. " before each title).

    Args:
        tunes_abc: one ABC tune each (``X:``, ``T:``...).
        title: the book's title, printed on the first page.
        subtitle: a line under it (e.g. the model and seed).
        show_notes: print the tunes' ``N:`` lines under each tune.

    Returns:
        The ABC text.
    """
    header = _FORMAT if not show_notes else _FORMAT.replace("%%writefields N 0", "%%writefields N 1")
    parts = [header, f"%%center {_escape(title)}"]
    if subtitle:
        parts.append(f"%%center {_escape(subtitle)}")
    parts.append("%%vskip 0.6cm\n")
    for number, text in enumerate(tunes_abc, start=1):
        text = re.sub(r"^X:.*$", f"X:{number}", text, count=1, flags=re.MULTILINE)
        text = re.sub(r"^T:", f"T:{number}. ", text, count=1, flags=re.MULTILINE)
        parts.append(text.rstrip("\n") + "\n")
    return "\n".join(parts)


def _escape(text: str) -> str:
    # abcm2ps reads a directive to the end of the line: keep the title on one line.
    return " ".join(text.split())


def typeset(tunes_abc: Sequence[str], output: str, title: str, subtitle: str = "",
            show_notes: bool = False) -> str:
    """Write the book as a PDF at ``output`` (see ``book_abc``).

    Returns:
        ``output``.

    Raises:
        ToolMissingError: abcm2ps or ps2pdf is not installed.
    """
    return engine.typeset_pdf(book_abc(tunes_abc, title, subtitle, show_notes), output)
