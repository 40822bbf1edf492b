"""The tunebook: saved tunes in one SQLite file in the data directory.

Each entry keeps its title, its ABC (with ``N:`` lines naming model, seed, temperature and
prefix, so the file alone says how to draw the tune again), the settings as JSON and the time
it was saved. A connection is opened per call: the web server calls from several threads, and
SQLite's own locking then keeps writers apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import re
import sqlite3
from typing import Any, Iterator

FILE_NAME = "tunebook.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tunes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    abc TEXT NOT NULL,
    settings TEXT NOT NULL,
    created TEXT NOT NULL
)
"""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One saved tune."""

    id: int
    title: str
    abc: str
    settings: dict[str, Any]
    created: str

    def as_json(self) -> dict[str, Any]:
        """The entry as a JSON-ready dict."""
        return dataclasses.asdict(self)


class Tunebook:
    """Saved tunes in ``DATA_DIR/tunebook.sqlite``.

    Args:
        data_dir: the folder (made if missing).
    """

    def __init__(self, data_dir: str):
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.join(data_dir, FILE_NAME)
        with self._connect() as connection:
            connection.execute(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            with connection:  # commits on success, rolls back on error
                yield connection
        finally:
            connection.close()

    @staticmethod
    def _entry(row: tuple) -> Entry:
        return Entry(int(row[0]), row[1], row[2], json.loads(row[3]), row[4])

    def add(self, title: str, abc: str, settings: dict[str, Any]) -> Entry:
        """Save a tune; returns its entry (with its new id)."""
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with self._connect() as connection:
            cursor = connection.execute(
                "INSERT INTO tunes (title, abc, settings, created) VALUES (?, ?, ?, ?)",
                (title, abc, json.dumps(settings, sort_keys=True), created),
            )
            new_id = int(cursor.lastrowid)
        return Entry(new_id, title, abc, settings, created)

    def get(self, entry_id: int) -> Entry | None:
        """The entry with ``entry_id``, or None."""
        with self._connect() as connection:
            row = connection.execute("SELECT id, title, abc, settings, created FROM tunes WHERE id = ?",
                                     (entry_id,)).fetchone()
        return None if row is None else self._entry(row)

    def list(self, query: str | None = None) -> list[Entry]:
        """Entries in the order saved; with ``query``, those whose title or ABC holds it
        (case-insensitive, taken literally)."""
        sql = "SELECT id, title, abc, settings, created FROM tunes"
        args: tuple = ()
        if query:
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", query) + "%"
            sql += " WHERE title LIKE ? ESCAPE '\\' OR abc LIKE ? ESCAPE '\\'"
            args = (pattern, pattern)
        with self._connect() as connection:
            rows = connection.execute(sql + " ORDER BY id", args).fetchall()
        return [self._entry(row) for row in rows]

    def delete(self, entry_id: int) -> bool:
        """Remove an entry; False when there was none."""
        with self._connect() as connection:
            return connection.execute("DELETE FROM tunes WHERE id = ?", (entry_id,)).rowcount > 0

    def export_abc(self, entries: list[Entry] | None = None) -> str:
        """The tunes as one ABC file, numbered ``X:1``, ``X:2``... in the order saved."""
        entries = self.list() if entries is None else entries
        return "\n".join(renumber(entry.abc, i + 1) for i, entry in enumerate(entries))


def renumber(abc: str, index: int) -> str:
    """``abc`` (one tune) with its ``X:`` line set to ``index``."""
    return re.sub(r"^X:.*$", f"X:{index}", abc, count=1, flags=re.MULTILINE)
