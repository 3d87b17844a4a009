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

import itertools
import os
from collections.abc import Iterator

import pytest

from bench.postgres import MISSING, PostgresServer

TEMPLATE = "relay_template"


_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the session, with ``relay_template`` migrated to the current schema."""
    from relay.records.store import Store

    try:
        server = PostgresServer.start()
    except FileNotFoundError:
        pytest.fail(MISSING, pytrace=False)
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
