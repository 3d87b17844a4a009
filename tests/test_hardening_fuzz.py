"""Issue 21: every operation of the route table (and the signalling socket's messages) fed
the shapes that used to be 500s: a lone surrogate in each path parameter, query field and
body field (and as a key), JSON nested 1000 deep, a huge body, an over-long header, broken
bytes in the credential headers and the Host header. Only 4xx may come back, and nothing a
client sends may put a traceback or an error in the log. Operations added to OPERATIONS
later are covered without editing this test. The auth endpoints count those 400s against
the address."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import pytest

from bench.product import start_product
from relay.web.routes import OPERATIONS, Op
from tests.test_store_world import PASSWORD

pytestmark = pytest.mark.timeout(300)

SURROGATE_PCT = "%ED%A0%80"  # the CESU-8 bytes of U+D800 (a lone surrogate), percent-encoded
SURROGATE_RAW = b"\xed\xa0\x80"
DEPTH = 1000
HUGE = 2 * 1024 * 1024
LONG_HEADER = 10_000


async def raw_request(
    port: int, method: str, target: bytes, headers: dict[bytes, bytes], body: bytes = b""
) -> int:
    """One HTTP/1.1 request with exactly these bytes; the status the relay answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = {b"Host": f"127.0.0.1:{port}".encode(), b"Connection": b"close", **headers}
        if body or method in ("POST", "DELETE"):
            head.setdefault(b"Content-Type", b"application/json")
            head[b"Content-Length"] = str(len(body)).encode()
        lines = [method.encode() + b" " + target + b" HTTP/1.1"]
        lines += [k + b": " + v for k, v in head.items()]
        try:
            writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
            await writer.drain()
        except ConnectionError:
            pass  # refused before the whole body was read: the status line tells
        status = await asyncio.wait_for(reader.readline(), 20)
        return int(status.split()[1])
    finally:
        writer.close()


def _path(op: Op, bad: str | None = None, value: str = "1") -> str:
    path = op.full_path
    for name in op.path_params:
        path = path.replace("{" + name + "}", value if name == bad else "1")
    return path


def _shapes(op: Op) -> list[tuple[str, str, bytes, dict[bytes, bytes], bytes]]:
    """(label, method, target, extra headers, body) for ``op``; each is surely wrong."""
    base = _path(op).encode()
    shapes = []
    for name in op.path_params:
        shapes.append(
            (f"path {name} %", op.method, _path(op, name, SURROGATE_PCT).encode(), {}, b"")
        )
        shapes.append(
            (
                f"path {name} raw",
                op.method,
                _path(op, name, "X").encode().replace(b"X", SURROGATE_RAW),
                {},
                b"",
            )
        )
    if op.query is not None:
        for name, field in op.query.model_fields.items():
            key = (field.alias or name).encode()
            shapes.append(
                (
                    f"query {name}",
                    op.method,
                    base + b"?" + key + b"=" + SURROGATE_PCT.encode(),
                    {},
                    b"",
                )
            )
            shapes.append(
                (f"query {name} raw", op.method, base + b"?" + key + b"=" + SURROGATE_RAW, {}, b"")
            )
    if op.body is not None:
        for name, field in op.body.model_fields.items():
            key = field.alias or name
            shapes.append(
                (f"body {name}", op.method, base, {}, ('{"' + key + '": "\\ud800"}').encode())
            )
            shapes.append(
                (f"body {name} low", op.method, base, {}, ('{"' + key + '": "ok\\udfff"}').encode())
            )
        shapes.append(("body key", op.method, base, {}, b'{"\\ud800": 1}'))
        shapes.append(("depth object", op.method, base, {}, b'{"a":' * DEPTH + b"1" + b"}" * DEPTH))
        shapes.append(("depth array", op.method, base, {}, b"[" * DEPTH + b"]" * DEPTH))
        shapes.append(("huge", op.method, base, {}, b'{"a": "' + b"x" * HUGE + b'"}'))
    shapes.append(("long header", op.method, base, {b"X-Big": b"a" * LONG_HEADER}, b""))
    shapes.append(("host bytes", op.method, base, {b"Host": b"relay" + SURROGATE_RAW}, b""))
    if op.method in ("POST", "PUT", "PATCH", "DELETE"):
        shapes.append(
            (
                "origin bytes",
                op.method,
                base,
                {b"Origin": b"http://127.0.0.1" + SURROGATE_RAW},
                b"{}",
            )
        )
    return shapes


def _credentials(p, session: str) -> dict[bytes, bytes]:
    return {
        b"Cookie": f"relay_staff={session}".encode(),
        b"Authorization": f"Bearer {p.world.key('mum')}".encode(),
    }


async def test_every_operation_refuses_every_bad_shape_with_a_4xx(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    p = await start_product(tmp_path, bad_token_limit_per_min=0)
    port = int(p.url.rsplit(":", 1)[1])
    started = time.monotonic()
    bad: list[str] = []
    count = 0
    try:
        session = p.world.store.create_session(p.world.admin_a, time.time())
        creds = _credentials(p, session)
        for op in OPERATIONS:
            # logging out would end the shared session: that operation goes without it
            base = {} if op.op_id == "staff_logout" else creds
            for label, method, target, headers, body in _shapes(op):
                status = await raw_request(port, method, target, {**base, **headers}, body)
                count += 1
                if not 400 <= status < 500:
                    bad.append(f"{op.op_id} [{label}]: {status}")
            # broken bytes in each credential header, the other credential absent
            for header, value in (
                (b"Authorization", b"Bearer 1." + SURROGATE_RAW),
                (b"Cookie", b"relay_staff=" + SURROGATE_RAW),
            ):
                status = await raw_request(
                    port, op.method, _path(op).encode(), {header: value}, b""
                )
                count += 1
                if status >= 500 or (op.security and status < 400):
                    bad.append(f"{op.op_id} [{header.decode()} bytes]: {status}")
    finally:
        await p.server.close()
    assert not bad, "\n".join(bad)
    assert count > 10 * len(OPERATIONS)
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not noisy, [f"{r.name}: {r.getMessage()}" for r in noisy][:5]
    assert "Traceback" not in caplog.text
    assert time.monotonic() - started < 240


async def test_signalling_messages_with_bad_shapes_get_error_frames(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    p = await start_product(tmp_path, bad_token_limit_per_min=0)
    frames = [
        ('{"type": "join", "token": "\\ud800", "sdp": "v=0"}', "bad_unicode"),
        ('{"type": "join", "token": "v1.a.b", "sdp": "\\udfff"}', "bad_unicode"),
        ('{"type": "ping", "id": 1, "\\ud800": 1}', "bad_unicode"),
        ('{"type": "\\ud800"}', "bad_unicode"),
        ('{"v": "\\ud800", "type": "ping"}', "bad_unicode"),
        ('{"a":' * DEPTH + "1" + "}" * DEPTH, "json_too_deep"),
        ("[" * DEPTH + "]" * DEPTH, "json_too_deep"),
        ('{"type": "ping", "pad": "' + "x" * 70_000 + '"}', "message_too_large"),
    ]
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
