"""Reading the user's text files with errors that name the file and line, and writing files so
that a reader never sees half of one (write beside it, then rename)."""

from __future__ import annotations

import os
import re

from folkrnn_jax.errors import InputError, MissingFileError

# ABC files may declare their encoding (ABC 2.1, 2.2.1; UTF-8 is the default): older
# collections are Latin-1 and say so with ``%abc-charset iso-8859-1``.
_CHARSET = re.compile(rb"^%%?abc-charset[ \t]+([A-Za-z0-9_.:-]+)", re.MULTILINE)


def read_text(path: str, what: str = "file", declared_charset: bool = False) -> str:
    """The text of a file the user named, decoded as UTF-8 (a leading byte-order mark is
    dropped) with universal newlines, as ``open(path).read()`` gives it.

    Args:
      path: the file.
      what: what the file is, for the errors (``"data file"``, ``"ABC file"``).
      declared_charset: honour an ABC ``%abc-charset`` line (ABC files only).

    Returns:
      The text, lines ending in ``\\n``.

    Raises:
      MissingFileError: there is no such file.
      InputError: the bytes are not UTF-8 (or not the declared charset); the message names the
        file, the line, the column and the byte offset of the first bad byte.
    """
    if not os.path.exists(path):
        raise MissingFileError(f"{what} not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    encoding = "utf-8-sig"
    declared = _CHARSET.search(data[:4096]) if declared_charset else None
    if declared:
        encoding = declared.group(1).decode("ascii").lower()
    try:
        text = data.decode(encoding)
    except LookupError:
        raise InputError(f"{path}: unknown %abc-charset {encoding!r}") from None
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        name = "UTF-8" if encoding == "utf-8-sig" else encoding
        declare = " or declare its charset (%abc-charset iso-8859-1)" if declared_charset else ""
        raise InputError(
            f"{path}: line {line}, column {column} (byte {error.start}): byte "
            f"0x{data[error.start]:02x} is not {name} text; save the {what} as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8){declare}"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def atomic_write_bytes(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` through ``path.tmp`` and an atomic rename; creates the
    folder. Returns ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def atomic_write_text(path: str, text: str) -> str:
    """``atomic_write_bytes`` of ``text`` encoded as UTF-8. Returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))
