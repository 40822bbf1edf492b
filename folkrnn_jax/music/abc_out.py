"""Writing v2 token sequences as ABC that musicians can open (in C, or transposed with
``key``), and reading that ABC back into tokens."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import re
from fractions import Fraction
from typing import Sequence

from folkrnn_jax.errors import InputError
from folkrnn_jax.music import abc_in, rhythm, transpose, vocab

# v2 mode tokens to the ABC key field with a C root.
MODE_TO_ABC_KEY: dict[str, str] = {
    "K:Cmaj": "C",
    "K:Cmin": "Cm",
    "K:Cdor": "Cdor",
    "K:Cmix": "Cmix",
}


BARS_PER_LINE = 4


_DURATION_LIKE = re.compile(r"^(\d+/\d+|\d+|/\d+)?[<>]?$")


@dataclasses.dataclass(frozen=True)
class BeatGrouping:
    """How the notes of one bar are beamed: in groups of ``groups`` eighths (in order, from
    the bar line), and, inside a group that holds notes shorter than an eighth, in groups of
    ``split`` eighths (None: never split).

    Attributes:
        groups: group lengths in eighths, adding up to one bar (``(3, 3)`` for 6/8).
        split: the length to split a group into when it holds sixteenths (``2`` in 4/4).
    """

    groups: tuple[Fraction, ...]
    split: Fraction | None = None


def beat_grouping(meter_token: str) -> BeatGrouping:
    """The beaming of a meter, as folk players read it and standard engraving writes it.

    * Compound meters (6/8, 9/8, 12/8, 6/4 ...: a numerator divisible by 3, above 3): by the
      dotted beat, three units (``ABc dBA`` in 6/8).
    * 4/4 (and so 2/2 and ``C|``, which the v2 data writes ``M:4/4``): by the half bar, four
      eighths (``ABcd efge``), the way reels are printed and written on thesession.org and the
      engraving rule that eighths in 4/4 may be beamed across beats 1-2 and 3-4; a half bar
      holding sixteenths is split by the quarter (``A/B/c dB``), as that rule also asks.
    * Other x/4 meters (2/4, 3/4, 5/4 ...): by the quarter (``AB cd`` in a polka).
    * x/2 meters (3/2 hornpipes): by the half note, split by the quarter around sixteenths.
    * Other x/8 meters (5/8, 7/8 ...): a group of three, then groups of two (7/8: 3+2+2);
      an even count, by twos.

    Args:
        meter_token: an ``M:n/d`` token such as ``M:6/8``.

    Returns:
        The meter's ``BeatGrouping``; groups add up to ``rhythm.meter_bar_length(meter_token)``.
    """
    numerator, denominator = (int(x) for x in meter_token[2:].split("/"))
    unit = Fraction(8, denominator)  # one beat unit of the meter in eighths
    if numerator % 3 == 0 and numerator > 3:
        return BeatGrouping((3 * unit,) * (numerator // 3))
    if denominator == 2:
        return BeatGrouping((unit,) * numerator, split=unit / 2)
    if denominator == 4 and numerator == 4:
        return BeatGrouping((2 * unit, 2 * unit), split=unit)
    if denominator <= 4 or numerator <= 3:
        return BeatGrouping((unit,) * numerator if denominator <= 4 else (numerator * unit,))
    if numerator % 2:
        return BeatGrouping((3 * unit,) + (2 * unit,) * ((numerator - 3) // 2))
    return BeatGrouping((2 * unit,) * (numerator // 2))


@functools.lru_cache(maxsize=None)
def _group_starts(meter_token: str) -> tuple[Fraction, tuple[Fraction, ...], Fraction | None]:
    """(bar length, start of every group in the bar, split) of a meter, in eighths."""
    grouping = beat_grouping(meter_token)
    starts = tuple(sum(grouping.groups[:i], Fraction(0)) for i in range(len(grouping.groups)))
    return sum(grouping.groups, Fraction(0)), starts, grouping.split


def _group_of(meter_token: str, position: Fraction) -> tuple[int, int]:
    """(group, part of that group by the meter's ``split``) that ``position`` (eighths from
    the bar line) falls in; a position past the bar (an overfull bar) carries on with the
    same pattern."""
    bar, starts, split = _group_starts(meter_token)
    bars, offset = divmod(position, bar)
    index = bisect.bisect_right(starts, offset) - 1
    part = int((offset - starts[index]) // split) if split else 0
    return int(bars) * len(starts) + index, part


def beam_breaks(body: Sequence[str], meter: str | None = "M:4/4") -> set[int]:
    """Positions in ``body`` before which ``body_to_abc`` writes a space, so that abcm2ps
    beams the notes by the beat of the meter in force (``beat_grouping``).

    Notes are placed in time by ``rhythm.read_tune``. A note starts a new beam when it starts
    in another beat group than the note before it in the same bar (or than the start of the
    tuplet or broken-rhythm pair before it). Never split: a broken
    rhythm (``c>d`` stays together), the notes of a tuplet (the space goes before ``(3``), a
    chord. A short first bar, or a short bar that opens a part after ``|:`` or ``:|`` and is
    not closed by ``:|``, is a pickup: it is placed against the end of the bar. Inline
    ``M:`` tokens change the meter from there on; the space before a note goes before any
    inline field in front of it.

    Args:
        body: v2 body tokens (no ``<s>``/``</s>``, header already split off).
        meter: the header's ``M:`` token; None reads as ``M:4/4`` (the header
            ``tokens_to_abc`` writes then).

    Returns:
        Indices into ``body`` of the tokens to write a space before.
    """
    if any(token in (vocab.START, vocab.END) for token in body):
        return set()
    meter = meter or "M:4/4"
    # The mode token keeps a mode token at the start of the body in the body.
    events = rhythm.read_tune([meter, "K:Cmaj", *body]).events
    if len(events) < 2:
        return set()
    # What each event needs: the meter in force, the token its written unit starts with,
    # whether it is tied to the one before (broken rhythm, inside a tuplet).
    meters, starts, joined, tuplet_member = [], [], [], []
    meter_now, tuplet_left, broken, tuplet_at = meter, 0, False, None
    event_at = {event.index: i for i, event in enumerate(events)}
    for position, token in enumerate(body):
        if token.startswith("M:"):
            meter_now = token
        elif token in vocab.BAR_TOKENS:
            broken = False
        elif token[-1] in "<>":
            broken = True
        elif token[0] == "(" and rhythm.tuplet_ratio(token, meter_now) is not None:
            tuplet_left, tuplet_at = rhythm.tuplet_ratio(token, meter_now)[0], position
        if position not in event_at:
            continue
        first = tuplet_at == position - 1
        meters.append(meter_now)
        starts.append(tuplet_at if first else position)
        joined.append(broken or (tuplet_left > 0 and not first))
        tuplet_member.append(tuplet_left > 0)
        tuplet_left, broken, tuplet_at = max(tuplet_left - 1, 0), False, None
    # Where each bar starts, in eighths; a pickup bar starts earlier, against its bar's end.
    bar_tokens = [token for token in body if token in vocab.BAR_TOKENS]
    bar_start: dict[int, Fraction] = {}
    bar_end: dict[int, Fraction] = {}
    bar_meter: dict[int, str] = {}
    for i, event in enumerate(events):
        bar_start.setdefault(event.bar, event.start)
        bar_meter.setdefault(event.bar, meters[i])
        bar_end[event.bar] = event.start + event.duration
    first_bar = events[0].bar
    for bar, start in bar_start.items():
        opened = bar_tokens[bar - 1] if bar > 0 else None
        closed = bar_tokens[bar] if bar < len(bar_tokens) else None
        length = rhythm.meter_bar_length(bar_meter[bar])
        short = bar_end[bar] - start < length
        pickup = closed in ("|", "|:") and (bar == first_bar or opened in ("|:", ":|"))
        if short and pickup:
            bar_start[bar] = start - (length - (bar_end[bar] - start))
    # Groups (and their halves) of every event; a group holding a note shorter than an
    # eighth (outside a tuplet) is split by the meter's ``split``.
    places = []
    split_groups = set()
    for i, event in enumerate(events):
        group, part = _group_of(meters[i], event.start - bar_start[event.bar])
        places.append((group, part))
        if event.duration < 1 and not tuplet_member[i]:
            split_groups.add((event.bar, group))
    # A unit that cannot be split (a tuplet, notes joined by broken rhythms) counts as where
    # it starts: the note after a triplet that crosses the beat starts a new beam.
    breaks = set()
    head = 0
    for i in range(1, len(events)):
        if events[i].bar != events[i - 1].bar:
            head = i
            continue
        if joined[i]:
            continue
        (group, part), (before, before_part) = places[i], places[head]
        head = i
        if group != before or ((events[i].bar, group) in split_groups and part != before_part):
            position = starts[i]
            while position > 0 and body[position - 1][:2] in ("M:", "K:"):
                position -= 1
            breaks.add(position)
    return breaks


def body_to_abc(body: Sequence[str], bars_per_line: int = BARS_PER_LINE, meter: str | None = "M:4/4") -> str:
    """Join v2 body tokens into ABC music lines, beamed by the beat of ``meter``.

    Notes, durations and broken rhythms are written together (``c3/2``, ``c>d``), with a
    space where a beam should end (``beam_breaks``: ``ABc dBA`` in 6/8), and bar lines get
    spaces around them, so that a bar line followed by a duration cannot be read as an
    ending. A duration that follows a duration or a broken rhythm (only in an invalid tune) is
    set apart by a space, so that the tokens read back as they were (``c2 2``, not ``c22``).
    A new line starts every ``bars_per_line`` bars.

    Args:
        body: v2 body tokens.
        bars_per_line: bars per line of music.
        meter: the ``M:`` token in force at the start of the body.

    Returns:
        The music lines joined by newlines.
    """
    breaks = beam_breaks(body, meter)
    lines: list[str] = []
    current = ""
    bars = 0
    previous = ""
    for position, token in enumerate(body):
        if (position in breaks or (_DURATION_LIKE.match(previous) and token[:1] in "/0123456789<>"
                                   and token[:1])) and current and not current.endswith(" "):
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
    meter, mode, body = vocab.split_header(tokens)
    meter = meter or default_meter
    mode = mode or default_mode
    title = title or f"folkrnn_jax tune {index}"
    if key is None:
        key_field = "K:" + MODE_TO_ABC_KEY[mode]
    else:
        body = transpose.transpose_body(body, mode, key, courtesy)
        key_field = f"K:{transpose.spell_root(key, mode)}{transpose.MODE_SUFFIX[mode]}"
    return "\n".join([f"X:{index}", f"T:{title}", meter, "L:1/8", key_field, body_to_abc(body, meter=meter)]) + "\n"


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


_ABC_TOKEN = re.compile(
    r"\[[MK]:[^\]]*\]|:\||\|:|\|1|\|2|\||\(\d|\[|\]|[=^_]?[A-Ga-gz][,']*"
    r"|(?:\d+/\d+|\d+|/\d+)?[<>]|\d+/\d+|/\d+|\d+|\s+"
)


_ABC_KEY_TO_MODE = {v: k for k, v in MODE_TO_ABC_KEY.items()}


def abc_body_to_tokens(body: str, where: str = "") -> list[str]:
    """Split ABC music lines written by ``tunes.body_to_abc`` back into v2 tokens.

    Limits: only the ABC our writer produces (v2 pitches and durations, ``L:1/8``, C-rooted
    keys, inline ``[M:..]``/``[K:..]``); decorations, slurs, grace notes, ``||``, ``::`` and
    the like are not v2 tokens and raise ``UnknownTokenError``.
    """
    out: list[str] = []
    position = 0
    while position < len(body):
        m = _ABC_TOKEN.match(body, position)
        if not m or m.end() == position:
            raise vocab.UnknownTokenError(body[position:position + 10], where)
        text = m.group(0)
        position = m.end()
        if text.isspace():
            continue
        if text.startswith("[M:"):
            text = text[1:-1]
        elif text.startswith("[K:"):
            text = _ABC_KEY_TO_MODE.get(text[3:-1], text[1:-1])
        out.append(text)
    vocab.encode(out, where)
    return out


def parse_abc_text(text: str, path: str = "<string>") -> list[list[str]]:
    """Tunes from an ABC file written by ``tunes_to_abc`` (or ``experiments.sample``) as v2
    token lists.

    A tune in C (``K:C``, ``K:Cm``, ``K:Cdor``, ``K:Cmix``) reads back as exactly the tokens
    it was written from. A tune written in another key (``--key`` or an ABC ``--prefix`` in
    D) is read by the raw-ABC converter ``abc_in.convert_tune``, which transposes it back to
    C: the same notes, spelled as the converter spells them (a courtesy ``_B`` may read as
    ``B``), and a leading bar line dropped.

    Args:
        text: the ABC file's text.
        path: the file's name, for error messages.

    Returns:
        One token list per tune (``M:``, ``K:``, body), in file order.

    Raises:
        UnknownTokenError: a C-rooted tune with something that is not a v2 token.
        InputError: a tune in another key that the converter leaves out (with its reason).
    """
    tunes: list[list[str]] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if not lines or not lines[0].startswith("X:"):
            continue
        meter = mode = None
        music = []
        transposed = False
        for line in lines:
            if re.match(r"^[A-Za-z]:", line) and not music:
                if line.startswith("M:"):
                    meter = line
                elif line.startswith("K:"):
                    mode = _ABC_KEY_TO_MODE.get(line[2:].strip())
                    transposed = mode is None
                continue
            music.append(line)
        where = f"{path}, tune {lines[0]}"
        if transposed:
            result = abc_in.convert_tune("\n".join(lines), where)
            if not result.ok:
                raise InputError(f"{where}: cannot read it back as v2 tokens: {result.reason} ({result.detail})")
            tunes.append(result.tokens)
            continue
        body = abc_body_to_tokens(" ".join(music), where)
        tunes.append([t for t in (meter, mode) if t] + body)
    return tunes
