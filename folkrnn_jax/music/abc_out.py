"""Writing v2 token sequences as ABC that musicians can open (in C, or transposed with
``key``), and reading that ABC back into tokens."""

from __future__ import annotations

import re
from typing import Sequence

from folkrnn_jax.music import transpose, vocab

# v2 mode tokens to the ABC key field with a C root.
MODE_TO_ABC_KEY: dict[str, str] = {
    "K:Cmaj": "C",
    "K:Cmin": "Cm",
    "K:Cdor": "Cdor",
    "K:Cmix": "Cmix",
}


BARS_PER_LINE = 4


_DURATION_LIKE = re.compile(r"^(\d+/\d+|\d+|/\d+)?[<>]?$")


def body_to_abc(body: Sequence[str], bars_per_line: int = BARS_PER_LINE) -> str:
    """Join v2 body tokens into ABC music lines.

    Notes, durations and broken rhythms are written together (``c3/2``, ``c>d``) and bar
    lines get spaces around them, so that a bar line followed by a duration cannot be read
    as an ending. A duration that follows a duration or a broken rhythm (only in an invalid
    tune) is set apart by a space, so that the tokens read back as they were (``c2 2``, not
    ``c22``). A new line starts every ``bars_per_line`` bars.
    """
    lines: list[str] = []
    current = ""
    bars = 0
    previous = ""
    for token in body:
        if _DURATION_LIKE.match(previous) and token[:1] in "/0123456789<>" and token[:1]:
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
    return "\n".join([f"X:{index}", f"T:{title}", meter, "L:1/8", key_field, body_to_abc(body)]) + "\n"


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
    """Tunes from an ABC file written by ``tunes.tunes_to_abc`` as v2 token lists."""
    tunes: list[list[str]] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if not lines or not lines[0].startswith("X:"):
            continue
        meter = mode = None
        music = []
        for line in lines:
            if re.match(r"^[A-Za-z]:", line) and not music:
                if line.startswith("M:"):
                    meter = line
                elif line.startswith("K:"):
                    mode = _ABC_KEY_TO_MODE.get(line[2:].strip())
                    if mode is None:
                        raise vocab.UnknownTokenError(line, f"{path}, tune {lines[0]}")
                continue
            music.append(line)
        body = abc_body_to_tokens(" ".join(music), f"{path}, tune {lines[0]}")
        tunes.append([t for t in (meter, mode) if t] + body)
    return tunes
