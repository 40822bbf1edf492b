"""Writing v2 token sequences as ABC that musicians can open, in C or transposed to any root.

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

import os
import re
from fractions import Fraction
from typing import Sequence

from folkrnn_jax import vocab

# v2 mode tokens to the ABC key field with a C root.
MODE_TO_ABC_KEY: dict[str, str] = {
    "K:Cmaj": "C",
    "K:Cmin": "Cm",
    "K:Cdor": "Cdor",
    "K:Cmix": "Cmix",
}

BARS_PER_LINE = 4


def split_tune(tokens: Sequence[str]) -> tuple[str | None, str | None, list[str]]:
    """Split a token sequence into (meter token, mode token, body), dropping ``<s>``/``</s>``.

    Meter and mode are the header tokens that lead the tune, in either order; anything after
    the first body token belongs to the body.
    """
    tokens = [t for t in tokens if t not in (vocab.START, vocab.END)]
    meter = mode = None
    position = 0
    while position < len(tokens) and tokens[position][:2] in ("M:", "K:"):
        if tokens[position].startswith("M:") and meter is None:
            meter = tokens[position]
        elif tokens[position].startswith("K:") and mode is None:
            mode = tokens[position]
        else:
            break
        position += 1
    return meter, mode, list(tokens[position:])


_DURATION_LIKE = re.compile(r"^(\d+/\d+|\d+|/\d+)?[<>]?$")


def body_to_abc(body: Sequence[str], bars_per_line: int = BARS_PER_LINE) -> str:
    """Join v2 body tokens into ABC music lines.

    Notes, durations and broken rhythms are written together (``c3/2``, ``c>d``) and bar
    lines get spaces around them, so that a bar line followed by a duration cannot be read
    as an ending. A duration that follows a duration or a broken rhythm (only in an invalid
    tune) is set apart by a space, so that the tokens read back as they were (``c2 2``, not
    ``c22``). A new line starts every ``bars_per_line`` bars.
    """
    lines: list[str] = []
    current = ""
    bars = 0
    previous = ""
    for token in body:
        if _DURATION_LIKE.match(previous) and token[:1] in "/0123456789<>" and token[:1]:
            current += " "
        previous = token
        if token in vocab.BAR_TOKENS:
            current = current.rstrip() + " " + token + " "
            if token != "|1" and token != "|2":
                bars += 1
            if bars >= bars_per_line and token not in ("|:",):
                lines.append(current.strip())
                current, bars = "", 0
        elif token.startswith(("M:", "K:")):
            # A header token inside a body becomes an inline field.
            field = token if token.startswith("M:") else "K:" + MODE_TO_ABC_KEY[token]
            current += f"[{field}]"
        else:
            current += token
    if current.strip():
        lines.append(current.strip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Transposition.

LETTERS = "CDEFGAB"
NATURAL_SEMITONES = (0, 2, 4, 5, 7, 9, 11)
LETTER_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}
MODE_FIFTHS = {"K:Cmaj": 0, "K:Cmix": -1, "K:Cdor": -2, "K:Cmin": -3}
MODE_SUFFIX = {"K:Cmaj": "", "K:Cmin": "m", "K:Cdor": "dor", "K:Cmix": "mix"}
ACCIDENTALS = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}
ACCIDENTAL_TEXT = {v: k for k, v in ACCIDENTALS.items()}
ROOTS = ("C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A", "A#", "Bb", "B")
_ROOT = re.compile(r"^([A-Ga-g])([#b]?)$")
_NOTE = re.compile(r"^(\^\^|__|[\^_=]?)([A-Ga-g])([,']*)$")


def parse_root(root: str) -> tuple[int, int, str]:
    """(letter index 0..6 from C, semitone shift from C in -5..+6, spelling) of a root name
    such as ``D``, ``Eb``, ``F#``."""
    match = _ROOT.match(root.strip())
    if not match:
        raise ValueError(f"unknown key root {root!r}: one of {', '.join(ROOTS)}")
    letter = match.group(1).upper()
    alter = {"#": 1, "b": -1, "": 0}[match.group(2)]
    index = LETTERS.index(letter)
    semis = (NATURAL_SEMITONES[index] + alter) % 12
    shift = semis - 12 if semis > 6 else semis
    # The letter step goes the same way as the shift (B below C, Cb... is not offered).
    step = index if NATURAL_SEMITONES[index] - shift <= 6 else index - 7
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
        raise ValueError(f"key {root}{MODE_SUFFIX[mode]} has no key signature: use its enharmonic root")
    signature = dict.fromkeys(LETTERS, 0)
    for name in ("FCGDAEB"[:fifths] if fifths > 0 else "BEADGCF"[: -fifths]):
        signature[name] = 1 if fifths > 0 else -1
    return signature


