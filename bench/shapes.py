"""Bad input shapes sent to every operation of the route table and to the signalling socket:
a lone surrogate in each path parameter, query field and body field (and as a key), JSON
nested 1000 deep, a huge body, an over-long header, broken bytes in the credential, Origin
and Host headers. Shared by ``python -m bench.faults`` (the ``endpoint shapes`` row) and
``tests/test_hardening_fuzz.py``; operations added to the table later are covered as they
are. Requests are written byte for byte (``raw_request``) so nothing is cleaned on the way.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from typing import Any

import aiohttp

from relay.web.routes import OPERATIONS, Op

SURROGATE_PCT = "%ED%A0%80"  # the CESU-8 bytes of U+D800 (a lone surrogate), percent-encoded
SURROGATE_RAW = b"\xed\xa0\x80"
DEPTH = 1000
HUGE = 2 * 1024 * 1024
LONG_HEADER = 10_000
Shape = tuple[str, str, bytes, dict[bytes, bytes], bytes]
"""(label, method, request target, extra headers, body)"""


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


def op_path(op: Op, bad: str | None = None, value: str = "1") -> str:
    path = op.full_path
    for name in op.path_params:
        path = path.replace("{" + name + "}", value if name == bad else "1")
    return path


def operation_shapes(op: Op) -> list[Shape]:
    """Every shape for ``op``; each is surely wrong, so each must be answered with a 4xx."""
    base = op_path(op).encode()
    shapes: list[Shape] = []
    for name in op.path_params:
        shapes.append(
            (f"path {name}", op.method, op_path(op, name, SURROGATE_PCT).encode(), {}, b"")
        )
        shapes.append(
            (
                f"path {name} bytes",
                op.method,
                op_path(op, name, "X").encode().replace(b"X", SURROGATE_RAW),
                {},
                b"",
            )
        )
    if op.query is not None:
        for name, field in op.query.model_fields.items():
            key = (field.alias or name).encode() + b"="
            shapes.append(
                (f"query {name}", op.method, base + b"?" + key + SURROGATE_PCT.encode(), {}, b"")
            )
            shapes.append(
                (f"query {name} bytes", op.method, base + b"?" + key + SURROGATE_RAW, {}, b"")
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
        shapes.append(("huge body", op.method, base, {}, b'{"a": "' + b"x" * HUGE + b'"}'))
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


CREDENTIAL_HEADERS = (
    (b"Authorization", b"Bearer 1." + SURROGATE_RAW),
    (b"Cookie", b"relay_staff=" + SURROGATE_RAW),
)
"""Broken bytes in each credential header (sent with no other credential): a 4xx wherever
the operation needs someone signed in, and never a 5xx."""

WS_FRAMES: tuple[tuple[str, str], ...] = (
    ('{"type": "join", "token": "\\ud800", "sdp": "v=0"}', "bad_unicode"),
    ('{"type": "join", "token": "v1.a.b", "sdp": "\\udfff"}', "bad_unicode"),
    ('{"type": "ping", "id": 1, "\\ud800": 1}', "bad_unicode"),
    ('{"type": "\\ud800"}', "bad_unicode"),
    ('{"v": "\\ud800", "type": "ping"}', "bad_unicode"),
    ('{"a":' * DEPTH + "1" + "}" * DEPTH, "json_too_deep"),
    ("[" * DEPTH + "]" * DEPTH, "json_too_deep"),
    ('{"type": "ping", "pad": "' + "x" * 70_000 + '"}', "message_too_large"),
)
"""Signalling frames of the same shapes and the error code each must get back."""


class ServerErrors(logging.Handler):
    """Counts what a client's input must never cause: an error or a traceback in the log."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


async def fire(product: Any) -> dict[str, Any]:
    """Every shape at every operation (with an admin session and a visitor key, so requests
    get past the front door) and every frame at the socket. Needs a relay whose rate limit is
    off (``bad_token_limit_per_min=0``), else the 429s hide what is behind them."""
    port = int(product.url.rsplit(":", 1)[1])
    world = product.world
    session = world.store.create_session(world.admin_a, time.time())
    creds = {
        b"Cookie": f"relay_staff={session}".encode(),
        b"Authorization": f"Bearer {world.key('mum')}".encode(),
    }
    wrong: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()
    errors = ServerErrors()
    logging.getLogger().addHandler(errors)
    try:
        for op in OPERATIONS:
            base = {} if op.op_id == "staff_logout" else creds  # keep the shared session
            for label, method, target, headers, body in operation_shapes(op):
                status = await raw_request(port, method, target, {**base, **headers}, body)
                statuses[status] += 1
                if not 400 <= status < 500:
                    wrong.append(f"{op.op_id} [{label}]: {status}")
            for header, value in CREDENTIAL_HEADERS:
                status = await raw_request(port, op.method, op_path(op).encode(), {header: value})
                statuses[status] += 1
                if status >= 500 or (op.security and status < 400):
                    wrong.append(f"{op.op_id} [{header.decode()} bytes]: {status}")
        ws_codes: list[str] = []
        async with aiohttp.ClientSession() as s, s.ws_connect(product.url + "/ws") as ws:
            for raw, code in WS_FRAMES:
                await ws.send_str(raw)
                reply = json.loads((await ws.receive(timeout=10)).data)
                ws_codes.append(reply.get("code", reply["type"]))
                if (reply["type"], reply.get("code")) != ("error", code):
                    wrong.append(f"ws {raw[:40]!r}: {reply}")
            await ws.send_str('{"type": "ping", "id": 5}')
            if json.loads((await ws.receive(timeout=10)).data).get("type") != "pong":
                wrong.append("ws unusable after the bad frames")
        await asyncio.sleep(0.2)  # let the last log lines land
    finally:
        logging.getLogger().removeHandler(errors)
    return {
        "wrong": wrong,
        "statuses": dict(statuses),
        "ws_codes": ws_codes,
        "server_errors": sum(n for s, n in statuses.items() if s >= 500),
        "logged_errors": [f"{r.name}: {r.getMessage()[:200]}" for r in errors.records],
    }
