"""A private PostgreSQL on loopback, for the tests (tests/postgres.py) and the store timing
(bench/store_latency.py): the Debian server binaries, a temporary folder, an ephemeral port.

PostgreSQL refuses to run as root: as root the folder is given to the ``postgres`` user and
the server runs as it (``runuser``). ``start`` waits a bounded time; ``stop`` stops the server
and removes the folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60
USER = "relay"
MISSING = (
    "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/pg_ctl): install them"
    " with scripts/system-deps (Debian: postgresql); the postgres tests need a real server"
    " and do not skip"
)
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
        raise FileNotFoundError(MISSING)
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
