"""The durations, broken rhythms and tuplets the training data uses, per meter.

The constraint automaton (``folkrnn_jax.generate.constraint``) lets a tune use only these, so
that constrained sampling writes no ``d /3``, ``B /8`` or duplet ``(2`` that the data hardly
knows (abc2midi reads ``/3`` as "not a power of 2"). ``rhythms.json`` beside this module holds
the table; it is derived from the tokenised training data and regenerated with::

    python -c "from folkrnn_jax.generate import rhythms; rhythms.write_table()"

A rhythm counts as used in a meter when at least ``MIN_SHARE`` of the meter's tunes, and at
least ``MIN_TUNES`` tunes, use it (tunes, not occurrences: one tune full of ornaments does not
make them common). A tuplet is recorded with the duration token its notes carry ("" for none);
tuplets whose notes carry different durations are not counted.
"""

from __future__ import annotations

import collections
import functools
import json
import os
from typing import Sequence

from folkrnn_jax.data import v2_format
from folkrnn_jax.files import atomic_write_text
from folkrnn_jax.music import rhythm, vocab

TABLE_PATH = os.path.join(os.path.dirname(__file__), "rhythms.json")
# Paths from the repository root; the v2 tunes live in ../shared/data (see data/README.md).
SOURCES = ("../shared/data/data_v2_first5000.txt", "data/folk_corpus.txt")
MIN_SHARE = 0.01
MIN_TUNES = 3


def _tuplet_duration(tokens: Sequence[str], start: int, p: int) -> str | None:
    """The duration token ('' for none) all ``p`` notes after the tuplet token at ``start``
    carry; None when they differ or the tuplet is cut short (a bar line or chord inside)."""
    durations = []
    for i in range(start + 1, len(tokens)):
        if len(durations) == p:
            break
        token = tokens[i]
        if rhythm.is_note(token):
            after = tokens[i + 1] if i + 1 < len(tokens) else ""
            durations.append(after if rhythm.parse_duration(after) is not None else "")
        elif token in vocab.BAR_TOKENS or token in ("[", "]"):
            return None
    return durations[0] if len(durations) == p and len(set(durations)) == 1 else None


def count_rhythms(tunes: Sequence[Sequence[str]]) -> dict:
    """How many tunes of each meter use each rhythm.

    Args:
        tunes: v2 token lists (header first; ``<s>``/``</s>`` optional).

    Returns:
        {meter token: {"tunes": n, "rhythms": {token: tunes}, "tuplets": {"(3 /2": tunes}}},
        counting inline ``M:`` changes as the meter from there on.
    """
    counts: dict = collections.defaultdict(
        lambda: {"tunes": 0, "rhythms": collections.Counter(), "tuplets": collections.Counter()})
    for tune in tunes:
        meter = None
        seen: set[tuple[str, str, str]] = set()
        for i, token in enumerate(tune):
            if token.startswith("M:"):
                meter = token
                continue
            if meter is None:
                continue
            if rhythm.parse_duration(token) is not None or rhythm.parse_broken(token) is not None:
                seen.add((meter, "rhythms", token))
            elif rhythm.tuplet_ratio(token, meter) is not None:
                duration = _tuplet_duration(tune, i, rhythm.tuplet_ratio(token, meter)[0])
                if duration is not None:
                    seen.add((meter, "tuplets", f"{token} {duration}".strip()))
        for meter in {m for m, _, _ in seen} | ({tune[0]} if tune and tune[0].startswith("M:") else set()):
            counts[meter]["tunes"] += 1
        for meter, kind, key in seen:
            counts[meter][kind][key] += 1
    return {m: {"tunes": c["tunes"], "rhythms": dict(c["rhythms"]), "tuplets": dict(c["tuplets"])}
            for m, c in counts.items()}


def attested(tunes: Sequence[Sequence[str]], min_share: float = MIN_SHARE, min_tunes: int = MIN_TUNES) -> dict:
    """The table: per meter, the rhythms used by enough tunes (see the module docstring).

    Returns:
        {meter token: {"tunes": n, "rhythms": [tokens], "tuplets": {"(3": ["", "/2"]}}},
        meters in vocabulary order, tokens sorted.
    """
    table = {}
    counts = count_rhythms(tunes)
    for meter in vocab.METER_TOKENS:
        if meter not in counts:
            continue
        c = counts[meter]
        floor = max(min_tunes, min_share * c["tunes"])
        tuplets: dict[str, list[str]] = collections.defaultdict(list)
        for key, n in sorted(c["tuplets"].items()):
            if n >= floor:
                token, _, duration = key.partition(" ")
                tuplets[token].append(duration)
        table[meter] = {
            "tunes": c["tunes"],
            "rhythms": sorted(t for t, n in c["rhythms"].items() if n >= floor),
            "tuplets": dict(sorted(tuplets.items())),
        }
    return table


def write_table(paths: Sequence[str] = SOURCES, output: str = TABLE_PATH) -> dict:
    """Recompute the table from the v2 files ``paths`` and write it as JSON to ``output``."""
    tunes = [t for path in paths for t in v2_format.read_tunes(path)]
    table = {"sources": list(paths), "min_share": MIN_SHARE, "min_tunes": MIN_TUNES,
             "meters": attested(tunes)}
    atomic_write_text(output, json.dumps(table, indent=1) + "\n")
    return table


@functools.lru_cache(maxsize=1)
def load_table(path: str = TABLE_PATH) -> dict:
    """{meter token: {"rhythms": [tokens], "tuplets": {"(3": ["", "/2"]}}} from ``rhythms.json``."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)["meters"]
