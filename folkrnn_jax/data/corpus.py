"""Real tune corpora in the v2 data format: read raw ABC sources, convert, deduplicate, report.

Sources (``read_source(spec)``):
- an ``.abc`` file or a folder of them (many tunes per file, each starting at ``X:``);
- The Session's weekly dump, ``tunes.csv`` or ``tunes.json`` (columns ``tune_id, setting_id,
  name, type, meter, mode, abc, ...``; ``mode`` like ``Dmajor``; ``abc`` is the body only);
- a music21 bundled collection by name (``oneills1850``, ``ryansMammoth``, ``airdsAirs``,
  ``essenFolksong``, ``miscFolk``), read from the installed music21 package's corpus folder
  (no download).

``build_corpus(specs)`` converts every tune with :func:`folkrnn_jax.music.abc_in.convert_tune`, drops
repeated token sequences, optionally checks each kept tune against abc2midi
(:func:`midi_round_trip`), and returns the kept tunes with a report whose left-out reasons sum
to tunes read minus tunes kept.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import glob
import io
import json
import os
import re
from typing import Iterator, Sequence

from folkrnn_jax import files
from folkrnn_jax.data.v2_format import format_v2
from folkrnn_jax.errors import InputError, MissingFileError
from folkrnn_jax.music import abc_in, abc_out, midi, tools, vocab

MUSIC21_COLLECTIONS = ("oneills1850", "ryansMammoth", "airdsAirs", "essenFolksong", "miscFolk")


SESSION_COLUMNS = ("tune_id", "setting_id", "name", "type", "meter", "mode", "abc")
SESSION_USED = ("meter", "mode", "abc")  # the columns a tune cannot be made without


R_MIDI_MISMATCH = "abc2midi playback differs from the original"


@dataclasses.dataclass(frozen=True)
class SourceTune:
    """One raw tune: its ABC text and where it came from, or ``error`` for an unreadable
    record (a malformed CSV row...), which is reported and counted as read."""

    where: str
    text: str | None
    error: str | None = None


def split_abc_text(text: str, name: str) -> Iterator[SourceTune]:
    """Split an ABC file into tunes at ``X:`` lines; ``where`` names the file, the ``X:``
    number and the tune's ordinal in the file."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"^X:", line)]
    for ordinal, start in enumerate(starts, start=1):
        end = starts[ordinal] if ordinal < len(starts) else len(lines)
        number = lines[start][2:].strip() or "?"
        where = f"{name} tune X:{number} (#{ordinal}, line {start + 1})"
        yield SourceTune(where, "\n".join(lines[start:end]) + "\n")


def read_abc_path(path: str, label: str | None = None) -> Iterator[SourceTune]:
    """Tunes of an ``.abc`` file, or of every ``.abc`` file below a folder (sorted)."""
    if os.path.isdir(path):
        paths = sorted(glob.glob(os.path.join(path, "**", "*.abc"), recursive=True))
        if not paths:
            raise MissingFileError(f"no .abc files under {path}")
    elif os.path.exists(path):
        paths = [path]
    else:
        raise MissingFileError(f"no such ABC file or folder: {path}")
    base = os.path.dirname(path.rstrip(os.sep)) if os.path.isdir(path) else os.path.dirname(path)
    for file in paths:
        text = files.read_text(file, "ABC file", declared_charset=True)
        name = os.path.relpath(file, base) if label is None else f"{label}/{os.path.relpath(file, path) if os.path.isdir(path) else os.path.basename(file)}"
        yield from split_abc_text(text, name)


def session_row_to_abc(row: dict, index: int) -> str:
    """Full ABC text for one row of The Session's dump (its ``abc`` is the body only)."""
    missing = [c for c in ("meter", "mode", "abc") if not str(row.get(c) or "").strip()]
    if missing:
        raise InputError(f"missing {', '.join(missing)}")
    mode = str(row["mode"]).strip()
    match = re.match(r"^([A-G][#b]?)([A-Za-z]+)$", mode)
    if not match:
        raise InputError(f"unreadable mode {mode!r}")
    body = str(row["abc"]).replace("\r\n", "\n").replace("\r", "\n")
    # A blank line would end an ABC tune: the dump's body is one tune, so drop them.
    body = "\n".join(line for line in body.split("\n") if line.strip())
    title = str(row.get("name") or "").strip()
    return (
        f"X:{index}\nT:{title}\nM:{str(row['meter']).strip()}\nL:1/8\n"
        f"K:{match.group(1)} {match.group(2)}\n{body}\n"
    )


