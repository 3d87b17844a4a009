"""Every table of the relay's database comes from the numbered migrations, and a database
made before the recordings table became a migration still opens with its rows."""

from __future__ import annotations

import re
import sqlite3

from relay.records import audit
from relay.records.call_state import CallStateRecords
from relay.records.recordings import RecordingIndex
from relay.records.store import Store
from relay.records.store import schema as store_schema
from relay.records.store.engine import Database, open_database

# The recordings table as relay/records/recordings.py created it on open before migration 4.
OLD_RECORDINGS_DDL = """
CREATE TABLE IF NOT EXISTS recordings (
    id               INTEGER PRIMARY KEY,
    booking_id       INTEGER NOT NULL,
    establishment_id INTEGER NOT NULL,
    path             TEXT NOT NULL UNIQUE,
    media_type       TEXT NOT NULL DEFAULT 'video/webm',
    started_at       REAL NOT NULL,
    ended_at         REAL,
    size             INTEGER,
    sha256           TEXT,
    retention_until  REAL NOT NULL,
    legal_hold       INTEGER NOT NULL DEFAULT 0 CHECK (legal_hold IN (0, 1)),
    hold_reason      TEXT,
    hold_by          TEXT,
    hold_at          REAL,
    status           TEXT NOT NULL DEFAULT 'recording'
                     CHECK (status IN ('recording', 'complete', 'interrupted', 'failed', 'deleted')),
    deleted_at       REAL
);
CREATE INDEX IF NOT EXISTS recordings_booking ON recordings (booking_id);
CREATE INDEX IF NOT EXISTS recordings_expiry ON recordings (retention_until);
"""


def _tables(conn: Database | sqlite3.Connection) -> set[str]:
    if isinstance(conn, Database):
        return conn.table_names() - {"schema_version"}
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in rows if not r[0].startswith("sqlite_")} - {"schema_version"}


def _migration_tables() -> set[str]:
    pattern = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)
    return {name for script in store_schema.MIGRATIONS for name in pattern.findall(script)}


def test_fresh_database_tables_all_come_from_migrations(empty_db_target):
    store = Store.open(empty_db_target)
    try:
        conn = store.connection
        assert _tables(conn) == _migration_tables()
        assert {"recordings", "call_runtime", "audit", "audit_head", "bookings"} <= _tables(conn)
        # the modules that use their own tables make none on the side
        RecordingIndex(conn).add(1, 1, "a.webm", "video/webm", 10.0, 20.0)
        audit.AuditLog(conn).append("state", {"to": "live"}, booking_id=1)
        CallStateRecords(conn).save(1, "live", {"x"}, set(), 99.0, 10.0, None)
        assert _tables(conn) == _migration_tables()
        assert audit.verify(conn).ok
    finally:
        store.close()


def test_database_from_previous_schema_path_opens(tmp_path, monkeypatch):
    path = tmp_path / "old.sqlite"
    # The previous path: migrations 1-3 by the store, the recordings table by the index.
    monkeypatch.setattr(store_schema, "MIGRATIONS", store_schema.MIGRATIONS[:3])
    Store.open(path).close()
    monkeypatch.undo()
    with sqlite3.connect(path) as raw:
        raw.executescript(OLD_RECORDINGS_DDL)
        raw.execute(
            "INSERT INTO recordings (booking_id, establishment_id, path, started_at,"
            " retention_until, status) VALUES (7, 1, 'old.webm', 1.0, 2.0, 'complete')"
        )
    raw.close()

    store = Store.open(path)
    try:
        assert store.schema_version() == len(store_schema.MIGRATIONS)
        (rec,) = RecordingIndex(store.connection).list(booking_id=7)
        assert (rec.path, rec.status) == ("old.webm", "complete")
        assert _tables(store.connection) == _migration_tables()
    finally:
        store.close()


def test_index_on_a_bare_connection_gets_the_migrated_schema():
    conn = open_database(":memory:")
    index = RecordingIndex(conn)
    rec_id = index.add(3, 1, "b.webm", "video/webm", 1.0, 2.0)
    assert index.get(rec_id) is not None
    assert _tables(conn) == _migration_tables()
    version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    assert version == len(store_schema.MIGRATIONS)


def test_postgres_schema_has_the_same_tables_and_columns(tmp_path, pg_url):
    """The translated migrations give PostgreSQL the tables and columns SQLite has."""
    lite, pg = Store.open(tmp_path / "s.sqlite"), Store.open(pg_url)
    try:
        for table in _migration_tables():
            sqlite_cols = [r[1] for r in lite.connection.execute(f"PRAGMA table_info({table})")]
            pg_cols = [
                r[0]
                for r in pg.connection.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ?"
                    " AND table_schema = current_schema() ORDER BY ordinal_position",
                    (table,),
                )
            ]
            assert pg_cols == sqlite_cols, table
        assert pg.schema_version() == lite.schema_version() == len(store_schema.MIGRATIONS)
    finally:
        lite.close()
        pg.close()
