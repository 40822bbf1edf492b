"""The one home of pitch names, key signatures and the middle-C convention.

Notes are counted on a diatonic scale, ``7 * octave + letter index`` (C=0 ... B=6), with
scientific octaves: middle C (ABC ``C``) is 28, ``c`` is 35, ``C,`` is 21. A pitch is that
number with an alteration in semitones (``^`` +1, ``_`` -1, ``=`` 0, doubles +-2); its MIDI
number puts middle C at 60.
"""

from __future__ import annotations

import re

LETTERS = "CDEFGAB"
NATURAL_SEMITONES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
MIDDLE_C_DIATONIC = 28  # diatonic number 7 * octave + letter index, middle C in octave 4
ACCIDENTALS = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}
ACCIDENTAL_TEXT = {v: k for k, v in ACCIDENTALS.items()}
# An ABC note: accidental, letter (lower case one octave up), octave marks.
NOTE = re.compile(r"^(\^\^|__|[\^_=]?)([A-Ga-g])([,']*)$")

MODE_INTERVALS = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
}
V2_MODES = {"major": "K:Cmaj", "minor": "K:Cmin", "dorian": "K:Cdor", "mixolydian": "K:Cmix"}
V2_MODE_WORDS = {token: word for word, token in V2_MODES.items()}


def scale_alterations(root_letter: str, root_alter: int, mode: str) -> dict[str, int]:
    """Key signature as letter -> alteration (semitones) for a root and mode.

    Args:
      root_letter: ``C`` ... ``B``.
      root_alter: the root's alteration in semitones (``F#``: 1).
      mode: a key of ``MODE_INTERVALS`` (``"dorian"``).

    Returns:
      The alteration of each of the seven letters.
    """
    root_pc = NATURAL_SEMITONES[root_letter] + root_alter
    start = LETTERS.index(root_letter)
    signature = {}
    for step, interval in enumerate(MODE_INTERVALS[mode]):
        letter = LETTERS[(start + step) % 7]
        alter = (root_pc + interval - NATURAL_SEMITONES[letter]) % 12
        signature[letter] = alter - 12 if alter > 6 else alter
    return signature


# The key signatures of the four C-rooted v2 modes (``K:Cmin`` has B, E and A flat).
V2_SIGNATURES = {token: scale_alterations("C", 0, mode) for mode, token in V2_MODES.items()}


def diatonic(letter: str, marks: str) -> int:
    """Diatonic number of an ABC note letter (lower case: the octave above middle C) with its
    octave marks (``,`` down, ``'`` up): ``C`` -> 28, ``c'`` -> 42."""
    octave = (5 if letter.islower() else 4) + marks.count("'") - marks.count(",")
    return 7 * octave + LETTERS.index(letter.upper())


def midi_pitch(number: int, alter: int) -> int:
    """MIDI pitch of a diatonic number with an alteration in semitones (middle C = 60)."""
    octave, index = divmod(number, 7)
    return 12 * (octave + 1) + NATURAL_SEMITONES[LETTERS[index]] + alter


def note_name(number: int) -> str:
    """ABC letter with octave marks (no accidental) of a diatonic number."""
    octave, index = divmod(number, 7)
    letter = LETTERS[index]
    if octave >= 5:
        return letter.lower() + "'" * (octave - 5)
    return letter + "," * (4 - octave)


def token_pitch(token: str, mode: str | None) -> int | None:
    """MIDI pitch of a v2 pitch token in the tune's C-rooted ``mode`` (an accidental applies
    to its own note only, as v2 writes one on every note that needs it); None for tokens that
    are not pitches."""
    match = NOTE.match(token)
    if not match:
        return None
    accidental, letter, marks = match.groups()
    if accidental:
        alter = ACCIDENTALS[accidental]
    else:
        alter = V2_SIGNATURES[mode or "K:Cmaj"][letter.upper()]
    return midi_pitch(diatonic(letter, marks), alter)
