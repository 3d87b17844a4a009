"""A real PostgreSQL for the tests: the Debian server binaries, a temporary folder, loopback.

``postgres_server`` (session): initdb in a temporary folder, ``pg_ctl start`` on an ephemeral
127.0.0.1 port (its socket in that folder too), a migrated template database, stopped and
removed at the end. ``pg_url`` (per test): a fresh database copied from the template
(``CREATE DATABASE ... TEMPLATE``: milliseconds), dropped after the test.

PostgreSQL refuses to run as root: as root the folder is given to the ``postgres`` user and
the server runs as it (``runuser``). Missing binaries FAIL the test with what to install
(``scripts/system-deps``); they never skip it.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 60
TEMPLATE = "relay_template"
USER = "relay"
_TEST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
"""Test speed only (the data is thrown away); the timing figures run with the defaults."""


def postgres_bin() -> Path:
    """The newest installed server's bin folder (found by glob: no version written here)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not found:
        pytest.fail(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/pg_ctl): install"
            " them with scripts/system-deps (Debian: postgresql); the postgres tests need a real"
            " server and do not skip",
            pytrace=False,
        )
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster on 127.0.0.1; ``url(db)`` names a database on it."""

    folder: Path
    port: int
    bindir: Path
    _as_postgres: bool

    @classmethod
    def start(cls, fast: bool = True) -> PostgresServer:
        bindir = postgres_bin()
        folder = Path(tempfile.mkdtemp(prefix="relay-pg-"))
        as_postgres = os.geteuid() == 0
        if as_postgres:
            shutil.chown(folder, "postgres", "postgres")
        server = cls(folder, free_port(), bindir, as_postgres)
        try:
            server._run(
                "initdb",
                "-D",
                str(folder / "data"),
                "-A",
                "trust",
                "-U",
                USER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
            settings = " ".join(f"-c {s}" for s in _TEST_SETTINGS) if fast else ""
            server._run(
                "pg_ctl",
                "-D",
                str(folder / "data"),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "-l",
                str(folder / "server.log"),
                "-o",
                f"-p {server.port} -k {folder} -c listen_addresses=127.0.0.1 {settings}",
                "start",
            )
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S + 30, cwd=self.folder
        )
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}\n{tail}")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        """One statement outside a transaction (CREATE/DROP DATABASE) on the maintenance db."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)

    def stop(self) -> None:
        if (self.folder / "data" / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._run(
                    "pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop"
                )
        shutil.rmtree(self.folder, ignore_errors=True)


_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the session, with ``relay_template`` migrated to the current schema."""
    from relay.records.store import Store

    server = PostgresServer.start()
    try:
        server.admin(f"CREATE DATABASE {TEMPLATE}")
        Store.open(server.url(TEMPLATE)).close()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, migrated, empty database of this test's own."""
    name = f"relay_t{os.getpid()}_{next(_names)}"
    postgres_server.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_empty_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database with no tables at all (migration tests)."""
    name = f"relay_e{os.getpid()}_{next(_names)}"
    postgres_server.admin(f"CREATE DATABASE {name}")
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
