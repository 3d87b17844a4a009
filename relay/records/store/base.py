"""The store's connection: opening, migrating, one transaction helper, booking events."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Self

from relay.records.store import schema
from relay.records.store.engine import Database, DatabaseOptions, open_database

log = logging.getLogger("relay.records.store")


def transaction(conn: Database) -> contextlib.AbstractContextManager[Database]:
    """The one write transaction of the relay's database (``Database.transaction``: SQLite's
    BEGIN IMMEDIATE, PostgreSQL's advisory write lock), so a check and the write it guards
    cannot interleave with another writer. Inside a transaction already open on this
    connection it joins that one (the outer one commits or rolls back), so record modules
    can be composed."""
    return conn.transaction()


def migrate(conn: Database) -> None:
    """Apply the numbered migrations not yet applied, each with its schema_version row.

    Any connection to the relay's database goes through this (the store on open; the
    recordings index when handed a connection of its own), so no table is made elsewhere.
    The same scripts run on both engines (PostgreSQL's get ``engine.translate_ddl``).
    """
    for version, script in enumerate(schema.MIGRATIONS, start=1):
        if conn.apply_migration(version, script):
            log.info("store schema migrated to version %d", version)


class RecordsBase:
    """The connection, its transactions and migrations; the record kinds build on it."""

    def __init__(self, conn: Database) -> None:
        self._db = conn

    @property
    def connection(self) -> Database:
        """For modules that keep their own tables in this database (audit, recordings)."""
        return self._db

    # ---- lifecycle ------------------------------------------------------------------

    @classmethod
    def open(cls, target: str | Path, options: DatabaseOptions | None = None) -> Self:
        """A SQLite file (0600, WAL) for a path, PostgreSQL for a ``postgresql://`` URL."""
        db = open_database(target, options)
        log.info("store opened: %s", db.name)
        store = cls(db)
        try:
            store._migrate()
        except BaseException:
            db.close()
            raise
        return store

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        migrate(self._db)

    def schema_version(self) -> int:
        row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _tx(self) -> contextlib.AbstractContextManager[Database]:
        return self._db.transaction()

    def _event(self, db, booking_id: int, now: float, actor: str, event: str, detail="") -> None:
        db.execute(
            "INSERT INTO booking_events (booking_id, at, actor, event, detail)"
            " VALUES (?, ?, ?, ?, ?)",
            (booking_id, now, actor, event, detail),
        )
