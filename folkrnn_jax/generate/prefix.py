"""Prefixes: the tokens every sampled tune starts with, as v2 tokens, ABC text or a header."""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np

from folkrnn_jax.errors import InputError
from folkrnn_jax.music import abc_in, vocab

WILDCARD = "*"
WILDCARD_ID = -1

_ABC_FIELD = re.compile(r"^([A-Za-z]):(\S+)$")


def abc_prefix(text: str) -> list[str]:
    """v2 tokens of an ABC fragment such as ``"M:6/8 K:Dmix |: A>B c2"`` (fields inline or on
    their own lines, then music), converted by ``folkrnn_jax.abc_in.convert_tune``: transposed to
    C keeping the mode, durations relative to ``L:1/8``. Without ``M:`` the fragment is read
    in 4/4 and without ``K:`` in C major, and that header token is left out so that the model
    chooses it. Raises ``InputError`` with the converter's reason when it cannot convert."""
    words = text.split()
    fields: dict[str, str] = {}
    position = 0
    while position < len(words) and _ABC_FIELD.match(words[position]):
        name, value = _ABC_FIELD.match(words[position]).groups()
        fields[name.upper()] = value
        position += 1
    music = " ".join(words[position:])
    lines = ["X:1", "M:" + fields.get("M", "4/4")]
    if "L" in fields:
        lines.append("L:" + fields["L"])
    lines += ["K:" + fields.get("K", "C"), music]
    result = abc_in.convert_tune("\n".join(lines) + "\n", where="ABC prefix")
    if not result.ok:
        raise InputError(f"ABC prefix {text!r} cannot be converted: {result.reason}: {result.detail}")
    tokens = list(result.tokens)
    return [t for t in tokens if not ((t.startswith("M:") and "M" not in fields)
                                      or (t.startswith("K:") and "K" not in fields))]


def parse_prefix(prefix: str | Sequence[str], where: str = "--prefix") -> list[str]:
    """Prefix tokens, always starting with ``<s>``; unknown tokens raise an error naming them.
    ``*`` is allowed: a wildcard position that the model fills. A string that is not v2 tokens
    but converts as ABC (``"M:6/8 K:Dmix |: A>B c2"``, see ``abc_prefix``) is accepted as
    that ABC; when it does not convert either, the error names the unknown v2 token."""
    tokens = prefix.split() if isinstance(prefix, str) else list(prefix)
    try:
        vocab.encode([t for t in tokens if t != WILDCARD], where)
    except vocab.UnknownTokenError as error:
        if not isinstance(prefix, str) or WILDCARD in tokens:
            raise
        try:
            tokens = abc_prefix(prefix)
        except Exception:  # noqa: BLE001 - not ABC either: report the unknown v2 token
            raise error from None
    if not tokens or tokens[0] != vocab.START:
        tokens = [vocab.START] + tokens
    return tokens


def header_prefix(
    prefix: str | Sequence[str] = (), meter: str | None = None, mode: str | None = None,
    where: str = "--prefix",
) -> list[str]:
    """``parse_prefix`` with ``M:``/``K:`` header tokens built from ``meter`` (``"6/8"`` or
    ``"M:6/8"``) and ``mode`` (``"dor"``, ``"Cdor"`` or ``"K:Cdor"``) put right after ``<s>``."""
    tokens = parse_prefix(prefix, where)
    header = []
    if meter:
        token = meter if meter.startswith("M:") else "M:" + meter
        if token not in vocab.METER_TOKENS:
            raise InputError(f"unknown meter {meter!r}: one of {', '.join(t[2:] for t in vocab.METER_TOKENS)}")
        if any(t.startswith("M:") for t in tokens):
            raise InputError("give the meter either in the prefix or as meter, not both")
        header.append(token)
    if mode:
        name = mode[2:] if mode.startswith("K:") else mode
        name = name if name.startswith("C") and len(name) == 4 else "C" + name
        token = "K:" + name
        if token not in vocab.MODE_TOKENS:
            raise InputError(f"unknown mode {mode!r}: one of maj, min, dor, mix")
        if any(t.startswith("K:") for t in tokens):
            raise InputError("give the mode either in the prefix or as mode, not both")
        header.append(token)
    tokens = tokens[:1] + header + tokens[1:]
    # Every v2 tune opens with 'M:'. A prefix that skips it (a mode with no meter, a tune
    # body with no header) leaves the meter to the model as a wildcard; else the body would
    # start with no bar length and the constraint could only close the tune at once.
    if len(tokens) > 1 and not tokens[1].startswith("M:") and tokens[1] != WILDCARD:
        tokens.insert(1, WILDCARD)
    return tokens


def prefix_ids(tokens: Sequence[str]) -> np.ndarray:
    """Ids of parsed prefix tokens, ``*`` as ``WILDCARD_ID``."""
    return np.asarray([WILDCARD_ID if t == WILDCARD else vocab.TOKEN_TO_ID[t] for t in tokens], np.int32)


@dataclasses.dataclass(frozen=True)
class PromptBatch:
    """The prefixes of a batch of tunes as arrays."""

    ids: np.ndarray  # [tunes, width] int32, WILDCARD_ID at wildcards, 0 past each prefix
    lengths: np.ndarray  # [tunes] int32
    start: int  # positions < start are forced in every tune


def prepare_prompts(
    num_tunes: int,
    prefix: str | Sequence[str],
    prefixes: Sequence[str | Sequence[str]] | None,
    meter: str | None,
    mode: str | None,
    max_length: int,
) -> PromptBatch:
    """One prefix for all tunes (``prefix``) or one per tune (``prefixes``), with the
    ``meter``/``mode`` header, as a ``PromptBatch``; a prefix must leave room under
    ``max_length``."""
    if prefixes is not None:
        if len(prefixes) != num_tunes:
            raise InputError(f"{len(prefixes)} prefixes for {num_tunes} tunes")
        parsed = [header_prefix(p, meter, mode, f"prefix {i + 1}") for i, p in enumerate(prefixes)]
    else:
        parsed = [header_prefix(prefix, meter, mode)] * num_tunes
    ids = [prefix_ids(p) for p in parsed]
    lengths = np.asarray([len(p) for p in ids], np.int32)
    if lengths.max(initial=1) >= max_length:
        raise InputError(f"a prefix of {lengths.max()} tokens leaves no room under max_length={max_length}")
    width = int(lengths.max(initial=1))
    batch = np.zeros((num_tunes, width), np.int32)
    for i, p in enumerate(ids):
        batch[i, : len(p)] = p
    # The first position that some tune samples (a wildcard or the end of its prefix).
    firsts = [int(np.argmax(p == WILDCARD_ID)) if (p == WILDCARD_ID).any() else len(p) for p in ids]
    return PromptBatch(batch, lengths, max(1, min(firsts, default=1)))
