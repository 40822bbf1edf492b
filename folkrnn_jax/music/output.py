"""Writing sampled tunes to disk as one ABC file, MIDI files, SVG engravings or MusicXML."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Sequence

from folkrnn_jax import files
from folkrnn_jax.errors import InputError
from folkrnn_jax.music import abc_out, midi, tools

FORMATS = ("abc", "midi", "svg", "musicxml")
EXTENSIONS = {"midi": ".mid", "svg": ".svg", "musicxml": ".musicxml"}


def tune_stem(number: int) -> str:
    """The file name, without extension, of tune ``number`` (from 1) in an output folder:
    ``tune_001``; its ``.abc``, ``.mid`` and ``.svg`` share it."""
    return f"tune_{number:03d}"


def _render_one_svg(abc_text: str, path: str, number: int) -> None:
    """Engrave one tune with abcm2ps into ``path`` (one abcm2ps run per tune, so that a tune
    abcm2ps cannot engrave names itself and does not take the others with it)."""
    with tempfile.TemporaryDirectory(prefix="svg_", dir=os.path.dirname(path)) as folder:
        try:
            made = tools.render_svg(abc_text, folder, stem="tune")
        except tools.ToolError as error:
            raise tools.ToolError(f"tune {number}: {error}") from None
        # abcm2ps -g writes one SVG per tune: tune001.svg.
        os.replace(made[0], path)


def tune_title(step: int, seed: int, number: int, constrained: bool, key: str | None, best_of: int = 1) -> str:
    """The ``T:`` line of a sampled tune, saying how it was drawn (``experiments.sample`` and the
    composer write the same one): ``folkrnn_jax step 3750 seed 0 tune 1, constrained, in D``, or
    ``... tune 7, constrained, best of 4, in D``.

    Args:
      step: the model's training step.
      seed, number: the sampling seed and the tune's number under it (from 1); for a best-of
        tune, the number of the candidate kept (plain sampling's tune of that number).
      constrained: whether the structure constraint shaped the tune.
      key: the root the tune is written in (None: C, as sampled).
      best_of: how many candidates the tune was chosen from (1: plain sampling).
    """
    best = f", best of {best_of}" if best_of > 1 else ""
    return (f"folkrnn_jax step {step} seed {seed} tune {number}, {'constrained' if constrained else 'free'}{best}, "
            f"in {key or 'C'}")


def abc_to_musicxml(abc_text: str) -> bytes:
    """One ABC tune as a MusicXML document (music21 reads the ABC and writes the score), for
    MuseScore, Finale and Sibelius users.

    Args:
        abc_text: one complete ABC tune (``abc_out.tokens_to_abc``).

    Returns:
        The MusicXML file's bytes (UTF-8).

    Raises:
        ToolError: music21 could not read the tune.
    """
    import music21  # slow to import: only when MusicXML is asked for

    try:
        score = music21.converter.parse(abc_text, format="abc")
    except Exception as error:  # music21 raises many kinds on ABC it cannot read
        raise tools.ToolError(f"music21 could not read the tune: {error}") from None
    return music21.musicxml.m21ToXml.GeneralObjectExporter(score).parse()


def write_tunes(
    tunes: Sequence[Sequence[str]],
    titles: Sequence[str],
    output: str,
    fmt: str = "abc",
    key: str | None = None,
) -> int:
    """Write sampled tunes to disk.

    ``fmt="abc"`` writes one ABC file ``output``. ``"midi"`` and ``"svg"`` write, per tune,
    into the folder ``output``, ``tune_001.mid`` (abc2midi, or ``tokens_to_midi`` via mido
    without it), ``tune_001.svg`` (abcm2ps) or ``tune_001.musicxml`` (music21), and beside it
    the tune's ABC ``tune_001.abc``, the text the MIDI, engraving or score was made from.

    Args:
        tunes: v2 token sequences.
        titles: one ``T:`` title per tune.
        output: the ABC file, or the folder for MIDI and SVG.
        fmt: one of ``FORMATS``.
        key: a root to transpose the tunes to (``"D"``), keeping their modes; None: C.

    Returns:
        The number of files written.

    Raises:
        InputError: an unknown ``fmt``.
        ToolMissingError: ``"svg"`` without abcm2ps.
        ToolError: abcm2ps could not engrave a tune, or music21 read it (the message names it).
    """
    if fmt == "abc":
        files.atomic_write_text(output, abc_out.tunes_to_abc(tunes, titles, key))
        return 1
    if fmt not in FORMATS:
        raise InputError(f"unknown output format {fmt!r}: {', '.join(FORMATS)}")
    use_abc2midi = fmt == "midi" and tools.have("abc2midi")
    if fmt == "svg":
        tools.require("abcm2ps")
    os.makedirs(output, exist_ok=True)
    for i, tune in enumerate(tunes):
        text = abc_out.tokens_to_abc(tune, index=i + 1, title=titles[i], key=key)
        stem = os.path.join(output, tune_stem(i + 1))
        files.atomic_write_text(stem + ".abc", text)
        if fmt == "midi":
            data = tools.abc_to_midi(text) if use_abc2midi else midi.tokens_to_midi(tune, key=key)
            files.atomic_write_bytes(stem + ".mid", data)
        elif fmt == "musicxml":
            try:
                files.atomic_write_bytes(stem + EXTENSIONS[fmt], abc_to_musicxml(text))
            except tools.ToolError as error:
                raise tools.ToolError(f"tune {i + 1}: {error}") from None
        else:
            _render_one_svg(text, stem + ".svg", i + 1)
    return 2 * len(tunes)


def notes_lines(model: str, step: int, tune: int, settings: Any) -> list[str]:
    """The ``N:`` lines a saved or printed tune carries: model, seed, temperature, prefix and the
    rest, so the file alone says how to draw the tune again. Each user text stays on its line.

    Args:
        model: the model's name; step: its checkpoint step.
        tune: the tune's number under the seed (from 1).
        settings: a ``folkrnn_jax.generate.options.SamplingSettings`` (with ``best_of`` when the
            tune was chosen among candidates).
    """
    prefix = " ".join(str(settings.prefix).split()) or "(none)"
    best_of = getattr(settings, "best_of", 1)  # the composer's settings have it, the book's do not
    return [
        f"N:model {' '.join(model.split())} (step {step})",
        f"N:seed {settings.seed}, tune {tune}" + (f", best of {best_of}" if best_of > 1 else ""),
        f"N:temperature {settings.temperature:g}, top_k {settings.top_k}, top_p {settings.top_p:g}, "
        f"constrain {'on' if settings.constrain else 'off'}, max_length {settings.max_length}",
        f"N:meter {settings.meter or 'sampled'}, mode {settings.mode or 'sampled'}, key {settings.key or 'C'}",
        f"N:prefix {prefix}",
    ]


def with_notes(abc_text: str, lines: Sequence[str], title: str | None = None, index: int | None = None) -> str:
    """``abc_text`` with ``lines`` after its ``T:`` line (and a new title, on one line, or
    ``X:``)."""
    out = []
    for line in abc_text.splitlines():
        if line.startswith("X:") and index is not None:
            line = f"X:{index}"
        if line.startswith("T:"):
            out.append(f"T:{' '.join(title.split())}" if title is not None else line)
            out.extend(lines)
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def midi_bytes(abc_text: str, tokens: Sequence[str], key: str | None) -> bytes:
    """MIDI of the tune: abc2midi on the ABC, or the library's mido writer without abc2midi."""
    if tools.have("abc2midi"):
        return tools.abc_to_midi(abc_text)
    return midi.tokens_to_midi(tokens, key=key)


# A tune's likely dance from its meter, as the session books' readers would name it.
DANCES = {"M:4/4": "Reel", "M:6/8": "Jig", "M:3/4": "Waltz", "M:2/4": "Polka", "M:9/8": "Slip jig",
          "M:12/8": "Slide", "M:3/2": "Hornpipe"}
MODE_NAMES = {"K:Cmaj": "major", "K:Cmin": "minor", "K:Cdor": "dorian", "K:Cmix": "mixolydian"}


def describe_tune(tokens: Sequence[str], key: str | None = None) -> str:
    """A plain title from the tune's header: ``"Jig in D dorian"`` (meter and mode as sampled,
    root ``key`` or C)."""
    meter = next((t for t in tokens if t.startswith("M:")), "M:4/4")
    mode = next((t for t in tokens if t.startswith("K:")), "K:Cmaj")
    return f"{DANCES.get(meter, 'Tune')} in {key or 'C'} {MODE_NAMES.get(mode, '')}".strip()