def _note_position(letter: str, marks: str) -> int:
    """Diatonic position of a note, 0 = middle C (ABC ``C``), 7 = ``c``."""
    position = LETTERS.index(letter.upper()) + (7 if letter.islower() else 0)
    return position - 7 * marks.count(",") + 7 * marks.count("'")


def _note_text(position: int) -> str:
    octave, index = divmod(position, 7)
    letter = LETTERS[index]
    if octave >= 1:
        return letter.lower() + "'" * (octave - 1)
    return letter + "," * (-octave)


def _pitch(position: int, alter: int) -> int:
    octave, index = divmod(position, 7)
    return 60 + 12 * octave + NATURAL_SEMITONES[index] + alter


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
        match = _NOTE.match(token)
        if not match:
            out.append(token)
            continue
        accidental, letter, marks = match.groups()
        position = _note_position(letter, marks)
        if accidental:
            source_bar[position] = ACCIDENTALS[accidental]
        alter = source_bar.get(position, source_key[LETTERS[position % 7]])
        pitch = _pitch(position, alter) + shift
        new_position = position + step
        new_alter = pitch - _pitch(new_position, 0)
        if new_alter not in ACCIDENTAL_TEXT:  # beyond a double accidental: respell
            new_position += 1 if new_alter > 0 else -1
            new_alter = pitch - _pitch(new_position, 0)
        index = new_position % 7
        expected = target_bar.get(new_position, target_key[LETTERS[index]])
        write = new_alter != expected
        if courtesy and target_letter.get(index, new_alter) != new_alter:
            write = True
        text = _note_text(new_position)
        if write:
            text = ACCIDENTAL_TEXT[new_alter] + text
            target_bar[new_position] = new_alter
            target_letter[index] = new_alter
        out.append(text)
    return out


def tokens_to_abc(
    tokens: Sequence[str],
    index: int = 1,
    title: str | None = None,
    default_meter: str = "M:4/4",
    default_mode: str = "K:Cmaj",
    key: str | None = None,
    courtesy: bool = True,
) -> str:
    """Render one v2 tune as a complete ABC tune with ``X:``, ``T:``, ``M:``, ``L:1/8``, ``K:``;
    ``key`` (a root such as ``"D"``, ``"Bb"``, ``"F#"``) transposes it there, keeping its mode."""
    meter, mode, body = split_tune(tokens)
    meter = meter or default_meter
    mode = mode or default_mode
    title = title or f"folkrnn_jax tune {index}"
    if key is None:
        key_field = "K:" + MODE_TO_ABC_KEY[mode]
    else:
        body = transpose_body(body, mode, key, courtesy)
        key_field = f"K:{spell_root(key, mode)}{MODE_SUFFIX[mode]}"
    return "\n".join([f"X:{index}", f"T:{title}", meter, "L:1/8", key_field, body_to_abc(body)]) + "\n"


def transpose_tune_abc(tokens: Sequence[str], key: str, index: int = 1, title: str | None = None,
                       courtesy: bool = True) -> str:
    """``tokens_to_abc`` transposed to the root ``key``."""
    return tokens_to_abc(tokens, index=index, title=title, key=key, courtesy=courtesy)


def tunes_to_abc(
    tunes: Sequence[Sequence[str]], titles: Sequence[str] | None = None, key: str | None = None
) -> str:
    """Render several tunes as one ABC file, numbered from X:1, separated by blank lines."""
    parts = []
    for i, tune in enumerate(tunes):
        title = titles[i] if titles is not None else None
        parts.append(tokens_to_abc(tune, index=i + 1, title=title, key=key))
    return "\n".join(parts)


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
    from folkrnn_jax import abctools

    abc_texts = [tokens_to_abc(t, index=i + 1, title=titles[i], key=key) for i, t in enumerate(tunes)]
    if fmt == "abc":
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        tmp = output + ".tmp"
        with open(tmp, "w") as f:
            f.write(tunes_to_abc(tunes, titles, key))
        os.replace(tmp, output)
        return 1
    if fmt == "midi":
        use_abc2midi = abctools.have("abc2midi")
        os.makedirs(output, exist_ok=True)
        for i, text in enumerate(abc_texts):
            data = abctools.abc_to_midi(text) if use_abc2midi else tokens_to_midi(tunes[i], key=key)
            with open(os.path.join(output, f"tune_{i + 1:03d}.mid"), "wb") as f:
                f.write(data)
        return len(abc_texts)
    if fmt == "svg":
        return len(abctools.render_svg("\n".join(abc_texts), output, stem="tunes"))
    raise ValueError(f"unknown output format {fmt!r}: abc, midi or svg")


