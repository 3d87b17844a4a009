"""The typed keys under which the composition root (relay/app.py) hands services to handlers.

aiohttp's ``AppKey`` gives each service one name and one type: a handler reads
``request.config_dict[STORE]`` and its type checker knows it is a ``Store``. Only relay/app.py
sets them; tests may replace the two edge services marked so (before the app starts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from relay.records.store import Staff
    from relay.web.signalling import LegSession

CallAudit = Callable[[int, str, dict[str, Any]], None]
"""(booking_id, kind, detail): one record in a call's audit trail."""
StaffAuthorizer = Callable[[web.Request], "Staff"]
"""The logged-in staff member making a request, or ``web.HTTPUnauthorized``."""
ReadyCheck = Callable[[], "str | None"]
"""A problem that makes the node unready (``/readyz`` 503), or None."""

CONFIG = web.AppKey("config", "Config")
CLOCK = web.AppKey("clock", Callable[[], float])
"""Wall-clock time for the API (tests move it)."""
STORE = web.AppKey("store", "Store")
AUDIT_LOG = web.AppKey("audit_log", "AuditLog")
CALL_AUDIT = web.AppKey("call_audit", CallAudit)
"""Edge: tests may replace it to collect what the recorder audits."""
AUTHORIZE_STAFF = web.AppKey("authorize_staff", StaffAuthorizer)
"""Edge: tests of the recordings routes may replace it."""
REGISTRY = web.AppKey("registry", "CallRegistry")
LIFECYCLE = web.AppKey("lifecycle", "CallLifecycle")
"""The one path for booking changes that affect a call (relay/calls/lifecycle.py)."""
RUNTIME = web.AppKey("runtime", "CallRuntime")
ADMIT = web.AppKey("admit", "Admit")
JOIN_GATE = web.AppKey("join_gate", "JoinGate")
TOKEN_SECRET = web.AppKey("token_secret", bytes)
AUTH_LIMITER = web.AppKey("auth_limiter", "BadAttemptLimiter")
DETECTOR = web.AppKey("detector", "DetectorService")
RECORDER = web.AppKey("recorder", "Recorder")
RECORDING_INDEX = web.AppKey("recording_index", "RecordingIndex")
RECORDING_KEY = web.AppKey("recording_key", bytes)
RETENTION = web.AppKey("retention", "RetentionSweeper")
SESSIONS = web.AppKey("sessions", set["LegSession"])
"""Open signalling sessions (drained at shutdown)."""
CLEANUPS = web.AppKey("cleanups", set[asyncio.Task[None]])
"""Leg clean-ups still running (shutdown waits for them)."""
READY_CHECKS = web.AppKey("ready_checks", list[ReadyCheck])
BACKGROUND = web.AppKey("background", list[asyncio.Task[None]])
METRICS_RUNNER = web.AppKey("metrics_runner", web.AppRunner)
ORIGINS = web.AppKey("origins", "Origins")
"""The hosts and origins the relay answers (relay/web/origins.py)."""
FACE_ENROLMENTS = web.AppKey("face_enrolments", "FaceEnrolments")
"""Face enrolment, its sealed storage and retention (relay/identity/enrolment.py)."""
TURN_SECRET = web.AppKey("turn_secret", bytes)
"""coturn's shared secret for REST credentials (relay/turn.py); empty without TURN."""
LINK_MONITOR = web.AppKey("link_monitor", "LinkMonitor")
"""Per-leg link quality and the REMB cap (relay/media/bandwidth.py)."""
NOTIFIER = web.AppKey("notifier", "Notifier")
"""The outbox sender (relay/notify/sender.py): handlers call ``wake()`` after queueing."""
CLUSTER = web.AppKey("cluster", "Cluster")
"""Many nodes (relay/cluster/): set only when ``redis_url`` is; absent on a single node."""
RECORDING_STORAGE = web.AppKey("recording_storage", "Storage")
"""Where recordings are written and read (relay/records/storage.py): shared by all nodes."""
IDENTITY_GATE = web.AppKey("identity_gate", "IdentityGate")
"""The check before the call: holds each party leg until its face matches (relay/calls/
identity_gate.py); staff admit a held side through it."""
VISION_WATCH = web.AppKey("vision_watch", "VisionWatch")
"""Vision health: gauges, call alerts and admission by capacity (relay/calls/vision_health.py)."""
ERASURE = web.AppKey("erasure", "Erasure")
"""Deleting a visitor's or prisoner's record with what it owns (relay/records/erasure.py)."""
