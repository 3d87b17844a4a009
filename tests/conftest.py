from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer

from relay.app import build_app
from relay.config import Config
from tests.support import TokenTable


@pytest.fixture
def config(tmp_path):
    return Config(data_dir=tmp_path, recordings_dir=tmp_path / "recordings", seed_demo=False,
                  vision_enabled=False)


@pytest.fixture
def tokens():
    return TokenTable()


@pytest.fixture
async def relay(config, tokens):
    """A relay on 127.0.0.1 with a plain token table (core tests, not vetting tests)."""
    app = build_app(config, admit=tokens)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server.base_url = str(server.make_url("")).rstrip("/")
    yield server
    await server.close()


@pytest.fixture
async def product(tmp_path):
    """The whole relay (store, booking API, tokens, policy) with a small world of records."""
    from bench.product import start_product

    p = await start_product(tmp_path, reconnect_grace_s=3.0, warn_before_end_s=(4.0, 2.0),
                            resume_after_clear_s=0.5)
    yield p
    await p.server.close()


# ---- both database engines (tests/postgres.py) -------------------------------------------
from tests.postgres import pg_empty_url, pg_url, postgres_server  # noqa: E402, F401 (fixtures)

ENGINES = ["sqlite", "postgres"]


@pytest.fixture(params=ENGINES)
def db_target(request, tmp_path):
    """What ``Store.open`` takes, once per engine: a SQLite file, then a fresh PostgreSQL
    database (a real server; missing binaries fail the postgres run, never skip it)."""
    if request.param == "sqlite":
        return tmp_path / "relay.sqlite"
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=ENGINES)
def empty_db_target(request, tmp_path):
    """Like ``db_target`` but with no schema at all yet (migration tests)."""
    if request.param == "sqlite":
        return tmp_path / "relay.sqlite"
    return request.getfixturevalue("pg_empty_url")


# ---- a real redis-server for the many-nodes tests (tests/redis_server.py) ------------------
from tests.redis_server import redis_url  # noqa: E402, F401 (a fixture)


@pytest.fixture
async def pg_product(request, tmp_path):
    """``product`` with its records in a fresh PostgreSQL database."""
    from bench.product import start_product

    url = request.getfixturevalue("pg_url")
    p = await start_product(tmp_path, database_url=url, reconnect_grace_s=3.0,
                            warn_before_end_s=(4.0, 2.0), resume_after_clear_s=0.5)
    yield p
    await p.server.close()