# ---------------------------------------------------------------------------------------------
# MIDI without abc2midi.

TICKS_PER_EIGHTH = 240  # abc2midi's resolution: 480 ticks per quarter note


def tune_notes(tokens: Sequence[str], key: str | None = None) -> list[tuple[Fraction, int, Fraction]]:
    """The notes of a v2 tune as ``(start, MIDI pitch, duration)`` in eighth notes, played
    once through (repeats are not expanded), transposed to the root ``key`` (None: C).
    Durations follow ``structure``'s reading of v2 tokens (duration tokens, broken rhythm,
    tuplets, chords); accidentals hold to the end of the bar for that letter and octave."""
    from folkrnn_jax import structure

    meter, mode, body = split_tune(tokens)
    mode = mode or "K:Cmaj"
    shift = parse_root(spell_root(key, mode))[1] if key else 0
    signature = key_signature("C", mode)
    bar: dict[int, int] = {}
    notes: list[list] = []  # [start, pitch or None (rest), duration]
    now = Fraction(0)
    group: list[list] = []  # the last note, or the notes of the last chord
    in_chord = False
    next_factor = Fraction(1)  # from a broken rhythm: applies to the next note
    tuplet: list = []  # [notes left, factor]

    def advance():
        nonlocal now
        if group:
            now = group[0][0] + group[0][2]

    for token in body:
        if token in vocab.BAR_TOKENS:
            bar.clear()
        elif token in MODE_FIFTHS:
            mode, signature = token, key_signature("C", token)
        elif token == "[":
            in_chord, group = True, []
        elif token == "]":
            in_chord = False
            if tuplet:
                tuplet[0] -= 1
            advance()
        elif structure.is_note(token):
            factor = next_factor * (tuplet[1] if tuplet else 1)
            next_factor = Fraction(1)
            pitch = None
            if token != "z":
                accidental, letter, marks = _NOTE.match(token).groups()
                position = _note_position(letter, marks)
                if accidental:
                    bar[position] = ACCIDENTALS[accidental]
                pitch = _pitch(position, bar.get(position, signature[LETTERS[position % 7]])) + shift
            note = [now, pitch, factor]
            notes.append(note)
            if in_chord:
                group.append(note)
            else:
                group = [note]
                if tuplet:
                    tuplet[0] -= 1
                advance()
            if tuplet and tuplet[0] <= 0:
                tuplet = []
        elif structure.parse_duration(token) is not None or structure.parse_broken(token) is not None:
            broken = structure.parse_broken(token)
            length = broken[0] if broken else structure.parse_duration(token)
            if not group:
                continue
            if broken:
                length *= BROKEN_FACTORS[broken[1]][0]
                next_factor = BROKEN_FACTORS[broken[1]][1]
            for note in group:
                note[2] *= length
            advance()
        elif structure.tuplet_ratio(token, meter) is not None:
            p, q = structure.tuplet_ratio(token, meter)
            tuplet = [p, Fraction(q, p)]
    return [(start, pitch, duration) for start, pitch, duration in notes if pitch is not None]


BROKEN_FACTORS = {">": (Fraction(3, 2), Fraction(1, 2)), "<": (Fraction(1, 2), Fraction(3, 2))}


def tokens_to_midi(tokens: Sequence[str], key: str | None = None, tempo_bpm: int = 120) -> bytes:
    """A one-track MIDI file (mido) of ``tune_notes``: 480 ticks per quarter note, velocity 80;
    the fallback for ``--format=midi`` when abc2midi is not installed."""
    import io

    import mido

    events = []
    for start, pitch, duration in tune_notes(tokens, key):
        on = int(start * TICKS_PER_EIGHTH)
        events.append((on + int(duration * TICKS_PER_EIGHTH), 0, pitch))  # note-offs first at a tick
        events.append((on, 1, pitch))
    events.sort()
    midi = mido.MidiFile(ticks_per_beat=2 * TICKS_PER_EIGHTH)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    last = 0
    for tick, kind, pitch in events:
        track.append(mido.Message("note_on" if kind else "note_off", note=pitch, velocity=80 if kind else 0,
                                  time=tick - last))
        last = tick
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()
