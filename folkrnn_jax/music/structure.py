"""Structural checks of v2 token sequences: bar durations, repeats, endings, part structure.

Durations are read by ``rhythm.read_tune`` (the module docstring there gives the token
semantics: durations, broken rhythm, tuplets, chords); a bar lasts the sum of its notes',
rests' and chords' durations. Under that reading the v2 bars add up (``c 2> e 2 d B c 2`` is
one 4/4 bar).

Repeats, as ``tune_problems`` checks them (ABC practice, checked against the v2 data):

* ``:|`` without an opening ``|:`` is fine anywhere: it repeats from the previous repeat
  boundary (or the start of the tune), as in ABC; ``|:`` opened and never closed by ``:|``
  is a problem, and so is ``|:`` opened again while a repeat is still open;
* ``|1`` must be followed by ``|2`` (after a ``:|``) and ``|2`` must follow a ``|1``;
* ``[`` and ``]`` must pair up, and a chord may hold only notes and durations;
* a tuplet, broken rhythm or duration with no note to apply to is a problem;
* a sampled sequence (one that starts with ``<s>``) must end with ``</s>``: a tune cut at the
  length limit is not a tune.

Bar durations: every bar must last exactly the meter's bar length, except that a shorter
bar is allowed when it is the first bar (a pickup), the last bar, next to a repeat or ending
boundary (``|:``, ``:|``, ``|1``, ``|2``: a partial bar that completes or opens a pickup), or
when it and a neighbouring short bar add up to a whole bar (a bar split across a pickup).
A bar longer than the meter is never allowed.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Sequence

from folkrnn_jax.music import rhythm, vocab
from folkrnn_jax.music.rhythm import meter_bar_length

BAR_TOKENS = frozenset(vocab.BAR_TOKENS)
REPEAT_BOUNDARIES = frozenset(("|:", ":|", "|1", "|2"))


@dataclasses.dataclass
class Bar:
    """One bar: its tokens, duration, and the bar-line tokens before and after it (None at the ends)."""

    tokens: list[str]
    duration: Fraction
    opening: str | None
    closing: str | None
    meter: str | None
    index_in_body: int = 0


@dataclasses.dataclass
class _Parse:
    bars: list[Bar]
    problems: list[str]
    meter: str | None
    mode: str | None
    body: list[str]


def _parse(tokens: Sequence[str]) -> _Parse:
    """Bars with their durations (from ``rhythm.read_tune``'s events), plus token-level problems.

    Args:
        tokens: a v2 token sequence.

    Returns:
        The non-empty stretches between bar lines as ``Bar``s (their tokens leave out bar lines,
        ``M:``/``K:`` tokens and ``<s>``/``</s>``; a bar's meter is the one in force where it
        closes), the reader's problems, the header and the body.
    """
    reading = rhythm.read_tune(tokens)
    # Events know the stretch (count of bar lines before them) they lie in.
    stretch_durations: dict[int, Fraction] = {}
    for event in reading.events:
        stretch_durations[event.bar] = stretch_durations.get(event.bar, Fraction(0)) + event.duration
    found: list[Bar] = []
    meter = reading.meter
    bar_tokens: list[str] = []
    bar_start, opening, stretch = 0, None, 0
    for position, token in enumerate([*reading.body, None]):
        if token is None or token in BAR_TOKENS:
            if bar_tokens:
                duration = stretch_durations.get(stretch, Fraction(0))
                found.append(Bar(bar_tokens, duration, opening, token, meter, bar_start))
            bar_tokens, opening, bar_start, stretch = [], token, position + 1, stretch + 1
        elif token.startswith("M:"):
            meter = token
        elif not token.startswith("K:") and token not in (vocab.START, vocab.END):
            bar_tokens.append(token)
    return _Parse(found, reading.problems, reading.meter, reading.mode, reading.body)


def bars(tokens: Sequence[str]) -> list[Bar]:
    """The bars of a tune (empty stretches between adjacent bar lines are not bars)."""
    return _parse(tokens).bars


def bar_durations(tokens: Sequence[str]) -> list[Fraction]:
    """Duration of each bar, in units of ``L:1/8``."""
    return [bar.duration for bar in _parse(tokens).bars]


def bar_fits(tune_bars: Sequence[Bar], default_meter: str | None = None) -> list[bool]:
    """For each bar, whether its duration fits the meter under the module's pickup rules."""
    n = len(tune_bars)
    fits = []
    lengths = []
    for bar in tune_bars:
        meter = bar.meter or default_meter
        lengths.append(meter_bar_length(meter) if meter else None)
    for i, bar in enumerate(tune_bars):
        length = lengths[i]
        if length is None:
            fits.append(True)
            continue
        if bar.duration == length:
            fits.append(True)
            continue
        if bar.duration > length or bar.duration <= 0:
            fits.append(False)
            continue
        ok = (
            i == 0
            or i == n - 1
            or bar.opening in REPEAT_BOUNDARIES
            or bar.closing in REPEAT_BOUNDARIES
        )
        if not ok and i > 0 and tune_bars[i - 1].duration + bar.duration == length:
            ok = True
        if not ok and i < n - 1 and tune_bars[i + 1].duration + bar.duration == length:
            ok = True
        fits.append(ok)
    return fits


def _repeat_problems(body: Sequence[str]) -> list[str]:
    problems = []
    open_repeat = False
    pending_first_ending = False  # saw |1, waiting for :| then |2
    seen_close_after_first = False
    for token in body:
        if token == "|:":
            if open_repeat:
                problems.append("'|:' opened again before the previous '|:' was closed by ':|'")
            open_repeat = True
        elif token == ":|":
            open_repeat = False
            if pending_first_ending:
                seen_close_after_first = True
        elif token == "|1":
            if pending_first_ending:
                problems.append("'|1' without a '|2' (another '|1' came first)")
            pending_first_ending = True
            seen_close_after_first = False
        elif token == "|2":
            if not pending_first_ending:
                problems.append("'|2' without a '|1' before it")
            elif not seen_close_after_first:
                problems.append("'|2' follows '|1' with no ':|' between them")
            pending_first_ending = False
    if open_repeat:
        problems.append("'|:' never closed by ':|'")
    if pending_first_ending:
        problems.append("'|1' without a '|2'")
    return problems


def problems_by_kind(tokens: Sequence[str]) -> dict[str, list[str]]:
    """Problems grouped as 'header', 'repeats' (repeats and endings), 'tokens' (brackets,
    tuplets, broken rhythms, stray durations) and 'bars' (bar durations)."""
    parsed = _parse(tokens)
    out: dict[str, list[str]] = {"header": [], "repeats": [], "tokens": [], "bars": []}
    if parsed.meter is None:
        out["header"].append("no M: meter header")
    if not parsed.body or not parsed.bars:
        out["header"].append("empty body")
    out["repeats"].extend(_repeat_problems(parsed.body))
    out["tokens"].extend(parsed.problems)
    if tokens and tokens[0] == vocab.START and tokens[-1] != vocab.END:
        # A sampled sequence (it starts with <s>) that never ended was cut at the length limit.
        out["tokens"].append("the tune never ended: no </s> (cut at the length limit)")
    for i, (bar, ok) in enumerate(zip(parsed.bars, bar_fits(parsed.bars, parsed.meter))):
        if not ok:
            meter = bar.meter or parsed.meter
            out["bars"].append(
                f"bar {i + 1} lasts {bar.duration} eighths, {meter} needs {meter_bar_length(meter)}"
            )
    return out


def tune_problems(tokens: Sequence[str]) -> list[str]:
    """Human-readable structural problems of a tune; [] for a valid tune."""
    return [p for problems in problems_by_kind(tokens).values() for p in problems]


def is_valid_tune(tokens: Sequence[str]) -> bool:
    return not tune_problems(tokens)


def bar_line_pattern(tokens: Sequence[str], compact: bool = False) -> str:
    """The sequence of bar-line tokens of the body, space separated.

    With ``compact=True`` runs of plain ``|`` are written ``|*n``: ``|: |*7 :| |: |*7 :|``.
    """
    _, _, body = vocab.split_header(tokens)
    seq = [t for t in body if t in BAR_TOKENS]
    if not compact:
        return " ".join(seq)
    out: list[str] = []
    run = 0
    for t in seq + [None]:
        if t == "|":
            run += 1
            continue
        if run:
            out.append("|" if run == 1 else f"|*{run}")
            run = 0
        if t is not None:
            out.append(t)
    return " ".join(out)


@dataclasses.dataclass(frozen=True)
class PartStructure:
    """Parts in order as letters (``AABB``) with their lengths in bars."""

    letters: str
    bars: tuple[int, ...]

    def __str__(self) -> str:
        return self.letters

    @property
    def is_aabb_8(self) -> bool:
        return self.letters == "AABB" and all(b == 8 for b in self.bars)


def _part_bars(part: Sequence[Bar]) -> int:
    total = Fraction(0)
    for bar in part:
        if bar.meter:
            total += bar.duration / meter_bar_length(bar.meter)
    return int(total + Fraction(1, 2)) if total > 0 else 0


def _content(part: Sequence[Bar]) -> tuple:
    return tuple(tuple(b.tokens) for b in part)


def part_structure(tokens: Sequence[str]) -> PartStructure:
    """Parts from the repeat structure: ``|: A :| |: B :|`` -> AABB with bar counts.

    A repeated part appears twice (with ``|1``/``|2`` endings it is the common bars plus
    each ending). Parts between repeats that are not repeated appear once. A tune with no
    repeat marks is cut into 8-bar parts when its length is a multiple of 8 bars; such parts,
    and unrepeated parts, share a letter when at least 3/4 of their bars are identical.
    Lengths count whole bars (pickups and the shortened closing bar add up to one).
    """
    parsed = _parse(tokens)
    tune_bars = [b for b in parsed.bars]
    for b in tune_bars:
        b.meter = b.meter or parsed.meter
    # Occurrences: list of bar lists, with a flag whether they came from a repeat.
    occurrences: list[tuple[list[Bar], int]] = []  # (bars, group id for repeated copies)
    group = 0
    current: list[Bar] = []
    common: list[Bar] | None = None
    first_ending: list[Bar] | None = None
    in_second = False
    second: list[Bar] = []

    def flush_plain() -> None:
        nonlocal current
        if current:
            occurrences.append((current, -1))
        current = []

    for bar in tune_bars:
        opening, closing = bar.opening, bar.closing
        if opening == "|:":
            flush_plain()
        if opening == "|1":
            common, current = current, []
        if opening == "|2" and first_ending is not None:
            in_second = True
            second = []
        if in_second:
            second.append(bar)
            ending_bars = sum(b.duration for b in first_ending)
            done = sum(b.duration for b in second) >= ending_bars or closing in ("|:", ":|", None)
            if done:
                group += 1
                occurrences.append(((common or []) + first_ending, group))
                occurrences.append(((common or []) + second, group))
                common, first_ending, in_second, second = None, None, False, []
            continue
        current.append(bar)
        if closing == ":|":
            if common is not None:
                first_ending, current = current, []
            else:
                group += 1
                occurrences.append((current, group))
                occurrences.append((list(current), group))
                current = []
    if in_second and first_ending is not None:
        group += 1
        occurrences.append(((common or []) + first_ending, group))
        occurrences.append(((common or []) + second, group))
    elif first_ending is not None:
        occurrences.append(((common or []) + first_ending, -1))
    if common is not None and not first_ending:
        current = common + current
    flush_plain()

    # A pickup before the first '|:' is not a part of its own: it joins the next part.
    merged: list[tuple[list[Bar], int]] = []
    carry: list[Bar] = []
    for part, gid in occurrences:
        if gid == -1 and _part_bars(part) == 0:
            carry.extend(part)
            continue
        merged.append((carry + part, gid) if carry else (part, gid))
        carry = []
    if carry and merged:
        last, gid = merged[-1]
        merged[-1] = (last + carry, gid)
    occurrences = merged or occurrences

    if len(occurrences) == 1 and occurrences[0][1] == -1:
        whole = occurrences[0][0]
        n = _part_bars(whole)
        full = [b for b in whole]
        if n >= 16 and n % 8 == 0 and len(full) >= n:
            # Cut into 8-bar chunks, ignoring a leading pickup bar.
            start = 1 if full and full[0].meter and full[0].duration < meter_bar_length(full[0].meter) else 0
            chunks = [full[start + 8 * k: start + 8 * (k + 1)] for k in range(n // 8)]
            occurrences = [(c, -1) for c in chunks if c]

    letters: list[str] = []
    lengths: list[int] = []
    reps: list[tuple] = []  # content of each letter
    group_letter: dict[int, str] = {}
    for part, gid in occurrences:
        if gid in group_letter:
            letter = group_letter[gid]
        else:
            content = _content(part)
            letter = None
            for k, other in enumerate(reps):
                same = sum(1 for a, b in zip(content, other) if a == b)
                if len(content) == len(other) and same * 4 >= 3 * len(content):
                    letter = chr(ord("A") + k) if k < 26 else "?"
                    break
            if letter is None:
                reps.append(content)
                k = len(reps) - 1
                letter = chr(ord("A") + k) if k < 26 else "?"
            if gid >= 0:
                group_letter[gid] = letter
        letters.append(letter)
        lengths.append(_part_bars(part))
    return PartStructure("".join(letters), tuple(lengths))
