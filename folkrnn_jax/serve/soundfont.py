"""Render the piano notes the page's player uses, so that playback needs nothing from outside.

abcjs's synth plays each note from a short recording fetched from
``SOUNDFONT_URL/acoustic_grand_piano-mp3/NAME.mp3`` (``C4``, ``Db4``...). This script renders
those recordings from the FluidR3 General MIDI sound font (Debian ``fluid-soundfont-gm``, MIT
licence) with ``fluidsynth`` and encodes them with ``lame``; the results are committed under
``static/soundfont/`` so a fresh clone plays without these tools:

    apt-get install fluidsynth fluid-soundfont-gm lame
    python -m folkrnn_jax.serve.soundfont
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import tempfile

import mido

SOUND_FONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "soundfont", "acoustic_grand_piano-mp3")
NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
# v2 tunes span about C, to c'' (MIDI 48-84); transposition moves them -5..+6 semitones.
LOWEST, HIGHEST = 36, 96


def note_name(pitch: int) -> str:
    """abcjs's name for a MIDI pitch: 60 -> ``C4``, 61 -> ``Db4``."""
    return f"{NAMES[pitch % 12]}{pitch // 12 - 1}"


def _note_midi(pitch: int, seconds: float) -> bytes:
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))  # 120 bpm: 960 ticks per second
    track.append(mido.Message("program_change", program=0, time=0))
    track.append(mido.Message("note_on", note=pitch, velocity=90, time=0))
    track.append(mido.Message("note_off", note=pitch, velocity=0, time=int(seconds * 960)))
    track.append(mido.MetaMessage("end_of_track", time=480))  # room for the release
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def render(output: str = OUTPUT, sound_font: str = SOUND_FONT, seconds: float = 1.5) -> list[str]:
    """Write one mp3 per pitch LOWEST..HIGHEST into ``output``; returns the paths.

    Raises:
        FileNotFoundError: fluidsynth, lame or the sound font is missing.
    """
    for tool in ("fluidsynth", "lame"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} is not installed (apt-get install fluidsynth fluid-soundfont-gm lame)")
    if not os.path.exists(sound_font):
        raise FileNotFoundError(f"{sound_font} is missing (apt-get install fluid-soundfont-gm)")
    os.makedirs(output, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory(prefix="soundfont_") as folder:
        for pitch in range(LOWEST, HIGHEST + 1):
            midi_path, wav_path = os.path.join(folder, "note.mid"), os.path.join(folder, "note.wav")
            with open(midi_path, "wb") as f:
                f.write(_note_midi(pitch, seconds))
            subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.8", "-r", "44100", "-F", wav_path, sound_font,
                            midi_path], check=True, capture_output=True)
            target = os.path.join(output, note_name(pitch) + ".mp3")
            subprocess.run(["lame", "--quiet", "-m", "m", "-V", "7", wav_path, target], check=True)
            paths.append(target)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=OUTPUT)
    parser.add_argument("--sound_font", default=SOUND_FONT)
    args = parser.parse_args()
    made = render(args.output, args.sound_font)
    print(f"wrote {len(made)} notes to {args.output}")
