"""Writing files so that a reader never sees half of one: write beside it, then rename."""

from __future__ import annotations

import os


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
