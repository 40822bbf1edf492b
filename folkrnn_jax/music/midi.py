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
    """The notes of a v2 tune as abc2midi plays them, played once through (repeats are not
    expanded).

    Args:
        tokens: a v2 token sequence.
        key: the root to transpose to (None: C, as written).

    Returns:
        ``(start, MIDI pitch, duration)`` in eighths, one per sounding note, in order, with
        times from ``rhythm.note_events`` (every note of a chord sounds for the chord's
        length). Accidentals hold to the end of the bar for that letter and octave.
    """
    mode = vocab.split_header(tokens)[1] or "K:Cmaj"
    shift = transpose.parse_root(transpose.spell_root(key, mode))[1] if key else 0
    notes: list[tuple[Fraction, int, Fraction]] = []
    bar: dict[int, int] = {}  # accidentals written in the current bar, by diatonic position
    bar_number = 0
    for event in rhythm.note_events(tokens):
        if event.bar != bar_number:
            bar, bar_number = {}, event.bar
        signature = V2_SIGNATURES[event.mode or "K:Cmaj"]
        for token in event.pitches:
            accidental, letter, marks = NOTE.match(token).groups()
            position = diatonic(letter, marks)
            if accidental:
                bar[position] = ACCIDENTALS[accidental]
            pitch = midi_pitch(position, bar.get(position, signature[LETTERS[position % 7]])) + shift
            notes.append((event.start, pitch, event.duration))
    return notes


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
