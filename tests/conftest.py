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
