"""The database engines behind the store: one connection type for SQLite and PostgreSQL.

``open_database(target)`` takes a SQLite path (the embedded default) or a ``postgresql://``
URL and returns a ``Database``: ``execute(sql, params)`` giving a cursor whose rows read by
column name and by index (like ``sqlite3.Row``), ``executemany``, ``in_transaction``,
``transaction()`` (the one write transaction), ``apply_migration`` and ``close``. The SQL in
the record modules is written once, portably, with ``?`` placeholders; the PostgreSQL side
rewrites them to psycopg's ``%s`` and translates the migrations' DDL (``translate_ddl``).

Writers are serialised the same way on both engines: SQLite's ``BEGIN IMMEDIATE`` takes the
file's write lock; on PostgreSQL every write transaction first takes one transaction-level
advisory lock (``WRITE_LOCK_KEY``), shared by every relay node on the database. A capacity or
allowance check and the insert it guards, and the audit chain's head and the record appended
after it, therefore never interleave with another writer on any node. One lock is simple and
obviously correct; the writes are a few short indexed statements, rare next to media, so the
serialisation costs nothing measurable (docs/multinode.md, "Records", has the figures).

Why a synchronous psycopg connection on the event loop: see relay/records/store/__init__.py.
The risk is bounded by ``connect_timeout`` and a ``statement_timeout`` (a stuck database holds
the loop for at most that long), and ``idle_in_transaction_session_timeout`` frees the write
lock of a node that stopped inside a transaction.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay import private

log = logging.getLogger("relay.records.store")

SQLITE = "sqlite"
POSTGRES = "postgresql"
WRITE_LOCK_KEY = 0x72_656C_6179
"""The advisory lock every PostgreSQL write transaction takes first ("relay" in ASCII)."""

SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT (datetime('now')))"
)
"""The migration runner's own table (the same text as before PostgreSQL, so an existing
SQLite database's schema is unchanged; ``applied_at`` is now passed from Python)."""


class IntegrityError(sqlite3.IntegrityError):
    """A constraint refused a write (unique, foreign key, check, not null), on either engine.

    A subclass of sqlite3's own so code written against the SQLite store keeps catching it."""


@dataclass(frozen=True)
class DatabaseOptions:
    """Bounds on how long the database may hold the event loop (PostgreSQL only)."""

    connect_timeout_s: float = 5.0
    statement_timeout_s: float = 2.0
    idle_in_transaction_timeout_s: float = 10.0
    synchronous_commit: bool = False
    """False: a commit does not wait for the server's WAL fsync, which is the durability of
    the SQLite default (WAL, synchronous=NORMAL): a server crash may lose the last fraction
    of a second of commits, never consistency (the audit head and its record commit
    together). True: every commit waits for the fsync (milliseconds on the loop each)."""


def is_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def open_database(
    target: str | Path, options: DatabaseOptions | None = None, read_only: bool = False
) -> Database:
    """A SQLite file (or ``:memory:``) for a path, PostgreSQL for a ``postgresql://`` URL.
    ``read_only``: inspection tools (audit verify) that must never write."""
    if is_url(target):
        return PostgresDatabase(str(target), options or DatabaseOptions(), read_only)
    return SqliteDatabase(target, read_only)


def describe(target: str | Path) -> str:
    """What may be logged about a database: the file, or the server and database name (a URL
    may carry a password, so it never reaches a log as given)."""
    if not is_url(target):
        return f"sqlite {target}"
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(str(target))
    except Exception:  # noqa: BLE001 (a malformed URL: say so without echoing it)
        return "postgresql (unreadable URL)"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"postgresql {host}:{port}/{info.get('dbname') or info.get('user') or ''}"


