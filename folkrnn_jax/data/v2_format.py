"""The v2 data format.

A v2 file holds one tune per block, blocks separated by a blank line: an ``M:`` line, a
``K:`` line and one line of space-separated body tokens. A training sequence is
``<s> M:.. K:.. body... </s>``.
"""

from __future__ import annotations

import os
import re
from typing import Iterable, Sequence

import numpy as np

from folkrnn_jax import files
from folkrnn_jax.errors import InputError, MissingFileError
from folkrnn_jax.music import abc_out, vocab


class DataFormatError(InputError):
    """A v2 data file that cannot be read; the message names the file and line."""


def parse_v2_text(text: str, path: str = "<string>") -> list[list[str]]:
    """Parse v2-format text into token lists (headers and body, without ``<s>``/``</s>``)."""
    tunes: list[list[str]] = []
    block: list[tuple[int, str]] = []
    lines = text.splitlines()
    for number, line in enumerate(lines + [""], start=1):
        if line.strip():
            block.append((number, line.strip()))
            continue
        if block:
            tunes.append(_parse_block(block, path, len(tunes) + 1))
            block = []
    return tunes


def _parse_block(block: list[tuple[int, str]], path: str, tune_number: int) -> list[str]:
    first_line = block[0][0]
    if len(block) != 3:
        raise DataFormatError(
            f"{path}:{first_line}: tune {tune_number} has {len(block)} lines; a v2 block is "
            "exactly an M: line, a K: line and a line of body tokens"
        )
    (meter_line, meter), (mode_line, mode), (body_line, body) = block
    if meter not in vocab.METER_TOKENS:
        raise DataFormatError(
            f"{path}:{meter_line}: tune {tune_number}: expected a v2 meter line "
            f"({' '.join(vocab.METER_TOKENS)}), got {meter!r}"
        )
    if mode not in vocab.MODE_TOKENS:
        raise DataFormatError(
            f"{path}:{mode_line}: tune {tune_number}: expected a v2 mode line "
            f"({' '.join(vocab.MODE_TOKENS)}), got {mode!r}"
        )
    tokens = body.split()
    for token in tokens:
        if token not in vocab.TOKEN_TO_ID:
            raise DataFormatError(
                f"{path}:{body_line}: tune {tune_number}: unknown token {token!r} "
                "(not in the 137-token v2 vocabulary)"
            )
    return [meter, mode] + tokens


# The real v2 tunes live beside the checkout in ../shared/data, never in this repository.
SHARED_V2_FILES = ("data_v2_first5000.txt", "original_samples_config5_seed24_T1.txt")
SHARED_V2_HINT = (
    "the real folk-rnn v2 tunes are not part of this repository: put the first 5,000 tunes of "
    "data/data_v2 of github.com/IraKorshunova/folk-rnn at ../shared/data/data_v2_first5000.txt "
    "(data/README.md says how)"
)


def read_v2_file(path: str) -> list[list[str]]:
    """Read a v2-format file; errors name the file and line.

    Raises:
      MissingFileError: no such file; for the v2 tunes kept outside the repository
        (``SHARED_V2_FILES``) the message says how to get them.
    """
    if not os.path.exists(path) and os.path.basename(path) in SHARED_V2_FILES:
        raise MissingFileError(f"data file not found: {path} ({SHARED_V2_HINT})")
    return parse_v2_text(files.read_text(path, "data file"), path)


def encode_tunes(tunes: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """Token lists to id arrays ``<s> tokens </s>``."""
    return [vocab.encode([vocab.START, *tune, vocab.END]) for tune in tunes]


def format_v2(tunes_tokens: Iterable[Sequence[str]]) -> str:
    """v2 data text: per tune an ``M:`` line, a ``K:`` line and the body tokens, blank line
    between tunes."""
    blocks = []
    for tokens in tunes_tokens:
        if len(tokens) < 3 or tokens[0] not in vocab.METER_TOKENS or tokens[1] not in vocab.MODE_TOKENS:
            raise ValueError(f"not a v2 tune (M:, K:, body): {' '.join(tokens[:5])}...")
        blocks.append(f"{tokens[0]}\n{tokens[1]}\n{' '.join(tokens[2:])}\n")
    return "\n".join(blocks)


def read_tunes(path: str) -> list[list[str]]:
    """Tunes from a v2-format file or from an ABC file written by our sampler."""
    text = files.read_text(path, "tunes file")
    if re.search(r"^X:", text, re.MULTILINE):
        return abc_out.parse_abc_text(text, path)
    return parse_v2_text(text, path)
