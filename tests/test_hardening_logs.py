"""Issue 21, what a new operator met: polling reads in the access log at debug level (the
banner stays on screen), and one line, not a traceback, for a request with an over-long
header."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web

from relay import logs
from relay.app import build_app
from relay.config import Config

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def served(tmp_path):
    config = Config(data_dir=tmp_path, seed_demo=False, vision_enabled=False)
    runner = web.AppRunner(build_app(config), access_log_class=logs.AccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield port
    await runner.cleanup()


async def test_polling_reads_are_debug_and_the_rest_info(served, caplog):
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    url = f"http://127.0.0.1:{served}"
    async with aiohttp.ClientSession() as s:
        for method, path, status in [
            ("GET", "/healthz", 200),
            ("GET", "/api/v1/openapi.json", 200),
            ("GET", "/api/v1/staff/calls", 401),
            ("GET", "/console", 200),
            ("POST", "/api/v1/staff/logout", 200),
        ]:
            async with s.request(method, url + path) as r:
                assert r.status == status, path
                await r.read()
    await asyncio.sleep(0.1)
    levels = {}
    for record in caplog.records:
        if record.name == "aiohttp.access":
            levels[record.getMessage().split('"')[1]] = record.levelno
    assert levels == {
        "GET /healthz": logging.DEBUG,
        "GET /api/v1/openapi.json": logging.DEBUG,
        "GET /api/v1/staff/calls": logging.INFO,  # a refusal is worth seeing
        "GET /console": logging.INFO,
        "POST /api/v1/staff/logout": logging.INFO,
    }


async def test_an_over_long_header_is_one_line_not_a_traceback(served, caplog):
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection("127.0.0.1", served)
    writer.write(
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n"
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status.split()[1] == b"400"
    await asyncio.sleep(0.2)
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(server) == 1, [r.getMessage() for r in server]
    (line,) = server
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert "refused with 400" in line.getMessage() and "8190" in line.getMessage()
    assert "Traceback" not in caplog.text and "\n" not in line.getMessage()
    # a request line aiohttp cannot read: its multi-line reason becomes one line too
    reader, writer = await asyncio.open_connection("127.0.0.1", served)
    writer.write(b"GET /\xed\xa0\x80 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), 10)).split()[1] == b"400"
    writer.close()
    await asyncio.sleep(0.2)
    bad_path = [r for r in caplog.records if r.name == "aiohttp.server"][-1]
    assert "Invalid char in url path" in bad_path.getMessage()
    assert "\n" not in bad_path.getMessage() and bad_path.exc_info is None
    formatted = logs.JsonFormatter().format(line)
    assert "\n" not in formatted and '"exc"' not in formatted