def read_session_dump(path: str) -> Iterator[SourceTune]:
    """Tunes of The Session's ``tunes.csv`` or ``tunes.json``; a bad row is reported with
    its row number and the rest is still read."""
    name = os.path.basename(path)
    if not os.path.exists(path):
        raise MissingFileError(f"no such file: {path}")
    if path.endswith(".json"):
        try:
            rows = json.loads(files.read_text(path, "JSON file"))
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: line {error.lineno}, column {error.colno}: not JSON ({error.msg})") from None
        if not isinstance(rows, list):
            raise InputError(f"{path}: expected a JSON list of tune settings")
        numbered = enumerate(rows, start=1)
        label = "record"
    else:
        with io.StringIO(files.read_text(path, "CSV file")) as f:
            # strict: an unclosed quote is an error at its line, not a field that silently
            # swallows the following rows.
            reader = csv.DictReader(f, strict=True)
            # The line the record being read starts on: the csv module's own line_num is where
            # it gave up, which for an unclosed quote is some later line (or the end).
            record_start = 1
            rows = []
            try:
                if reader.fieldnames is None or not {"meter", "mode", "abc"} <= set(reader.fieldnames):
                    raise InputError(
                        f"{path}: expected a CSV header with {', '.join(SESSION_COLUMNS)}, "
                        f"got {reader.fieldnames}"
                    )
                record_start = reader.line_num + 1
                for row in reader:
                    rows.append(row)
                    record_start = reader.line_num + 1
            except csv.Error as error:
                raise InputError(
                    f"{path}: line {record_start}: malformed CSV ({error}); a quote opened on this "
                    "line is not closed where it should be"
                ) from None
        # Row 1 is the header line.
        numbered = enumerate(rows, start=2)
        label = "row"
    for number, row in numbered:
        ident = ""
        if isinstance(row, dict):
            ident = f" (tune {row.get('tune_id')}, setting {row.get('setting_id')})"
        where = f"{name} {label} {number}{ident}"
        # A CSV row with too few or too many fields has None values or a None key; in JSON a
        # null only matters in a column the tune is made from.
        used = row.values() if label == "row" or not isinstance(row, dict) else [row.get(c, "") for c in SESSION_USED]
        if not isinstance(row, dict) or None in row or any(v is None for v in used):
            yield SourceTune(where, None, "wrong number of fields")
            continue
        try:
            yield SourceTune(where, session_row_to_abc(row, number))
        except InputError as error:
            yield SourceTune(where, None, str(error))


def music21_corpus_dir() -> str:
    """The corpus folder of the installed music21 package."""
    try:
        import music21  # optional and slow to import: only when a music21 collection is read
    except ImportError as error:
        raise MissingFileError("music21 is not installed (pip install music21)") from error
    return os.path.join(os.path.dirname(music21.__file__), "corpus")


def read_music21(name: str) -> Iterator[SourceTune]:
    """Tunes of a music21 bundled collection, read from its raw ``.abc`` files."""
    if name not in MUSIC21_COLLECTIONS:
        raise InputError(f"unknown music21 collection {name!r}; one of {', '.join(MUSIC21_COLLECTIONS)}")
    folder = os.path.join(music21_corpus_dir(), name)
    if not os.path.isdir(folder):
        raise MissingFileError(f"music21's corpus has no folder {folder}")
    yield from read_abc_path(folder, label=name)


def read_source(spec: str) -> Iterator[SourceTune]:
    """A music21 collection name, a Session dump (``.csv``/``.json``), or ABC file/folder."""
    if spec in MUSIC21_COLLECTIONS and not os.path.exists(spec):
        return read_music21(spec)
    if spec.endswith((".csv", ".json")):
        return read_session_dump(spec)
    if not os.path.exists(spec):
        raise MissingFileError(
            f"source {spec!r} is neither a file or folder nor a music21 collection "
            f"({', '.join(MUSIC21_COLLECTIONS)})"
        )
    return read_abc_path(spec)


@dataclasses.dataclass(frozen=True)
class RoundTrip:
    match: bool
    detail: str = ""


MIDI_OPTIONS = ("-NGRA", "-NGUI")


# abc2midi starts the notes of a chord 10 ticks apart (at 480 ticks a quarter); notes this
# close to a group's first onset are one chord. The shortest v2 note (/8 eighth) is 30 ticks.
CHORD_SPREAD_TICKS = 25


def _onset_groups(notes: Sequence[tuple[int, int, int]]) -> list[tuple[int, list[tuple[int, int]]]]:
    groups: list[tuple[int, list[tuple[int, int]]]] = []
    for start, pitch, duration in sorted(notes):
        if groups and start - groups[-1][0] <= CHORD_SPREAD_TICKS:
            groups[-1][1].append((pitch, duration))
        else:
            groups.append((start, [(pitch, duration)]))
    return [(start, sorted(group)) for start, group in groups]


