"""The composition root: one place builds the relay's services and hands them to handlers.

``build_app`` is what ``python -m relay`` runs and what the integration tests, the benchmark
and the restart tests start. Each service is made once here and published under its typed
key (relay/keys.py); nothing else creates services or looks them up by string. ``admit``
replaces the join gate (tokens + bookings) for load tools and core tests that drive synthetic
calls; the product leaves it None.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from protocol import aiortc_glue
from protocol import messages as m
from relay import auth, keys, logs, metrics, node, private, turn
from relay.calls.call import AdmissionLike
from relay.calls.lifecycle import CallLifecycle
from relay.calls.media_health import MediaHealth
from relay.calls.registry import CallRegistry
from relay.calls.runtime import CallRuntime
from relay.calls.vision_link import VisionLink
from relay.config import Config
from relay.media.bandwidth import LinkMonitor
from relay.notify.sender import Notifier
from relay.records import recordings
from relay.records.audit import AuditLog
from relay.records.erasure import Erasure
from relay.records.retention import sweep_vetting_photos
from relay.records.store import AdmissionRefused, Store
from relay.records.store.engine import DatabaseOptions
from relay.web import (
    api,
    call_control,
    call_messages,
    erasure_api,
    family_accounts,
    health,
    identity_control,
    identity_settings,
    join_preview,
    kiosk_api,
    laptop_api,
    origins,
    pages,
    staff_admin_api,
    vetting_api,
    visiting_api,
)
from relay.web.api import authorize_staff, setup_api
from relay.web.signalling import Admit, close_watchers, websocket_handler
from vision.model import cached_model_path
from vision.service import DetectorService

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1024 * 1024


def build_app(config: Config, store: Store | None = None, admit: Admit | None = None,
              clock: Callable[[], float] = time.time) -> web.Application:
    """The whole relay: store, audit, calls, recording, vision, API, signalling and pages."""
    aiortc_glue.check_aiortc_version()
    metrics.set_node_info(node.node_id(config), node.version())  # a bad RELAY_NODE_ID stops here
    aiortc_glue.bind_media_addresses(config.media_addresses)
    aiortc_glue.on_nack = metrics.count_nack
    logs.quiet_aiohttp()  # a request aiohttp cannot parse: one line, not a traceback
    aiortc_glue.use_media_mux(config.media_mux, config.media_port)

    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    private.private_dir(Path(config.data_dir))  # 0700: keys, database, recordings
    if config.tls_key and Path(config.tls_key).exists():  # a missing one: TLS says so
        private.check_private(Path(config.tls_key), "the TLS private key")
    token_secret = auth.load_secret(config)  # a readable key is refused before the database
    store = store or Store.open(config.database_target, database_options(config))
    audit_log = AuditLog(store.connection)
    app[keys.CONFIG] = config
    app[keys.CLOCK] = clock
    app[keys.STORE] = store
    app[keys.AUDIT_LOG] = audit_log
    app[keys.SESSIONS] = set()
    app[keys.CLEANUPS] = set()
    app[keys.READY_CHECKS] = []

    def call_audit(booking_id: int, kind: str, detail: dict[str, Any]) -> None:
        detail = dict(detail)
        evidence = detail.pop("evidence", None)
        live = registry.get(booking_id)
        audit_log.append(
            kind,
            detail,
            booking_id=booking_id,
            establishment_id=live.call.establishment_id if live else None,
            actor=str(detail.get("staff") or "relay"),
            evidence=evidence,
        )

    def outcome(booking_id: int, result: str, reason: str) -> None:
        lifecycle.outcome(booking_id, result, reason)

    registry = CallRegistry(config, audit=call_audit, on_outcome=outcome)
    lifecycle = CallLifecycle(store, registry)
    app[keys.REGISTRY] = registry
    app[keys.LIFECYCLE] = lifecycle
    app[keys.CALL_AUDIT] = call_audit

    # who is asking: join tokens (signalling) and staff sessions (API, recordings)
    app[keys.TOKEN_SECRET] = token_secret
    app[keys.AUTH_LIMITER] = auth.BadAttemptLimiter(config.bad_token_limit_per_min)
    gate = auth.JoinGate(app[keys.TOKEN_SECRET], store, app[keys.AUTH_LIMITER])
    app[keys.JOIN_GATE] = gate
    app[keys.TURN_SECRET] = turn.load_turn_secret(config)

    async def admit_by_token(token: str, now: float, remote: str) -> AdmissionLike:
        try:
            return gate.admit(token, remote, now)
        except AdmissionRefused as exc:
            raise m.ProtocolError(exc.code, exc.message) from None

    app[keys.ADMIT] = admit or admit_by_token

    app[keys.AUTHORIZE_STAFF] = authorize_staff  # the API's one staff sign-in check

    # calls: restart recovery, recording, vision
    runtime = CallRuntime(store.connection, registry, config, call_audit, outcome)
    registry.hooks.append(runtime)
    app[keys.RUNTIME] = runtime
    recordings.install(app, conn=store.connection)
    app[keys.RETENTION].also.append(
        functools.partial(sweep_vetting_photos, store, config, audit_log)
    )
    if config.vision_enabled:
        cached_model_path(config.vision)  # a missing or corrupt model is a clear error now, not later
    detector = DetectorService(config.vision, keyframes_only=config.vision_keyframes_only)
    vision_link = VisionLink(detector, registry)
    registry.hooks.append(vision_link)
    app[keys.DETECTOR] = detector
    app[keys.READY_CHECKS].append(
        lambda: None if not config.vision_enabled or detector.detector is not None
        else "face detector not loaded"
    )
    _with_app(app, detector.start, detector.stop)
    _with_app(app, runtime.start, runtime.stop)
    _install_identity(app, store, audit_log, detector, vision_link, clock)
    _install_vision_watch(app, detector, registry, config)
    link_monitor = LinkMonitor(registry, config)
    app[keys.LINK_MONITOR] = link_monitor
    _with_app(app, link_monitor.start, link_monitor.stop)
    media_health = MediaHealth(registry, config)  # stalled streams: pages, console, metrics
    _with_app(app, media_health.start, media_health.stop)

    # the web: signalling, API, pages, health and metrics
    app.router.add_get("/ws", websocket_handler)
    notifier = Notifier(store, config, clock)
    app[keys.NOTIFIER] = notifier
    _with_app(app, notifier.start, notifier.stop)
    setup_api(app, {**api.HANDLERS, **call_control.HANDLERS, **visiting_api.HANDLERS,
                    **staff_admin_api.HANDLERS, **family_accounts.HANDLERS,
                    **vetting_api.HANDLERS, **laptop_api.HANDLERS,
                    **call_messages.HANDLERS, **kiosk_api.HANDLERS, **join_preview.HANDLERS,
                    **identity_control.HANDLERS, **identity_settings.HANDLERS,
                    **erasure_api.HANDLERS})
    pages.add_routes(app)
    pages.add_family_routes(app)
    app[keys.ERASURE] = Erasure(store, lifecycle, audit_log,
                                lambda: app.get(keys.FACE_ENROLMENTS), clock)
    app.on_response_prepare.append(pages.html_security_headers)  # every HTML response
    app[keys.ORIGINS] = origins.Origins(config)
    app.middlewares.insert(0, origins.check_host)  # outermost: every route, DNS rebinding
    health.add_routes(app, with_metrics=not config.metrics_host)
    app.on_startup.append(_start_background)
    app.on_shutdown.append(_shutdown)

    async def close_store(app: web.Application) -> None:
        store.close()

    app.on_cleanup.append(close_store)

    async def close_media_mux(app: web.Application) -> None:
        await aiortc_glue.close_media_mux()

    app.on_cleanup.append(close_media_mux)
    if config.redis_url:  # many nodes (docs/multinode.md); one node: nothing of it runs
        _install_cluster(app, registry, runtime)
    return app


def _install_identity(app: web.Application, store: Store, audit_log: AuditLog,
                      detector: DetectorService, vision_link: VisionLink,
                      clock: Callable[[], float]) -> None:
    """Face enrolment (relay/identity/enrolment.py) and its staff routes; sealed with the
    recording key, swept by retention; and the in-call re-checks against the booking's
    enrolled people. Descriptors run on one identity thread, shared by both."""
    from relay.identity.enrolment import FaceEnrolments
    from relay.web import identity_api
    from vision.identity import IdentityWorker, load_encoder

    settings = app[keys.CONFIG].vision
    worker = IdentityWorker(lambda: load_encoder(settings))
    enrolments = FaceEnrolments(store.connection, app[keys.CONFIG], app[keys.RECORDING_KEY],
                                audit_log, lambda: detector.detector, worker, clock)
    app[keys.FACE_ENROLMENTS] = enrolments
    app[keys.RETENTION].also.append(enrolments.sweep)  # on the retention sweeper's schedule
    identity_api.add_routes(app)

    async def stop_enrolments(app: web.Application) -> None:  # nothing to start: see sweep
        await enrolments.stop()

    app.on_shutdown.append(stop_enrolments)
    detector.identity = worker
    vision_link.gallery = enrolments.gallery_for(store)
    from relay.calls.identity_gate import IdentityGate

    gate = IdentityGate(
        detector, app[keys.CONFIG], store, lambda kind, sid: enrolments.get(kind, sid) is not None
    )
    app[keys.IDENTITY_GATE] = gate
    app[keys.REGISTRY].hooks.append(gate)
    vision_link.precall = gate


def _with_app(app: web.Application, start: Callable[[], Awaitable[None]],
              stop: Callable[[], Awaitable[None]]) -> None:
    """Start a part with the app and stop it when the app shuts down."""

    async def on_startup(app: web.Application) -> None:
        await start()

    async def on_shutdown(app: web.Application) -> None:
        await stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)


async def _start_background(app: web.Application) -> None:
    app[keys.BACKGROUND] = [asyncio.ensure_future(health.loop_lag_probe())]
    config = app[keys.CONFIG]
    if config.metrics_host:
        app[keys.METRICS_RUNNER] = await health.serve_metrics_apart(
            app, config.metrics_host, config.metrics_port)


async def _shutdown(app: web.Application) -> None:
    """Stop admitting; tell every leg the relay is restarting; close within the grace.

    Calls are not ended: their legs rejoin the next process (relay/calls/runtime.py).
    """
    registry = app[keys.REGISTRY]
    registry.accepting = False
    for task in app.get(keys.BACKGROUND, []):
        task.cancel()
    started = time.monotonic()
    for live in list(registry.calls.values()):
        live.policy.interrupt()
    sessions, cleanups = app[keys.SESSIONS], app[keys.CLEANUPS]
    for session in list(sessions):
        if session.leg is None:
            session.send_error(m.E_SHUTTING_DOWN, "the relay is restarting; try again shortly")
            asyncio.ensure_future(session.close(1012, "relay restarting"))
    grace = app[keys.CONFIG].shutdown_grace_s
    while (sessions or cleanups) and time.monotonic() - started < grace:
        await asyncio.sleep(0.05)
    for live in list(registry.calls.values()):
        for leg in live.call.everyone():
            await aiortc_glue.close_peer_connection(leg.pc)
    if keys.METRICS_RUNNER in app:
        await app[keys.METRICS_RUNNER].cleanup()
    log.info("shutdown took %.2fs", time.monotonic() - started)


def seed_banner(app: web.Application) -> str:
    from relay.seed import format_banner, format_family_banner, seed_demo, seed_demo_family

    now = time.time()
    info = seed_demo(app[keys.STORE], app[keys.CONFIG], now)
    family = seed_demo_family(app[keys.STORE], app[keys.CONFIG], info, now)
    return "\n".join([format_banner(info),
                      format_family_banner(family, app[keys.NOTIFIER].destination)])


def database_options(config: Config) -> DatabaseOptions:
    """The PostgreSQL bounds from the config (relay/records/store/engine.py says why)."""
    return DatabaseOptions(
        connect_timeout_s=config.database_connect_timeout_s,
        statement_timeout_s=config.database_statement_timeout_s,
        idle_in_transaction_timeout_s=config.database_idle_tx_timeout_s,
        synchronous_commit=config.database_synchronous_commit,
    )


def _install_cluster(app: web.Application, registry: CallRegistry, runtime: CallRuntime) -> None:
    """Redis for nodes, placement and the bus. Drain runs first at shutdown, before the
    legs are told the relay is restarting, so their calls are free to move when they rejoin."""
    from relay.cluster.remote_calls import RemoteCalls, lifecycle_from_bus
    from relay.cluster.service import Cluster

    cluster = Cluster(app[keys.CONFIG], registry, runtime)
    app[keys.CLUSTER] = cluster
    cluster.bus.on("control", functools.partial(call_control.control_from_bus, app))
    lifecycle = app[keys.LIFECYCLE]  # booking changes reach calls other nodes run
    lifecycle.remote = RemoteCalls(cluster)
    cluster.bus.on("lifecycle", functools.partial(lifecycle_from_bus, lifecycle))
    app[keys.READY_CHECKS].append(cluster.directory.healthy)
    app.on_response_prepare.append(cluster.widen_connect_src)

    async def logged_out(payload: dict[str, Any]) -> None:  # watch tokens die with the session
        close_watchers(app[keys.SESSIONS], str(payload.get("session_ref", "")))

    cluster.bus.on("staff_logout", logged_out)
    app[keys.NOTIFIER].duty = lambda: cluster.duties.holds("notifier")  # one sender
    app[keys.RETENTION].duty = lambda: cluster.duties.holds("retention")  # one purger

    async def start(app: web.Application) -> None:
        await cluster.start()

    async def drain(app: web.Application) -> None:
        await cluster.drain()

    async def stop(app: web.Application) -> None:
        await cluster.stop()

    app.on_startup.insert(0, start)
    app.on_shutdown.insert(0, drain)
    app.on_cleanup.append(stop)


def _install_vision_watch(app: web.Application, detector: DetectorService,
                          registry: CallRegistry, config: Config) -> None:
    """Vision as part of health: gauges, staff alerts, and admission by vision capacity."""
    from relay.calls.vision_health import VisionWatch

    watch = VisionWatch(detector, registry, config)
    app[keys.VISION_WATCH] = watch
    registry.admission_checks.append(watch.check_admission)
    _with_app(app, watch.start, watch.stop)
