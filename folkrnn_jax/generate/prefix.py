"""Prefixes: the tokens every sampled tune starts with, as v2 tokens, ABC text or a header."""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Sequence

import numpy as np

from folkrnn_jax.errors import InputError
from folkrnn_jax.music import abc_in, vocab

WILDCARD = "*"
WILDCARD_ID = -1

_ABC_FIELD = re.compile(r"^([A-Za-z]):(\S+)$")
# Parts of ABC music that the converter skips whole (annotations and chord symbols, !...! and
# +...+ decorations, grace notes, inline fields, comments): blanked before the checks below.
_ABC_SKIPPED = re.compile(r'"[^"]*"|![^!]*!|\+[^+]*\+|\{[^}]*\}|\[[A-Za-z]:[^\]]*\]|%.*')
# Characters of the ABC music a prefix can hold. Letters H-W and h-w are ABC decorations that
# the converter would drop silently: in a prefix they are typos ('foo'), so they are refused.
_NOT_ABC_MUSIC = re.compile(r"[^\sA-Ga-gxyz0-9/^_=,'<>|:\[\]().~\-\\]")
# 'Bb' in ABC is the note B and the note b an octave above it; typed in a prefix it is nearly
# always meant as B-flat, which ABC writes _B.
_FLAT_TYPO = re.compile(r"([A-G])b")


class PrefixTokenError(vocab.UnknownTokenError):
    """A word of a prefix that is neither a v2 token nor ABC music; the message names its
    position and the nearest v2 tokens."""

    def __init__(self, token: str, where: str, position: int, detail: str = ""):
        super().__init__(token, f"{where}, token {position}")
        self.position = position
        self.args = (f"{self.args[0]}{nearest_tokens(token)}{detail}",)


def nearest_tokens(token: str) -> str:
    """``" (nearest: ...)"`` with up to three v2 tokens spelled like ``token``, or ``""``."""
    close = difflib.get_close_matches(token, vocab.TOKENS, n=3, cutoff=0.5)
    return f" (nearest: {', '.join(close)})" if close else ""


def _word_at(text: str, offset: int) -> tuple[str, int]:
    """The whitespace-separated word of ``text`` around character ``offset`` and its number
    (from 1)."""
    for number, match in enumerate(re.finditer(r"\S+", text), start=1):
        if match.start() <= offset < match.end():
            return match.group(), number
    return text[offset:offset + 1], 0


def _split_fields(text: str) -> tuple[dict[str, str], int]:
    """The leading ``X:value`` words of an ABC prefix, by upper-case letter, and the offset of
    the music after them."""
    fields: dict[str, str] = {}
    offset = 0
    for match in re.finditer(r"\S+", text):
        field = _ABC_FIELD.match(match.group())
        if not field:
            return fields, match.start()
        fields[field.group(1).upper()] = field.group(2)
        offset = match.end()
    return fields, len(text) if fields else offset


def _check_abc_music(text: str, music_start: int, where: str) -> None:
    """Refuse what the converter would silently drop or misread in the music of an ABC prefix:
    characters that are no ABC music (naming the word as an unknown token) and ``Bb``-style
    words meant as flats."""
    blank = _ABC_SKIPPED.sub(lambda m: " " * len(m.group()), text[music_start:])
    blank = " " * music_start + blank
    bad = _NOT_ABC_MUSIC.search(blank)
    if bad:
        word, number = _word_at(text, bad.start())
        char = bad.group()
        hint = (f"; a sharp is written before the note (^{word[0]})" if char == "#" and word[:1].isalpha()
                else f"; {char!r} is no ABC note, rest or bar line either")
        raise PrefixTokenError(word, where, number, hint)
    flat = _FLAT_TYPO.search(blank)
    if flat:
        word, number = _word_at(text, flat.start())
        letter = flat.group(1)
        raise InputError(
            f"{where}, token {number} {word!r}: in ABC '{letter}b' is the note {letter} and the note b "
            f"(an octave above B), not {letter}-flat; write {letter}-flat as _{letter} (or give a K: "
            f"that has it), or '{letter} b' if you mean the two notes"
        )


def prefix_fields(text: str) -> dict[str, str] | None:
    """The ``M:``/``K:``/``L:`` fields of a prefix read as ABC (see ``parse_prefix``), or ``None``
    when the prefix is v2 tokens."""
    words = text.split()
    if all(w == WILDCARD or w in vocab.TOKEN_TO_ID for w in words):
        return None
    return _split_fields(text)[0]


def prefix_key(prefix: str | Sequence[str]) -> str | None:
    """The root of the ``K:`` field of an ABC prefix (``"D"`` for ``"M:6/8 K:Dmix |: A>B c2"``,
    ``"Bb"``, ``"F#"``), the key the tunes should be written in; ``None`` for a v2-token prefix,
    one without ``K:``, or a root of C (the model's own key)."""
    fields = prefix_fields(prefix) if isinstance(prefix, str) else None
    if not fields or "K" not in fields:
        return None
    try:
        key = abc_in.parse_key(fields["K"])
    except abc_in.LeftOut:
        return None  # parse_prefix reports the bad K: field
    root = key.root_letter + {1: "#", -1: "b", 0: ""}[key.root_alter]
    # The four roots on a white key that the output does not spell (Cb is written as B).
    root = {"Cb": "B", "Fb": "E", "E#": "F", "B#": "C"}.get(root, root)
    return None if root == "C" else root


