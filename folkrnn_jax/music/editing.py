"""Editing a sampled tune: the start of a tune to vary (its first bars, or its A part)."""

from __future__ import annotations

from typing import Sequence

from folkrnn_jax.errors import FieldError
from folkrnn_jax.music import vocab


def keep_bars(tokens: Sequence[str], bars: int | None = None, part: str | None = None) -> list[str]:
    """The start of a tune to vary: its header and first ``bars`` bars, or its A part.

    A bar ends at a bar line after at least one note or rest; the bar line is kept. The A part
    runs to the first ``:|`` (through the ``|2`` ending that follows it, to that ending's bar
    line), or is the first 8 bars of a tune without repeats.

    Args:
        tokens: the tune (``<s>`` ... ``</s>``).
        bars: how many bars to keep (>= 1).
        part: ``"A"`` for the A part (instead of ``bars``).

    Returns:
        The kept tokens, from ``<s>``, without ``</s>``.

    Raises:
        FieldError: on ``bars`` when the tune has fewer bars, or a bad ``part``.
    """
    body = [t for t in tokens if t != vocab.END]
    if part is not None and part != "A":
        raise FieldError("part", f"{part!r}: only 'A' (or give bars)")
    ends: list[int] = []  # index of each bar's closing bar line
    used = False
    for i, token in enumerate(body):
        if token in vocab.BAR_TOKENS:
            if used:
                ends.append(i)
            used = False
        elif token[:2] not in ("M:", "K:") and token != vocab.START and (token[0].isalpha() or token[0] in "^_="):
            used = True
    if part == "A":
        for i, token in enumerate(body):
            if token == ":|":
                if i + 1 < len(body) and body[i + 1] == "|2":
                    later = [e for e in ends if e > i + 1]
                    return body[: later[0] + 1] if later else body
                return body[: i + 1]
        bars = 8
    if bars is None or bars < 1:
        raise FieldError("bars", "give a number of bars >= 1, or part='A'")
    if bars > len(ends):
        raise FieldError("bars", f"the tune has {len(ends)} complete bars; keep at most that many")
    return body[: ends[bars - 1] + 1]
