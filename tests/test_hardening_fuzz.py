"""Issue 21: every operation of the route table (and the signalling socket's messages) fed
the shapes that used to be 500s: a lone surrogate in each path parameter, query field and
body field (and as a key), JSON nested 1000 deep, a huge body, an over-long header, broken
bytes in the credential headers and the Host header. Only 4xx may come back, and nothing a
client sends may put a traceback or an error in the log. Operations added to OPERATIONS
later are covered without editing this test. The auth endpoints count those 400s against
the address."""

from __future__ import annotations

import json
import logging
import time

import aiohttp
import pytest

from bench import shapes
from bench.product import start_product
from relay.web.routes import OPERATIONS
from tests.test_store_world import PASSWORD

pytestmark = pytest.mark.timeout(300)


async def test_every_operation_refuses_every_bad_shape_with_a_4xx(tmp_path):
    p = await start_product(tmp_path, bad_token_limit_per_min=0)
    started = time.monotonic()
    try:
        found = await shapes.fire(p)
    finally:
        await p.server.close()
    assert not found["wrong"], "\n".join(found["wrong"])
    assert found["server_errors"] == 0 and not found["logged_errors"], found["logged_errors"][:5]
    # every operation got shapes of its own, beside the credential-header shapes all get
    assert all(any(True for _ in shapes.operation_shapes(op)) for op in OPERATIONS)
    assert sum(found["statuses"].values()) >= len(OPERATIONS) * (1 + len(shapes.CREDENTIAL_HEADERS))
    assert found["ws_codes"] == [code for _, code in shapes.WS_FRAMES]
    assert time.monotonic() - started < 240


async def test_signalling_messages_with_bad_shapes_get_error_frames(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    p = await start_product(tmp_path, bad_token_limit_per_min=0)
    frames = shapes.WS_FRAMES
    try:
        async with aiohttp.ClientSession() as s, s.ws_connect(p.url + "/ws") as ws:
            for raw, code in frames:
                await ws.send_str(raw)
                msg = json.loads((await ws.receive(timeout=10)).data)
                assert (msg["type"], msg["code"]) == ("error", code), raw[:60]
            await ws.send_str('{"type": "ping", "id": 5}')  # still usable
            assert json.loads((await ws.receive(timeout=10)).data) == {
                "v": 1,
                "type": "pong",
                "id": 5,
            }
    finally:
        await p.server.close()
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not noisy and "Traceback" not in caplog.text


@pytest.mark.parametrize("op_id", ["staff_login", "laptop_token"])
async def test_bad_bodies_at_auth_endpoints_count_against_the_address(tmp_path, op_id):
    p = await start_product(tmp_path, bad_token_limit_per_min=5)
    laptop_id, secret = p.world.laptops_a[0]
    good = {
        "staff_login": {"username": "officer_a", "password": PASSWORD},
        "laptop_token": {"laptop_id": laptop_id, "laptop_secret": secret, "booking_id": 1},
    }
    path = p.url + next(op.full_path for op in OPERATIONS if op.op_id == op_id)
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(5):
                bad = (
                    json.dumps(good[op_id]).replace(secret, "\\ud800").replace(PASSWORD, "\\ud800")
                )
                async with s.post(
                    path, data=bad, headers={"Content-Type": "application/json"}
                ) as r:
                    assert r.status == 400 and (await r.json())["error"]["code"] == "bad_unicode"
            async with s.post(path, json=good[op_id]) as r:
                assert r.status == 429, await r.text()
                assert int(r.headers["Retry-After"]) >= 1
    finally:
        await p.server.close()