def compare_notes(original: Sequence[tuple[int, int, int]], converted: Sequence[tuple[int, int, int]]) -> RoundTrip:
    """Same onsets, same durations, same pitches up to one transposition (so every interval
    between successive notes is equal). Chords: pitches sorted per onset."""
    a, b = _onset_groups(original), _onset_groups(converted)
    if not a or not b:
        return RoundTrip(False, f"no notes ({len(a)} / {len(b)} onsets)")
    shift = None
    for index in range(max(len(a), len(b))):
        if index >= len(a) or index >= len(b):
            return RoundTrip(False, f"{len(a)} onsets in the original, {len(b)} converted")
        (start_a, group_a), (start_b, group_b) = a[index], b[index]
        if start_a != start_b:
            return RoundTrip(False, f"onset {index + 1}: tick {start_a} vs {start_b}")
        if len(group_a) != len(group_b):
            return RoundTrip(False, f"onset {index + 1} (tick {start_a}): {len(group_a)} vs {len(group_b)} notes")
        for (pitch_a, dur_a), (pitch_b, dur_b) in zip(group_a, group_b):
            if dur_a != dur_b:
                return RoundTrip(False, f"onset {index + 1} (tick {start_a}): duration {dur_a} vs {dur_b}")
            if shift is None:
                shift = pitch_b - pitch_a
            elif pitch_b - pitch_a != shift:
                return RoundTrip(
                    False, f"onset {index + 1} (tick {start_a}): pitch {pitch_a} -> {pitch_b}, "
                    f"expected a shift of {shift}"
                )
    return RoundTrip(True, f"{len(a)} onsets, shift {shift}")


def midi_round_trip(raw_text: str, tokens: Sequence[str]) -> RoundTrip:
    """Play the raw tune (:func:`folkrnn_jax.music.abc_in.playback_reference`) and the converted tune
    (written with :func:`folkrnn_jax.music.abc_out.tokens_to_abc`) through abc2midi and compare."""
    try:
        original = midi.midi_notes(tools.abc_to_midi(abc_in.playback_reference(raw_text), options=MIDI_OPTIONS))
        converted = midi.midi_notes(tools.abc_to_midi(abc_out.tokens_to_abc(tokens), options=MIDI_OPTIONS))
    except tools.ToolError as error:
        return RoundTrip(False, str(error))
    return compare_notes(original, converted)


@dataclasses.dataclass
class Corpus:
    tunes: list[list[str]]
    report: dict
    kept: list[abc_in.ConversionResult]


def _convert(item: SourceTune) -> abc_in.ConversionResult:
    if item.error is not None:
        return abc_in.ConversionResult(None, abc_in.R_MALFORMED_ROW, item.error, item.where)
    return abc_in.convert_tune(item.text, item.where)


def build_corpus(
    specs: Sequence[str],
    verify_midi: bool = False,
    workers: int = 8,
    log=None,
) -> Corpus:
    """Convert every tune of the sources, drop duplicates, and (with ``verify_midi``) leave
    out tunes whose abc2midi playback does not match the original's."""
    left_out = collections.Counter()
    left_out_tunes = []
    kept: list[abc_in.ConversionResult] = []
    raw_texts: list[str] = []
    kept_specs: list[str] = []
    seen: dict[tuple[str, ...], str] = {}
    read = 0
    per_source = {}
    for spec in specs:
        source_read = source_kept = 0
        for item in read_source(spec):
            read += 1
            source_read += 1
            result = _convert(item)
            if result.ok:
                key = tuple(result.tokens)
                if key in seen:
                    result = abc_in.ConversionResult(
                        None, abc_in.R_DUPLICATE, f"same tokens as {seen[key]}", item.where
                    )
                else:
                    seen[key] = item.where
            if result.ok:
                kept.append(result)
                raw_texts.append(item.text)
                kept_specs.append(spec)
                source_kept += 1
            else:
                left_out[result.reason] += 1
                left_out_tunes.append({"where": result.where, "reason": result.reason, "detail": result.detail})
        per_source[spec] = {"read": source_read, "converted": source_kept, "kept": source_kept}
        if log:
            log(f"{spec}: {source_read} tunes read, {source_kept} converted")
    midi_check = None
    if verify_midi:
        tools.require("abc2midi")
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            checks = list(pool.map(lambda pair: midi_round_trip(pair[0], pair[1].tokens), zip(raw_texts, kept)))
        matched = sum(check.match for check in checks)
        mismatches = []
        still_kept = []
        for result, check, spec in zip(kept, checks, kept_specs):
            if check.match:
                still_kept.append(result)
            else:
                per_source[spec]["kept"] -= 1
                left_out[R_MIDI_MISMATCH] += 1
                entry = {"where": result.where, "reason": R_MIDI_MISMATCH, "detail": check.detail}
                left_out_tunes.append(entry)
                mismatches.append(entry)
        midi_check = {
            "checked": len(checks),
            "matched": matched,
            "share": matched / len(checks) if checks else None,
            "options": list(MIDI_OPTIONS),
            "mismatches_left_out": mismatches,
        }
        kept = still_kept
        if log:
            log(f"abc2midi round trip: {matched}/{len(checks)} converted tunes match")
    report = make_report(specs, read, kept, left_out, left_out_tunes, per_source, midi_check)
    return Corpus([r.tokens for r in kept], report, kept)


