"""Writing v2 token sequences as ABC that musicians can open."""

from __future__ import annotations

from typing import Sequence

from folkrnn_jax import vocab

# v2 mode tokens to the ABC key field with a C root.
MODE_TO_ABC_KEY: dict[str, str] = {
    "K:Cmaj": "C",
    "K:Cmin": "Cm",
    "K:Cdor": "Cdor",
    "K:Cmix": "Cmix",
}

BARS_PER_LINE = 4


def split_tune(tokens: Sequence[str]) -> tuple[str | None, str | None, list[str]]:
    """Split a token sequence into (meter token, mode token, body), dropping ``<s>``/``</s>``.

    Meter and mode are the header tokens that lead the tune, in either order; anything after
    the first body token belongs to the body.
    """
    tokens = [t for t in tokens if t not in (vocab.START, vocab.END)]
    meter = mode = None
    position = 0
    while position < len(tokens) and tokens[position][:2] in ("M:", "K:"):
        if tokens[position].startswith("M:") and meter is None:
            meter = tokens[position]
        elif tokens[position].startswith("K:") and mode is None:
            mode = tokens[position]
        else:
            break
        position += 1
    return meter, mode, list(tokens[position:])


def body_to_abc(body: Sequence[str], bars_per_line: int = BARS_PER_LINE) -> str:
    """Join v2 body tokens into ABC music lines.

    Notes, durations and broken rhythms are written together (``c3/2``, ``c>d``) and bar
    lines get spaces around them, so that a bar line followed by a duration cannot be read
    as an ending. A new line starts every ``bars_per_line`` bars.
    """
    lines: list[str] = []
    current = ""
    bars = 0
    for token in body:
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
) -> str:
    """Render one v2 tune as a complete ABC tune with ``X:``, ``T:``, ``M:``, ``L:1/8``, ``K:``."""
    meter, mode, body = split_tune(tokens)
    meter = meter or default_meter
    mode = mode or default_mode
    title = title or f"folkrnn_jax tune {index}"
    return "\n".join(
        [
            f"X:{index}",
            f"T:{title}",
            meter,
            "L:1/8",
            "K:" + MODE_TO_ABC_KEY[mode],
            body_to_abc(body),
        ]
    ) + "\n"


def tunes_to_abc(tunes: Sequence[Sequence[str]], titles: Sequence[str] | None = None) -> str:
    """Render several tunes as one ABC file, numbered from X:1, separated by blank lines."""
    parts = []
    for i, tune in enumerate(tunes):
        title = titles[i] if titles is not None else None
        parts.append(tokens_to_abc(tune, index=i + 1, title=title))
    return "\n".join(parts)
