"""Writing sampled tunes to disk as one ABC file, MIDI files or SVG engravings."""

from __future__ import annotations

import os
from typing import Sequence

from folkrnn_jax import files
from folkrnn_jax.errors import InputError
from folkrnn_jax.music import abc_out, midi, tools


def write_tunes(
    tunes: Sequence[Sequence[str]],
    titles: Sequence[str],
    output: str,
    fmt: str = "abc",
    key: str | None = None,
) -> int:
    """Write tunes as one ABC file (``fmt="abc"``), one ``tune_NNN.mid`` per tune in the folder
    ``output`` (``"midi"``, via abc2midi) or SVG engravings there (``"svg"``, via abcm2ps).
    Without abc2midi, MIDI files come from ``tokens_to_midi`` (mido). Returns the number of
    files written. A missing abcm2ps (svg) raises ``ToolMissingError``."""
    abc_texts = [abc_out.tokens_to_abc(t, index=i + 1, title=titles[i], key=key) for i, t in enumerate(tunes)]
    if fmt == "abc":
        files.atomic_write_text(output, abc_out.tunes_to_abc(tunes, titles, key))
        return 1
    if fmt == "midi":
        use_abc2midi = tools.have("abc2midi")
        os.makedirs(output, exist_ok=True)
        for i, text in enumerate(abc_texts):
            data = tools.abc_to_midi(text) if use_abc2midi else midi.tokens_to_midi(tunes[i], key=key)
            files.atomic_write_bytes(os.path.join(output, f"tune_{i + 1:03d}.mid"), data)
        return len(abc_texts)
    if fmt == "svg":
        return len(tools.render_svg("\n".join(abc_texts), output, stem="tunes"))
    raise InputError(f"unknown output format {fmt!r}: abc, midi or svg")