def make_report(specs, read, kept, left_out, left_out_tunes, per_source, midi_check) -> dict:
    meters = collections.Counter(r.tokens[0] for r in kept)
    modes = collections.Counter(r.tokens[1] for r in kept)
    lengths = sorted(len(r.tokens) + 2 for r in kept)
    report = {
        "sources": list(specs),
        "per_source": per_source,
        "tunes_read": read,
        "tunes_kept": len(kept),
        "left_out": dict(left_out.most_common()),
        "left_out_total": sum(left_out.values()),
        "tokens": sum(len(r.tokens) for r in kept),
        "length_with_start_end": {
            "min": lengths[0] if lengths else None,
            "median": lengths[len(lengths) // 2] if lengths else None,
            "max": lengths[-1] if lengths else None,
        },
        "meters": {m: meters[m] for m in vocab.METER_TOKENS if meters[m]},
        "modes": {m: modes[m] for m in vocab.MODE_TOKENS if modes[m]},
        "respelled_notes": sum(r.respelled for r in kept),
        "midi_check": midi_check,
        "left_out_tunes": left_out_tunes,
    }
    assert report["left_out_total"] == read - len(kept), "left-out reasons must sum to read - kept"
    return report


def report_paths(output: str) -> tuple[str, str]:
    stem = output[:-4] if output.endswith(".txt") else output
    return stem + ".report.json", stem + ".report.md"


def report_markdown(report: dict, output: str | None = None) -> str:
    lines = ["# Corpus report", ""]
    if output:
        lines.append(f"Output: `{output}`")
    lines.append(f"Sources: {', '.join(f'`{s}`' for s in report['sources'])}")
    lines += ["", f"- tunes read: {report['tunes_read']}", f"- tunes kept: {report['tunes_kept']}",
              f"- tunes left out: {report['left_out_total']}",
              f"- tokens (M:, K: and body, without <s>/</s>): {report['tokens']}",
              f"- sequence length with <s>/</s>: min {report['length_with_start_end']['min']}, "
              f"median {report['length_with_start_end']['median']}, max {report['length_with_start_end']['max']}",
              f"- notes respelled enharmonically to fit the vocabulary: {report['respelled_notes']}", ""]
    lines += ["## Per source", "", "| source | read | converted, no duplicates | kept (after the abc2midi check) |",
              "|---|---|---|---|"]
    for spec, counts in report["per_source"].items():
        lines.append(f"| {spec} | {counts['read']} | {counts['converted']} | {counts['kept']} |")
    lines += ["", "## Left out, by reason", "", "| reason | tunes |", "|---|---|"]
    for reason, count in report["left_out"].items():
        lines.append(f"| {reason} | {count} |")
    lines += ["", "## Meters", "", "| meter | tunes |", "|---|---|"]
    lines += [f"| {m} | {c} |" for m, c in report["meters"].items()]
    lines += ["", "## Modes", "", "| mode | tunes |", "|---|---|"]
    lines += [f"| {m} | {c} |" for m, c in report["modes"].items()]
    check = report.get("midi_check")
    lines += ["", "## abc2midi round trip", ""]
    if check:
        lines.append(
            f"{check['matched']} of {check['checked']} converted tunes play the same notes as the "
            f"original (share {check['share']:.4f}); mismatching tunes are left out."
        )
    else:
        lines.append("not run (use --verify_midi)")
    lines += ["", "## Left-out tunes (first 200)", ""]
    for entry in report["left_out_tunes"][:200]:
        lines.append(f"- {entry['where']}: {entry['reason']}: {entry['detail']}")
    return "\n".join(lines) + "\n"


def write_corpus(corpus: Corpus, output: str) -> tuple[str, str, str]:
    """Write the v2 file and its report (``NAME.report.json`` and ``NAME.report.md``)."""
    json_path, md_path = report_paths(output)
    files.atomic_write_text(output, format_v2(corpus.tunes))
    files.atomic_write_text(json_path, json.dumps(corpus.report, indent=1) + "\n")
    files.atomic_write_text(md_path, report_markdown(corpus.report, output))
    return output, json_path, md_path
