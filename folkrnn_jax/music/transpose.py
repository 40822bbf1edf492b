"""Writing v2 token sequences as ABC that musicians can open, in C or transposed to any root.

Transposing v2 tunes to any root.

v2 tunes are in C (``K:Cmaj``, ``K:Cmin``, ``K:Cdor``, ``K:Cmix``). ``tokens_to_abc(tokens,
key="D")`` writes the tune with root D and the tune's own mode (``K:Cdor`` -> ``K:Ddor``,
``K:Cmin`` -> ``K:Dm``), shifted by the interval C -> root taken in -5..+6 semitones (C# Db
D Eb E F F#/Gb up, G Ab A Bb B down). Accidentals follow ABC's bar-scoped semantics: an
accidental holds for that letter and octave until the next bar line; the source tune is read
that way, and the transposed tune writes ``^ _ = ^^ __`` only where the key signature and the
earlier accidentals of the bar would give another pitch. With ``courtesy=True`` (the default)
it also writes one where an accidental on the same letter in another octave earlier in the
bar differs, so that players that carry accidentals across octaves (abc2midi's default) play
the same notes.
"""

from __future__ import annotations

import re
from typing import Sequence

from folkrnn_jax.errors import InputError
from folkrnn_jax.music import vocab
from folkrnn_jax.music.pitch import (
    ACCIDENTAL_TEXT,
    ACCIDENTALS,
    LETTERS,
    NATURAL_SEMITONES,
    NOTE,
    V2_MODE_WORDS,
    diatonic,
    midi_pitch,
    note_name,
    scale_alterations,
)

LETTER_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}
MODE_FIFTHS = {"K:Cmaj": 0, "K:Cmix": -1, "K:Cdor": -2, "K:Cmin": -3}
MODE_SUFFIX = {"K:Cmaj": "", "K:Cmin": "m", "K:Cdor": "dor", "K:Cmix": "mix"}
ROOTS = ("C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A", "A#", "Bb", "B")
_ROOT = re.compile(r"^([A-Ga-g])([#b]?)$")


def parse_root(root: str) -> tuple[int, int, str]:
    """(letter index 0..6 from C, semitone shift from C in -5..+6, spelling) of a root name
    such as ``D``, ``Eb``, ``F#``."""
    match = _ROOT.match(root.strip())
    if not match:
        raise InputError(f"unknown key root {root!r}: one of {', '.join(ROOTS)}")
    letter = match.group(1).upper()
    alter = {"#": 1, "b": -1, "": 0}[match.group(2)]
    index = LETTERS.index(letter)
    semis = (NATURAL_SEMITONES[LETTERS[index]] + alter) % 12
    shift = semis - 12 if semis > 6 else semis
    # The letter step goes the same way as the shift (B below C, Cb... is not offered).
    step = index if NATURAL_SEMITONES[LETTERS[index]] - shift <= 6 else index - 7
    if step > 3 and shift < 0:
        step -= 7
    return step, shift, letter + match.group(2)


ENHARMONIC = {"C#": "Db", "Db": "C#", "D#": "Eb", "Eb": "D#", "F#": "Gb", "Gb": "F#",
              "G#": "Ab", "Ab": "G#", "A#": "Bb", "Bb": "A#"}


def _fifths(root: str, mode: str) -> int:
    return LETTER_FIFTHS[root[0]] + 7 * {"#": 1, "b": -1}.get(root[1:], 0) + MODE_FIFTHS[mode]


def spell_root(root: str, mode: str) -> str:
    """The root's spelling, or its enharmonic one where the key ``root`` + ``mode`` would need
    more than 7 sharps or flats (``Db`` minor is written ``C#m``)."""
    spelled = parse_root(root)[2]
    if abs(_fifths(spelled, mode)) > 7 and spelled in ENHARMONIC:
        return ENHARMONIC[spelled]
    return spelled


def key_signature(root: str, mode: str) -> dict[str, int]:
    """Semitone alteration of each letter in the key ``root`` + v2 ``mode`` token."""
    fifths = _fifths(root, mode)
    if not -7 <= fifths <= 7:
        raise InputError(f"key {root}{MODE_SUFFIX[mode]} has no key signature: use its enharmonic root")
    return scale_alterations(root[0], {"#": 1, "b": -1}.get(root[1:], 0), V2_MODE_WORDS[mode])


def transpose_body(body: Sequence[str], mode: str, root: str, courtesy: bool = True) -> list[str]:
    """Body tokens with every note written for ``root`` (mode kept): see the module docstring.
    Inline ``K:`` tokens become ``[K:...]`` fields in the new root."""
    step, shift, spelled = parse_root(spell_root(root, mode))
    source_key = key_signature("C", mode)
    target_key = key_signature(spelled, mode)
    source_bar: dict[int, int] = {}  # diatonic position -> alteration, this bar
    target_bar: dict[int, int] = {}
    target_letter: dict[int, int] = {}  # letter index -> last alteration written, this bar
    out = []
    for token in body:
        if token in vocab.BAR_TOKENS:
            source_bar.clear(), target_bar.clear(), target_letter.clear()
            out.append(token)
            continue
        if token in MODE_FIFTHS:
            mode = token
            source_key, target_key = key_signature("C", mode), key_signature(spelled, mode)
            out.append(f"[K:{spelled}{MODE_SUFFIX[mode]}]")
            continue
        match = NOTE.match(token)
        if not match:
            out.append(token)
            continue
        accidental, letter, marks = match.groups()
        position = diatonic(letter, marks)
        if accidental:
            source_bar[position] = ACCIDENTALS[accidental]
        alter = source_bar.get(position, source_key[LETTERS[position % 7]])
        pitch = midi_pitch(position, alter) + shift
        new_position = position + step
        new_alter = pitch - midi_pitch(new_position, 0)
        if new_alter not in ACCIDENTAL_TEXT:  # beyond a double accidental: respell
            new_position += 1 if new_alter > 0 else -1
            new_alter = pitch - midi_pitch(new_position, 0)
        index = new_position % 7
        expected = target_bar.get(new_position, target_key[LETTERS[index]])
        write = new_alter != expected
        if courtesy and target_letter.get(index, new_alter) != new_alter:
            write = True
        text = note_name(new_position)
        if write:
            text = ACCIDENTAL_TEXT[new_alter] + text
            target_bar[new_position] = new_alter
            target_letter[index] = new_alter
        out.append(text)
    return out