def utc_stamp() -> str:
    """``datetime('now')``'s format, made in Python (the same on both engines)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


class Database:
    """One connection to the relay's database; used from one thread (the event loop)."""

    engine: str = ""
    name: str = ""
    """For logs: ``describe`` of the target."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> Any:
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        raise NotImplementedError

    def transaction(self) -> contextlib.AbstractContextManager[Database]:
        raise NotImplementedError

    def apply_migration(self, version: int, script: str) -> bool:
        """Run one numbered migration with its schema_version row, in one transaction;
        False when it was already applied."""
        raise NotImplementedError

    def table_names(self) -> set[str]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


# ---- SQLite ------------------------------------------------------------------------------


class SqliteDatabase(Database):
    engine = SQLITE

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.name = describe(path)
        if read_only:
            self.raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            self.raw.row_factory = sqlite3.Row
            return
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
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.raw.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(*exc.args) from exc

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        try:
            return self.raw.executemany(sql, seq)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(*exc.args) from exc

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """BEGIN IMMEDIATE takes the write lock up front; inside an open transaction this
        joins it (the outer one commits or rolls back), so record modules compose."""
        if self.raw.in_transaction:
            yield self
            return
        self.raw.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.raw.execute("ROLLBACK")
            raise
        self.raw.execute("COMMIT")

    def apply_migration(self, version: int, script: str) -> bool:
        self.raw.execute(SCHEMA_VERSION_DDL)
        if self.raw.execute(
            "SELECT 1 FROM schema_version WHERE version = ?", (version,)
        ).fetchone():
            return False
        try:
            # executescript commits first and runs the whole text: BEGIN/COMMIT inside it
            # make the script and its schema_version row one transaction.
            self.raw.executescript(
                f"BEGIN IMMEDIATE;\n{script}\n;"
                f"INSERT INTO schema_version (version, applied_at)"
                f" VALUES ({int(version)}, '{utc_stamp()}');\nCOMMIT;"
            )
        except BaseException:
            if self.raw.in_transaction:
                self.raw.execute("ROLLBACK")
            raise
        return True

    def table_names(self) -> set[str]:
        rows = self.raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {r[0] for r in rows if not r[0].startswith("sqlite_")}

    def close(self) -> None:
        self.raw.close()


# ---- PostgreSQL --------------------------------------------------------------------------

_LITERAL = re.compile(r"'(?:[^']|'')*'")
_DDL_TYPES = [
    (
        re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\b", re.I),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
]
_NOW_DEFAULT = "datetime('now')"
_PG_NOW = "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')"


def _outside_literals(text: str, change: Any) -> str:
    """Apply ``change`` to the parts of ``text`` that are not in '...' string literals."""
    out, pos = [], 0
    for m in _LITERAL.finditer(text):
        out.append(change(text[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(change(text[pos:]))
    return "".join(out)


def translate_ddl(script: str) -> str:
    """A migration written for SQLite, for PostgreSQL: SQLite's rowid key becomes an identity
    column, INTEGER a 64-bit BIGINT (SQLite's integers are 64-bit), REAL DOUBLE PRECISION,
    BLOB BYTEA, and ``datetime('now')`` its PostgreSQL spelling. String literals are kept."""
    script = script.replace(_NOW_DEFAULT, _PG_NOW)

    def types(part: str) -> str:
        for pattern, replacement in _DDL_TYPES:
            part = pattern.sub(replacement, part)
        return part

    return _outside_literals(script, types)


@functools.lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders (outside string literals) to psycopg's ``%s``; every literal ``%``
    doubled (psycopg reads % anywhere in the text, literals included)."""
    out, pos = [], 0
    for m in _LITERAL.finditer(sql):
        out.append(sql[pos : m.start()].replace("%", "%%").replace("?", "%s"))
        out.append(m.group(0).replace("%", "%%"))
        pos = m.end()
    out.append(sql[pos:].replace("%", "%%").replace("?", "%s"))
    return "".join(out)


class Row:
    """A result row read by index or by (case-insensitive) column name, like sqlite3.Row."""

    __slots__ = ("_values", "_index", "_names")

    def __init__(self, values: Sequence[Any], index: dict[str, int], names: list[str]) -> None:
        self._values = values
        self._index = index
        self._names = names

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            i = self._index.get(key)
            if i is None:
                i = self._index.get(key.lower())
                if i is None:
                    raise IndexError(f"no such column: {key}")
            return self._values[i]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._names)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Row):
            return self._names == other._names and tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self._values, strict=True))!r})"


_ROW_MAKERS: dict[tuple[str, ...], Any] = {}
"""One row maker per column list (the store's queries are a fixed set): names are read from
the raw result, not from psycopg's per-query ``description`` objects, which cost more than
the query's own round trip on a small result."""


