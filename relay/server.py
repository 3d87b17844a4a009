"""The product: the relay app with its store, booking API, join gate, audit trail and policy.

``build_app`` is what ``python -m relay`` runs and what the integration tests, the benchmark
and the restart tests start. Parts that are optional at run time (vision, recording) attach
through ``CallRegistry.hooks``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from protocol import messages as m
from relay.app import create_app
from relay.calls.call import AdmissionLike
from relay.calls.registry import CallRegistry
from relay.calls.runtime import CallRuntime
from relay.calls.vision_link import VisionLink
from relay.config import Config
from relay.records import recordings
from relay.records.audit import AuditLog
from relay.records.store import AdmissionRefused, Staff, Store
from relay.web.api import STAFF_COOKIE, setup_api
from relay.web.signalling import Admit
from vision.model import cached_model_path
from vision.service import DetectorService

log = logging.getLogger(__name__)


def build_app(config: Config, store: Store | None = None, admit: Admit | None = None
              ) -> web.Application:
    """The whole relay. ``admit`` replaces the join gate (tokens + bookings) for load tools
    that drive synthetic calls; the product and its tests leave it None."""
    store = store or Store.open(config.db_path)
    audit = AuditLog(store.connection)

    def audit_call(booking_id: int, kind: str, detail: dict[str, Any]) -> None:
        detail = dict(detail)
        evidence = detail.pop("evidence", None)
        live = registry.get(booking_id)
        audit.append(
            kind,
            detail,
            booking_id=booking_id,
            establishment_id=live.call.establishment_id if live else None,
            actor=str(detail.get("staff") or "relay"),
            evidence=evidence,
        )

    def outcome(booking_id: int, result: str, reason: str) -> None:
        store.mark_call_outcome(booking_id, result, reason)

    registry = CallRegistry(config, audit=audit_call, on_outcome=outcome)

    async def gate(token: str, now: float, remote: str) -> AdmissionLike:
        try:
            return app["join_gate"].admit(token, remote, now)
        except AdmissionRefused as exc:
            raise m.ProtocolError(exc.code, exc.message) from None

    app = create_app(config, admit or gate, registry)
    app["store"] = store
    app["audit_log"] = audit
    app["audit"] = audit_call  # (booking_id, kind, detail): what the recorder writes with
    setup_api(app)

    def authorize_staff(request: web.Request) -> Staff:
        """The logged-in staff member (session cookie from the booking API), or 401."""
        cookie = request.cookies.get(STAFF_COOKIE)
        now = request.config_dict.get("clock", time.time)()  # the API's clock (tests set it)
        staff = store.session_staff(cookie, now) if cookie else None
        if staff is None:
            raise web.HTTPUnauthorized(text="log in as staff first")
        return staff

    app["authorize_staff"] = authorize_staff
    runtime = CallRuntime(store.connection, registry, config, audit_call, outcome)
    registry.hooks.append(runtime)
    recordings.install(app, conn=store.connection)

    if config.vision_enabled:
        cached_model_path(config.vision)  # a missing or corrupt model is a clear error now, not later
    detector = DetectorService(config.vision, keyframes_only=config.vision_keyframes_only)
    registry.hooks.append(VisionLink(detector, registry))
    app["detector"] = detector
    app["ready_checks"].append(
        lambda: None if not config.vision_enabled or detector.detector is not None
        else "face detector not loaded"
    )
    _with_app(app, detector.start, detector.stop)
    _with_app(app, runtime.start, runtime.stop)

    async def close_store(app: web.Application) -> None:
        store.close()

    app.on_cleanup.append(close_store)
    return app


def _with_app(app: web.Application, start: Callable[[], Awaitable[None]],
              stop: Callable[[], Awaitable[None]]) -> None:
    """Start a part with the app and stop it when the app shuts down."""

    async def on_startup(app: web.Application) -> None:
        await start()

    async def on_shutdown(app: web.Application) -> None:
        await stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)


def seed_banner(app: web.Application) -> str:
    from relay.seed import format_banner, seed_demo

    info = seed_demo(app["store"], app["config"], time.time())
    return format_banner(info)
