"""The real ``redis-server`` fixture for the cluster tests (bench/redis_server.py starts it:
loopback, an ephemeral port, a temporary folder, nothing saved, stopped after). A missing
binary fails the test, never skips it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.redis_server import free_port, redis_server

__all__ = ["free_port", "redis_server", "redis_url"]


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    with redis_server(tmp_path / "redis") as url:
        yield url