def _row_factory(cursor: Any) -> Any:
    res = cursor.pgresult
    if res is None or not res.nfields:
        return tuple
    names = tuple(res.fname(i).decode() for i in range(res.nfields))
    make = _ROW_MAKERS.get(names)
    if make is None:
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            index.setdefault(name, i)
            index.setdefault(name.lower(), i)
        listed = list(names)

        def make(values: Sequence[Any]) -> Row:
            return Row(values, index, listed)

        if len(_ROW_MAKERS) < 4096:
            _ROW_MAKERS[names] = make
    return make


class PostgresDatabase(Database):
    engine = POSTGRES

    def __init__(self, url: str, options: DatabaseOptions, read_only: bool = False) -> None:
        self.name = describe(url)
        self._url = url
        self._options = options
        self._read_only = read_only
        self.raw = self._connect()

    def _connect(self) -> Any:
        import psycopg
        from psycopg.adapt import Loader

        o = self._options

        class NumericLoader(Loader):
            """SUM over BIGINT is NUMERIC: an int when whole, a float otherwise (SQLite's)."""

            def load(self, data: Any) -> Any:
                text = bytes(data).decode()
                return int(text) if text.lstrip("-").isdigit() else float(text)

        settings = (
            f"-c statement_timeout={int(o.statement_timeout_s * 1000)}"
            f" -c idle_in_transaction_session_timeout={int(o.idle_in_transaction_timeout_s * 1000)}"
        )
        if not o.synchronous_commit:
            settings += " -c synchronous_commit=off"
        if self._read_only:  # a tool off the event loop (verify walks the whole chain)
            settings = "-c statement_timeout=0 -c default_transaction_read_only=on"
        try:
            conn = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=max(1, round(o.connect_timeout_s)),
                options=settings,
                application_name="relay",
                row_factory=_row_factory,
            )
        except psycopg.OperationalError as exc:
            # libpq's message names the host and user, never the password; the URL is not
            # repeated here.
            raise ConnectionError(f"cannot connect to {self.name}: {exc}".strip()) from None
        conn.adapters.register_loader("numeric", NumericLoader)
        return conn

    def _live(self) -> Any:
        """The connection, opened again if the server dropped it."""
        if self.raw.broken or self.raw.closed:
            log.warning("database connection to %s lost; reconnecting", self.name)
            self.raw = self._connect()
        return self.raw

    def _run(self, sql: str, params: Sequence[Any] | None) -> Any:
        """One statement. Outside a transaction, a connection found dropped (a server
        restart, a failover) is opened again and the statement sent once more; inside one,
        the transaction is lost and its caller is told (the error propagates)."""
        import psycopg

        outside = not self.in_transaction
        try:
            return self._live().execute(sql, params)
        except psycopg.OperationalError:
            if not (outside and self.raw.broken):
                raise
        return self._live().execute(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        import psycopg

        try:
            return self._run(to_pyformat(sql), tuple(params))
        except psycopg.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> Any:
        import psycopg

        cur = self._live().cursor()
        try:
            cur.executemany(to_pyformat(sql), [tuple(p) for p in seq])
        except psycopg.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        return cur

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status in (
            TransactionStatus.INTRANS,
            TransactionStatus.INERROR,
            TransactionStatus.ACTIVE,
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """BEGIN and the one write lock in a single round trip; held until COMMIT/ROLLBACK,
        so every writer on every node runs one at a time (as SQLite's BEGIN IMMEDIATE)."""
        if self.in_transaction:
            yield self
            return
        try:
            self._run(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})", None)
        except BaseException:  # the lock not granted in time (statement_timeout): no BEGIN left
            if self.in_transaction and not self.raw.broken:
                self.raw.execute("ROLLBACK")
            raise
        conn = self.raw
        try:
            yield self
        except BaseException:
            if not conn.broken:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def apply_migration(self, version: int, script: str) -> bool:
        with self.transaction():  # under the write lock: two nodes starting migrate once
            self.raw.execute(translate_ddl(SCHEMA_VERSION_DDL))
            done = self.execute("SELECT 1 FROM schema_version WHERE version = ?", (version,))
            if done.fetchone():
                return False
            self.raw.execute(translate_ddl(script))  # no parameters: several statements
            self.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (version, utc_stamp()),
            )
        return True

    def table_names(self) -> set[str]:
        rows = self.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
        return {r[0] for r in rows}

    def close(self) -> None:
        self.raw.close()
