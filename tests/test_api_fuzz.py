"""Schemathesis against a live server: no input gives a 5xx, every answer matches the
OpenAPI document (status, content type, schema). Bounded and derandomised (~30-60 s)."""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from relay import keys
from relay.app import build_app
from relay.config import Config
from relay.web.kiosk_api import issue_session
from relay.web.openapi import openapi_document
from tests.kiosk import device_key, give_pin
from tests.test_store_world import DAY, NOW, make_world

pytestmark = [
    pytest.mark.timeout(240),
]
EXAMPLES = 20  # per operation and mode: about 900 requests in all
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class Server:
    """The API on 127.0.0.1 in a thread of its own (schemathesis calls are synchronous)."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.url = ""
        self.headers: dict[str, str] = {}
        self.error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.world.store.close()

    async def _start(self) -> None:
        w = self.world = make_world(self.tmp_path / "fuzz.sqlite")  # made in this thread
        # something to find: an approved booking and a pending one
        b = w.store.request_booking(
            prisoner_id=w.prisoner_a, call_type="social", starts_at=NOW + DAY, minutes=30,
            main_visitor_id=w.vid("mum"), visitor_ids=[], requested_by="family", now=NOW,
            actor="t",
        )
        w.store.approve_booking(b.id, w.officer_a, NOW)
        # the whole product app, so the call-control endpoints are fuzzed too
        # the kiosk: an enrolled laptop and a signed-in prisoner (wrong PINs never lock here)
        config = Config(data_dir=self.tmp_path, secret_key="fuzz", bad_token_limit_per_min=0,
                        seed_demo=False, vision_enabled=False, kiosk_pin_tries=10**9)
        app = build_app(config, store=w.store, clock=lambda: NOW)
        laptop_id = w.laptops_a[0][0]
        self.device_key = device_key(w.store, laptop_id, w.admin_a, NOW)
        give_pin(w.store, w.prisoner_a2, w.admin_a, NOW)
        # a contact the fuzzer's revocations (ids 1-4) cannot reach
        w.store.approve_contact(w.prisoner_a2, w.vid("aunt"), w.admin_a, NOW)
        self.kiosk_session = issue_session(
            app[keys.TOKEN_SECRET], w.prisoner_a2, laptop_id, NOW + config.kiosk_session_s
        )
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.session = w.store.create_session(w.admin_a, NOW)
        self.headers = {"Authorization": f"Bearer {w.key('mum')}"}

    def __enter__(self) -> Server:
        self.thread.start()
        assert self.ready.wait(30) and self.error is None, self.error
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _number(value) -> bool:
    """A JSON number the fuzzer made (OpenAPI 3.1 lets an 'integer' be 3.0); not a bool."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value == int(value))


def _steer(server: Server, case) -> None:
    """Point valid cases at records that exist, so they reach the booking rules and the
    success responses get checked too (not only the 404s)."""
    w = server.world
    for name, value in list((case.path_parameters or {}).items()):
        if isinstance(value, int):
            case.path_parameters[name] = value % 3 + 1
    body = case.body
    if isinstance(body, dict):
        if "prisoner_number" in body:
            body["prisoner_number"] = "A1234BC"
        if _number(body.get("laptop_id")):
            laptop = w.laptops_a[int(body["laptop_id"]) % 2]
            body["laptop_id"] = laptop[0]
            if "laptop_secret" in body:
                body["laptop_secret"] = laptop[1]
        for key in ("visitor_id", "main_visitor_id", "prisoner_id", "booking_id"):
            if _number(body.get(key)):
                body[key] = int(body[key]) % 4 + 1
        if isinstance(body.get("device_key"), str):
            body["device_key"] = server.device_key
        if isinstance(body.get("session"), str):  # the kiosk's prisoner, A5678DE
            body["session"] = server.kiosk_session
            if "visitor_id" in body:
                body["visitor_id"] = w.vid("aunt")
        if _number(body.get("minutes")):  # the establishment's lengths, 30 or 60
            body["minutes"] = (30, 60)[int(body["minutes"]) % 2]
        if isinstance(body.get("starts_at"), int | float):
            body["starts_at"] = NOW + 3600 + (body["starts_at"] % 40) * DAY


def _runner(server: Server, op, mode, cookies, seen: collections.Counter):
    @settings(
        max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case):
        if mode == GenerationMode.POSITIVE:
            _steer(server, case)
        headers = {**(case.headers or {}), **server.headers}
        response = case.call(base_url=server.url, headers=headers, cookies=cookies, timeout=10)
        seen[(op.method.upper(), op.path, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)

    return run


def test_fuzz_api_no_5xx_and_responses_match_schema(tmp_path):
    started = time.monotonic()
    failures: list[str] = []
    seen: collections.Counter = collections.Counter()
    with Server(tmp_path) as server:
        schema = schemathesis.openapi.from_dict(openapi_document())
        operations = [r.ok() for r in schema.get_all_operations()]
        assert len(operations) >= 20
        for op in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                # an authenticated visitor and admin, so the fuzzer gets past the front door
                # (logout would end the shared session: it goes without the cookie)
                cookies = {} if op.path.endswith("/logout") else {"relay_staff": server.session}

                try:
                    _runner(server, op, mode, cookies, seen)()
                except Unsatisfiable:  # nothing to get wrong: no parameters and no body
                    assert mode == GenerationMode.NEGATIVE
                except Exception as exc:  # collect every operation's failure, then report
                    failures.append(f"{op.method.upper()} {op.path} [{mode.value}]: {exc}"[:2000])
    assert not failures, "\n\n".join(failures)
    # the fuzzer got past the front door: bookings and approvals were made
    ok = {(m, p) for (m, p, status), _ in seen.items() if status < 300}
    assert ("GET", "/api/recordings") in ok
    assert ("POST", "/api/v1/bookings") in ok
    assert ("POST", "/api/v1/kiosk/requests") in ok
    assert ("POST", "/api/v1/staff/contacts") in ok
    assert time.monotonic() - started < 200