def abc_prefix(text: str, where: str = "--prefix") -> list[str]:
    """v2 tokens of an ABC fragment such as ``"M:6/8 K:Dmix |: A>B c2"`` (fields inline or on
    their own lines, then music), converted by ``folkrnn_jax.music.abc_in.convert_tune``: transposed to
    C keeping the mode, durations relative to ``L:1/8``. Without ``M:`` the fragment is read
    in 4/4 and without ``K:`` in C major, and that header token is left out so that the model
    chooses it. Fields alone (``"M:6/8 K:Dmix"``) give just the header tokens.

    Raises:
      PrefixTokenError: a word holds characters that are no ABC music (``foo``, ``F#``).
      InputError: ``Bb``-style words (ABC reads them as two notes; B-flat is ``_B``), or the
        converter's reason when the fragment does not convert.
    """
    fields, music_start = _split_fields(text)
    _check_abc_music(text, music_start, where)
    music = text[music_start:].strip()
    try:
        meter = abc_in.parse_meter(fields["M"])[0] if "M" in fields else None
        mode = abc_in.parse_key(fields["K"]).v2_token if "K" in fields else None
    except abc_in.LeftOut as error:
        raise _unconvertible(text, where, error.reason, error.detail) from None
    if not music:
        return [t for t in (meter, mode) if t]
    lines = ["X:1", "M:" + fields.get("M", "4/4")]
    if "L" in fields:
        lines.append("L:" + fields["L"])
    lines += ["K:" + fields.get("K", "C"), music]
    result = abc_in.convert_tune("\n".join(lines) + "\n", where="ABC prefix")
    if not result.ok:
        raise _unconvertible(text, where, result.reason, result.detail)
    tokens = list(result.tokens)
    return [t for t in tokens if not ((t.startswith("M:") and "M" not in fields)
                                      or (t.startswith("K:") and "K" not in fields))]


def _unconvertible(text: str, where: str, reason: str, detail: str) -> InputError:
    """The error for a prefix that is neither v2 tokens nor ABC that converts: it names the
    first word that is not a v2 token, as that is the likelier typo, and the ABC reason."""
    for number, word in enumerate(text.split(), start=1):
        if word != WILDCARD and word not in vocab.TOKEN_TO_ID:
            return PrefixTokenError(word, where, number, f"; read as ABC, it does not convert: {reason}: {detail}")
    return InputError(f"ABC {where} {text!r} cannot be converted: {reason}: {detail}")


def parse_prefix(prefix: str | Sequence[str], where: str = "--prefix") -> list[str]:
    """Prefix tokens, always starting with ``<s>``.

    A prefix whose words are all v2 tokens (``*`` allowed: a wildcard position that the model
    fills) is used as it is. A string with other words is read as ABC (``"M:6/8 K:Dmix |: A>B
    c2"``, see ``abc_prefix``), so that nothing in it is silently dropped: a word that is
    neither (``foo``, ``F#``) raises ``PrefixTokenError`` naming it, its position and the
    nearest v2 tokens.

    Args:
      prefix: the text, or a list of v2 tokens.
      where: what the prefix is, for the errors (``"--prefix"``).

    Returns:
      The tokens, ``<s>`` first.
    """
    tokens = prefix.split() if isinstance(prefix, str) else list(prefix)
    unknown = [(n, t) for n, t in enumerate(tokens, start=1) if t != WILDCARD and t not in vocab.TOKEN_TO_ID]
    if unknown:
        if not isinstance(prefix, str) or WILDCARD in tokens:
            number, token = unknown[0]
            raise PrefixTokenError(token, where, number)
        tokens = abc_prefix(prefix, where)
    if not tokens or tokens[0] != vocab.START:
        tokens = [vocab.START] + tokens
    return tokens


def _comma_splits(word: str) -> list[list[str]]:
    """Every way of reading ``word`` as v2 tokens joined by single commas."""
    splits = [[word]] if word in vocab.TOKEN_TO_ID else []
    for i, char in enumerate(word):
        if char == "," and word[:i] in vocab.TOKEN_TO_ID:
            splits += [[word[:i], *rest] for rest in _comma_splits(word[i + 1:])]
    return splits


def parse_token_list(text: str, where: str = "--mask_tokens") -> list[str]:
    """v2 tokens typed as one string: separated by whitespace (``"B, =A, |:"``), as tokens
    may hold a comma; a word that is no token but splits at its commas into tokens in exactly
    one way is read so (``"|:,:|"``, ``"B,,C"`` -> ``B,`` and ``C``).

    Args:
      text: the tokens.
      where: what the text is, for the errors.

    Returns:
      The tokens in order.

    Raises:
      PrefixTokenError: a word that is no token and does not split into tokens.
      InputError: a word that splits into tokens in more than one way.
    """
    tokens: list[str] = []
    for number, word in enumerate(text.split(), start=1):
        splits = [[word]] if word in vocab.TOKEN_TO_ID else _comma_splits(word)
        if not splits:
            raise PrefixTokenError(word, where, number)
        if len(splits) > 1:
            readings = " or ".join(" ".join(split) for split in splits[:3])
            raise InputError(f"{where}: {word!r} reads as {readings}; separate the tokens with spaces")
        tokens += splits[0]
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
