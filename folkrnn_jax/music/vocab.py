"""The folk-rnn v2 vocabulary: 137 ABC-like tokens in the original model's index order.

The order is the one printed in "Making sense of the folk-rnn v2 model, part 1". It came from
a Python 2 set in the original training script and cannot be recomputed from the data, so it
is part of the model: index 104 is ``M:4/4``, 59 is ``</s>``, 80 is ``<s>``.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

from folkrnn_jax.errors import InputError

TOKENS: tuple[str, ...] = (
    "d'", '=A,', "^c'", '=e', '=d', '=g', '=f', '=a',
    '=c', '=b', '_G', '_E', '_D', '_C', '_B', '_A',
    '2<', '2>', '=E', '=D', '_B,', '=F', '=A', '4',
    '=C', '=B', '_g', '8', '_e', '_d', '_c', '<',
    '_a', '(9', '|2', 'D', '|1', '(2', '(3', '|:',
    '(7', '(4', '(5', ':|', '9', '3/2', '3/4', "=f'",
    '2', 'd', '_E,', 'B,', '16', '|', '^A,', "b'",
    "_e'", 'M:9/8', 'E,', '</s>', '3', '7', '^F,', '=G,',
    'C', 'G', "e'", "_d'", "^f'", '[', 'b', 'c',
    'z', 'g', '^G,', '=F,', 'K:Cmin', 'K:Cmix', "=c'", 'C,',
    '<s>', ']', '=G', 'M:12/8', '6', '=E,', 'K:Cmaj', '>',
    'B', 'F', "c'", '^C,', '5/2', 'G,', 'f', "=e'",
    '_b', '_A,', 'F,', '/2>', '/2<', "f'", 'M:6/8', '4>',
    'M:4/4', 'A,', 'M:2/4', '=C,', '5', 'M:3/4', '12', 'M:3/2',
    'K:Cdor', 'A', 'E', "a'", '(6', '^A', '^C', '^D',
    '^F', '^G', 'a', "g'", 'D,', '/4', 'e', '/3',
    '7/2', '=B,', '/8', '^a', '^c', '^d', '/2', '^f',
    '^g',
)
VOCAB_SIZE: int = len(TOKENS)
TOKEN_TO_ID: dict[str, int] = {token: index for index, token in enumerate(TOKENS)}
START = "<s>"
END = "</s>"
START_ID: int = TOKEN_TO_ID[START]
END_ID: int = TOKEN_TO_ID[END]
METER_TOKENS: tuple[str, ...] = ("M:4/4", "M:6/8", "M:3/4", "M:2/4", "M:9/8", "M:12/8", "M:3/2")
MODE_TOKENS: tuple[str, ...] = ("K:Cmaj", "K:Cmin", "K:Cdor", "K:Cmix")
BAR_TOKENS: tuple[str, ...] = ("|", "|:", ":|", "|1", "|2")


class UnknownTokenError(InputError):
    """A token that is not one of the 137 v2 tokens."""

    def __init__(self, token: str, where: str = ""):
        self.token = token
        self.where = where
        location = f" in {where}" if where else ""
        super().__init__(f"unknown token {token!r}{location}: not in the 137-token v2 vocabulary")


def encode(tokens: Iterable[str], where: str = "") -> np.ndarray:
    """Map token strings to int32 ids; ``where`` names the source for the error message."""
    ids = []
    for position, token in enumerate(tokens):
        try:
            ids.append(TOKEN_TO_ID[token])
        except KeyError:
            place = f"{where}, token {position + 1}" if where else f"token {position + 1}"
            raise UnknownTokenError(token, place) from None
    return np.asarray(ids, dtype=np.int32)


def decode(ids: Iterable[int]) -> list[str]:
    """Map ids back to token strings."""
    out = []
    for i in ids:
        i = int(i)
        if not 0 <= i < VOCAB_SIZE:
            raise ValueError(f"token id {i} is outside the vocabulary (0..{VOCAB_SIZE - 1})")
        out.append(TOKENS[i])
    return out


_PITCH = re.compile(r"^[\^_=]?[A-Ga-g][,']*$")


def is_pitch(token: str) -> bool:
    """True for note tokens such as ``C``, ``^f'``, ``=B,`` (not rests, durations or bars)."""
    return bool(_PITCH.match(token))


PITCH_TOKENS: tuple[str, ...] = tuple(t for t in TOKENS if is_pitch(t))


def split_header(tokens: Sequence[str]) -> tuple[str | None, str | None, list[str]]:
    """Split a token sequence into (meter token, mode token, body), dropping ``<s>``/``</s>``.

    Meter and mode are the header tokens that lead the tune, in either order; anything after
    the first body token belongs to the body.
    """
    tokens = [t for t in tokens if t not in (START, END)]
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
