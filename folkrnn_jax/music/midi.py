"""MIDI: the notes of a v2 tune written with mido (no abc2midi needed), and MIDI files read
back as notes."""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Sequence

import mido

from folkrnn_jax.music import rhythm, transpose, vocab
from folkrnn_jax.music.pitch import ACCIDENTALS, LETTERS, NOTE, V2_SIGNATURES, diatonic, midi_pitch

TICKS_PER_EIGHTH = 240  # abc2midi's resolution: 480 ticks per quarter note


def tune_notes(tokens: Sequence[str], key: str | None = None) -> list[tuple[Fraction, int, Fraction]]:
    """The notes of a v2 tune as ``(start, MIDI pitch, duration)`` in eighth notes, played
    once through (repeats are not expanded), transposed to the root ``key`` (None: C).
    Durations follow ``structure``'s reading of v2 tokens (duration tokens, broken rhythm,
    tuplets, chords); accidentals hold to the end of the bar for that letter and octave."""
    meter, mode, body = vocab.split_header(tokens)
    mode = mode or "K:Cmaj"
    shift = transpose.parse_root(transpose.spell_root(key, mode))[1] if key else 0
    signature = V2_SIGNATURES[mode]
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
        elif token in vocab.MODE_TOKENS:
            mode, signature = token, V2_SIGNATURES[token]
        elif token == "[":
            in_chord, group = True, []
        elif token == "]":
            in_chord = False
            if tuplet:
                tuplet[0] -= 1
            advance()
        elif rhythm.is_note(token):
            factor = next_factor * (tuplet[1] if tuplet else 1)
            next_factor = Fraction(1)
            pitch = None
            if token != "z":
                accidental, letter, marks = NOTE.match(token).groups()
                position = diatonic(letter, marks)
                if accidental:
                    bar[position] = ACCIDENTALS[accidental]
                pitch = midi_pitch(position, bar.get(position, signature[LETTERS[position % 7]])) + shift
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
        elif rhythm.parse_duration(token) is not None or rhythm.parse_broken(token) is not None:
            broken = rhythm.parse_broken(token)
            length = broken[0] if broken else rhythm.parse_duration(token)
            if not group:
                continue
            if broken:
                length *= rhythm.BROKEN_FACTORS[broken[1]][0]
                next_factor = rhythm.BROKEN_FACTORS[broken[1]][1]
            for note in group:
                note[2] *= length
            advance()
        elif rhythm.tuplet_ratio(token, meter) is not None:
            p, q = rhythm.tuplet_ratio(token, meter)
            tuplet = [p, Fraction(q, p)]
    return [(start, pitch, duration) for start, pitch, duration in notes if pitch is not None]


def tokens_to_midi(tokens: Sequence[str], key: str | None = None, tempo_bpm: int = 120) -> bytes:
    """A one-track MIDI file (mido) of ``tune_notes``: 480 ticks per quarter note, velocity 80;
    the fallback for ``--format=midi`` when abc2midi is not installed."""
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


def midi_notes(
    midi_bytes: bytes, channels: Sequence[int] | None = None
) -> list[tuple[int, int, int]]:
    """Notes of a MIDI file as ``(start_tick, pitch, duration_ticks)``, sorted by onset then
    pitch. Ticks are absolute from the start of each track (all tracks share the file's
    resolution). ``channels`` keeps only those MIDI channels (0-based)."""
    midi = mido.MidiFile(file=io.BytesIO(midi_bytes))
    notes: list[tuple[int, int, int]] = []
    for track in midi.tracks:
        now = 0
        sounding: dict[tuple[int, int], list[int]] = {}
        for message in track:
            now += message.time
            if message.type not in ("note_on", "note_off"):
                continue
            if channels is not None and message.channel not in channels:
                continue
            key = (message.channel, message.note)
            if message.type == "note_on" and message.velocity > 0:
                sounding.setdefault(key, []).append(now)
            elif sounding.get(key):
                start = sounding[key].pop(0)
                notes.append((start, message.note, now - start))
    notes.sort()
    return notes


def midi_resolution(midi_bytes: bytes) -> int:
    """Ticks per quarter note of a MIDI file."""
    return mido.MidiFile(file=io.BytesIO(midi_bytes)).ticks_per_beat
