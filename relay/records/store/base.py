"""The store's connection: opening, migrating, one transaction helper, booking events."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from relay import private
from relay.records.store import schema

log = logging.getLogger("relay.records.store")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """The one write transaction of the relay's database: BEGIN IMMEDIATE takes the write
    lock up front, so a check and the write it guards cannot interleave with another writer.
    Inside a transaction already open on this connection it joins that one (the outer one
    commits or rolls back), so record modules can be composed."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the numbered migrations not yet applied, each with its schema_version row.

    Any connection to the relay's database goes through this (the store on open; the
    recordings index when handed a connection of its own), so no table is made elsewhere.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT (datetime('now')))"
    )
    for version, script in enumerate(schema.MIGRATIONS, start=1):
        row = conn.execute("SELECT 1 FROM schema_version WHERE version = ?", (version,))
        if row.fetchone():
            continue
        try:
            # executescript runs the whole script; BEGIN/COMMIT make it one transaction.
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\n;"
                f"INSERT INTO schema_version (version) VALUES ({version});\nCOMMIT;"
            )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("store schema migrated to version %d", version)


class RecordsBase:
    """The connection, its transactions and migrations; the record kinds build on it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._db = conn

    @property
    def connection(self) -> sqlite3.Connection:
        """For modules that keep their own tables in this database (audit, recordings)."""
        return self._db

    # ---- lifecycle ------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Self:
        on_disk = str(path) != ":memory:"
        if on_disk:  # personal data: 0600 in a private folder, a readable one refused
            private.prepare_database(Path(path))
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=0.5)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        if on_disk:
            private.tighten_database(Path(path))
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=500")
        store = cls(conn)
        store._migrate()
        return store

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        migrate(self._db)

    def schema_version(self) -> int:
        row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db)

    def _event(self, db, booking_id: int, now: float, actor: str, event: str, detail="") -> None:
        db.execute(
            "INSERT INTO booking_events (booking_id, at, actor, event, detail)"
            " VALUES (?, ?, ?, ?, ?)",
            (booking_id, now, actor, event, detail),
        )

