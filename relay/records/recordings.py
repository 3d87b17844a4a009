"""Recordings after the call: the index (SQLite), staff access through the API, wiring.

The index keeps one row per recording file: booking, establishment, file (relative to
``recordings_dir``), start and end, size and SHA-256 of the ciphertext (chain of custody),
``retention_until`` and the legal hold. Rows are never removed: a deleted recording keeps its
row with status ``deleted`` so the index and the audit trail agree on what existed.

Every access through the API (list, view, download, hold) and every refusal is written to the
audit trail (``app["audit"](booking_id, kind, detail)``); a list that spans bookings is one
entry under booking 0 naming the recordings shown. Who may ask is decided by
``app["authorize_staff"](request)`` (sync or async), which returns the staff member or raises
HTTPUnauthorized/HTTPForbidden; this module then limits staff to their own establishments:
the staff info (mapping or object) must carry ``establishment_id`` or ``establishment_ids``,
or ``all_establishments: True``. Without ``authorize_staff`` every request is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from relay.config import Config
from relay.records.sealed import RecordingError, SealedReader, sha256_file
from relay.records.store.base import migrate, transaction

log = logging.getLogger(__name__)

STATUSES = ("recording", "complete", "interrupted", "failed", "deleted")

@dataclass
class Recording:
    id: int
    booking_id: int
    establishment_id: int
    path: str
    media_type: str
    started_at: float
    ended_at: float | None
    size: int | None
    sha256: str | None
    retention_until: float
    legal_hold: bool
    hold_reason: str | None
    hold_by: str | None
    hold_at: float | None
    status: str
    deleted_at: float | None

    def public(self) -> dict[str, Any]:
        """What staff see: everything but where the file lies."""
        out = asdict(self)
        del out["path"]
        out["complete"] = self.status == "complete"
        return out


class RecordingIndex:
    """The recordings table. Used from the event loop only (one connection, short statements)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        migrate(conn)  # the table is migration 4 (relay/records/store/schema.py)

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Recording]:
        cur = self.conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM recordings {sql}", args)
        return [_recording(row) for row in cur.fetchall()]

    def add(
        self,
        booking_id: int,
        establishment_id: int,
        path: str,
        media_type: str,
        started_at: float,
        retention_until: float,
    ) -> int:
        with transaction(self.conn):
            cur = self.conn.execute(
                "INSERT INTO recordings (booking_id, establishment_id, path, media_type, "
                "started_at, retention_until) VALUES (?, ?, ?, ?, ?, ?)",
                (booking_id, establishment_id, path, media_type, started_at, retention_until),
            )
        return int(cur.lastrowid or 0)

    def finish(self, rec_id: int, ended_at: float, size: int, sha256: str, status: str) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE recordings SET ended_at = ?, size = ?, sha256 = ?, status = ? WHERE id = ?",
                (ended_at, size, sha256, status, rec_id),
            )

    def get(self, rec_id: int) -> Recording | None:
        rows = self._rows("WHERE id = ?", (rec_id,))
        return rows[0] if rows else None

    def list(
        self,
        booking_id: int | None = None,
        establishment_ids: set[int] | None = None,
        include_deleted: bool = False,
    ) -> list[Recording]:
        where, args = [], []
        if booking_id is not None:
            where.append("booking_id = ?")
            args.append(booking_id)
        if establishment_ids is not None:
            marks = ", ".join("?" for _ in establishment_ids) or "NULL"
            where.append(f"establishment_id IN ({marks})")
            args.extend(sorted(establishment_ids))
        if not include_deleted:
            where.append("status != 'deleted'")
        sql = ("WHERE " + " AND ".join(where)) if where else ""
        return self._rows(sql + " ORDER BY started_at, id", tuple(args))

    def set_hold(self, rec_id: int, held: bool, reason: str | None, by: str | None, at: float) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE recordings SET legal_hold = ?, hold_reason = ?, hold_by = ?, hold_at = ? "
                "WHERE id = ?",
                (int(held), reason, by, at, rec_id),
            )

    def expired(self, now: float) -> list[Recording]:
        """Past retention, not on hold, not being written, not yet deleted."""
        return self._rows(
            "WHERE retention_until <= ? AND legal_hold = 0 "
            "AND status NOT IN ('deleted', 'recording') ORDER BY retention_until",
            (now,),
        )

    def mark_deleted(self, rec_id: int, at: float) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE recordings SET status = 'deleted', deleted_at = ? WHERE id = ?", (at, rec_id)
            )

    def unfinished(self) -> list[Recording]:
        return self._rows("WHERE status = 'recording'")


_COLUMNS = tuple(Recording.__dataclass_fields__)


def _recording(row: tuple[Any, ...]) -> Recording:
    rec = Recording(*row)
    rec.legal_hold = bool(rec.legal_hold)
    return rec


def recording_path(config: Config, rec: Recording) -> Path:
    """The file of an index row, refusing any path that would leave recordings_dir."""
    root = Path(config.recordings_dir).resolve()
    path = (root / rec.path).resolve()
    if root not in path.parents:
        raise ValueError(f"recording {rec.id} points outside the recordings directory")
    return path


def recover_unfinished(
    index: RecordingIndex, config: Config, busy: set[str], audit: Callable[..., None] | None = None
) -> list[int]:
    """After a crash: rows left 'recording' become 'interrupted', with the file's size and hash."""
    recovered = []
    for rec in index.unfinished():
        if rec.path in busy:
            continue
        path = recording_path(config, rec)
        if path.exists():
            size, digest = sha256_file(path)
            ended = path.stat().st_mtime
        else:
            size, digest, ended = 0, None, time.time()
        index.finish(rec.id, ended_at=ended, size=size, sha256=digest or "", status="interrupted")
        if audit is not None:
            audit(rec.booking_id, "recording_interrupted",
                  {"recording_id": rec.id, "size": size, "sha256": digest})
        log.warning("recording %s was cut short (relay stopped while recording)", rec.id)
        recovered.append(rec.id)
    return recovered


# --- API -----------------------------------------------------------------------------------

INDEX_KEY = "recording_index"
KEY_KEY = "recording_key"


def _get(info: Any, name: str, default: Any = None) -> Any:
    if isinstance(info, dict):
        return info.get(name, default)
    return getattr(info, name, default)


def staff_name(staff: Any) -> str:
    for attr in ("id", "username", "name", "email"):
        value = _get(staff, attr)
        if value is not None:
            return str(value)
    return "?"


def staff_establishments(staff: Any) -> set[int] | None:
    """The establishments a staff member may see; None means all of them."""
    if _get(staff, "all_establishments") is True:
        return None
    ids = _get(staff, "establishment_ids")
    if ids is None:
        one = _get(staff, "establishment_id")
        ids = [] if one is None else [one]
    return {int(i) for i in ids}


def _audit(app: web.Application, booking_id: int, kind: str, detail: dict[str, Any]) -> None:
    audit = app.get("audit")
    if audit is None:
        log.info("audit %s booking=%s %s", kind, booking_id, detail)
        return
    audit(booking_id, kind, detail)


def _refused(request: web.Request, action: str, exc: web.HTTPException,
             rec: Recording | None = None, staff: Any = None) -> None:
    detail: dict[str, Any] = {"action": action, "remote": request.remote, "path": request.path,
                              "refused": exc.status}
    if rec is not None:
        detail["recording_id"] = rec.id
    if staff is not None:
        detail["staff"] = staff_name(staff)
    _audit(request.app, rec.booking_id if rec is not None else 0, "recording_access_refused", detail)


async def _authorize(request: web.Request, action: str) -> Any:
    """The staff member making this request, or a refusal that is audited."""
    authorize = request.app.get("authorize_staff")
    try:
        if authorize is None:
            raise web.HTTPForbidden(text="recordings need a staff sign-in, which is not configured")
        staff = authorize(request)
        if inspect.isawaitable(staff):
            staff = await staff
    except (web.HTTPUnauthorized, web.HTTPForbidden) as exc:
        rec = None
        with contextlib.suppress(web.HTTPNotFound):
            rec = _lookup(request) if "rec_id" in request.match_info else None
        _refused(request, action, exc, rec)
        raise
    return staff


async def _authorize_for(request: web.Request, action: str) -> tuple[Any, Recording]:
    """Staff first (an unknown id is no answer to strangers), then the recording, then scope."""
    staff = await _authorize(request, action)
    rec = _lookup(request)
    allowed = staff_establishments(staff)
    if allowed is not None and rec.establishment_id not in allowed:
        exc = web.HTTPForbidden(text="this recording belongs to another establishment")
        _refused(request, action, exc, rec, staff)
        raise exc
    return staff, rec


def _index(request: web.Request) -> RecordingIndex:
    return request.app[INDEX_KEY]


MAX_ID = 2**53 - 1  # ids in the API are JSON-safe integers (as in relay/web/openapi.py)


def _id(raw: str) -> int | None:
    """A positive id within range, or None: never an int SQLite cannot hold."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16:
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ID else None


def _lookup(request: web.Request) -> Recording:
    rec_id = _id(request.match_info["rec_id"])
    if rec_id is None:
        raise web.HTTPNotFound(text="no such recording")
    rec = _index(request).get(rec_id)
    if rec is None:
        raise web.HTTPNotFound()
    return rec


async def list_recordings(request: web.Request) -> web.Response:
    staff = await _authorize(request, "list")
    booking: int | None = None
    if "booking_id" in request.query:
        booking = _id(request.query["booking_id"])
        if booking is None:
            raise web.HTTPBadRequest(text="booking_id must be a whole number from 1")
    rows = _index(request).list(booking_id=booking, establishment_ids=staff_establishments(staff))
    _audit(request.app, booking or 0, "recording_list", {
        "staff": staff_name(staff), "booking_id": booking, "recording_ids": [r.id for r in rows],
    })
    return web.json_response({"recordings": [r.public() for r in rows]},
                             headers={"Cache-Control": "no-store"})


async def get_recording(request: web.Request) -> web.Response:
    staff, rec = await _authorize_for(request, "view")
    _audit(request.app, rec.booking_id, "recording_view",
           {"staff": staff_name(staff), "recording_id": rec.id})
    return web.json_response(rec.public(), headers={"Cache-Control": "no-store"})


async def download_recording(request: web.Request) -> web.StreamResponse:
    """The decrypted WebM, streamed chunk by chunk (no plaintext ever touches disk)."""
    staff, rec = await _authorize_for(request, "download")
    who = staff_name(staff)
    if rec.status == "deleted":
        _audit(request.app, rec.booking_id, "recording_download",
               {"staff": who, "recording_id": rec.id, "result": "gone"})
        raise web.HTTPGone(text="this recording was deleted at the end of its retention")
    config: Config = request.app["config"]
    path = recording_path(config, rec)
    key: bytes = request.app[KEY_KEY]
    loop = asyncio.get_running_loop()
    try:
        source = await loop.run_in_executor(None, open, path, "rb")
    except FileNotFoundError:
        _audit(request.app, rec.booking_id, "recording_download",
               {"staff": who, "recording_id": rec.id, "result": "file missing"})
        raise web.HTTPNotFound(text="the recording's file is missing") from None
    _audit(request.app, rec.booking_id, "recording_download",
           {"staff": who, "recording_id": rec.id, "result": "started"})
    digest = hashlib.sha256()
    reader = SealedReader(_Hashing(source, digest), key, allow_truncated=rec.status != "complete")
    chunks = reader.chunks()
    response = web.StreamResponse(headers={
        "Content-Type": rec.media_type,
        "Content-Disposition": f'attachment; filename="booking-{rec.booking_id}-recording-{rec.id}'
        f'.{"webm" if rec.media_type == "video/webm" else "mkv"}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Recording-Status": rec.status,
    })
    sentinel = object()
    try:
        first = await loop.run_in_executor(None, next, chunks, sentinel)
        await response.prepare(request)
        block = first
        while block is not sentinel:
            await response.write(block)  # type: ignore[arg-type]
            block = await loop.run_in_executor(None, next, chunks, sentinel)
        await response.write_eof()
    except RecordingError as exc:
        # the file was altered or damaged: say so (in the trail) and cut the download short
        log.error("recording %s failed verification: %s", rec.id, exc)
        _audit(request.app, rec.booking_id, "recording_integrity_failure",
               {"staff": who, "recording_id": rec.id, "error": str(exc)})
        if not response.prepared:
            raise web.HTTPInternalServerError(text="the recording failed verification") from None
        raise ConnectionResetError("recording failed verification") from None
    finally:
        source.close()
    if rec.sha256 and rec.status == "complete" and digest.hexdigest() != rec.sha256:
        _audit(request.app, rec.booking_id, "recording_integrity_failure",
               {"staff": who, "recording_id": rec.id, "error": "sha256 differs from the index"})
    return response


class _Hashing:
    """A file wrapper that hashes what is read (the ciphertext), for chain of custody."""

    def __init__(self, f: Any, digest: Any) -> None:
        self._f = f
        self._digest = digest

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._digest.update(data)
        return data


async def place_hold(request: web.Request) -> web.Response:
    staff, rec = await _authorize_for(request, "hold")
    if request.content_type != "application/json":
        # not a form a third-party page could submit with a staff member's cookies
        raise web.HTTPUnsupportedMediaType(text="send JSON: {\"reason\": ...}")
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="send JSON: {\"reason\": ...}") from None
    reason = str(body.get("reason", "") if isinstance(body, dict) else "")[:500]
    if not reason.strip():
        raise web.HTTPBadRequest(text="a legal hold needs a reason")
    if rec.status == "deleted":
        raise web.HTTPGone(text="this recording was already deleted")
    who = staff_name(staff)
    _index(request).set_hold(rec.id, True, reason, who, time.time())
    _audit(request.app, rec.booking_id, "recording_hold_placed",
           {"staff": who, "recording_id": rec.id, "reason": reason})
    return web.json_response(_index(request).get(rec.id).public())  # type: ignore[union-attr]


async def release_hold(request: web.Request) -> web.Response:
    staff, rec = await _authorize_for(request, "release_hold")
    who = staff_name(staff)
    _index(request).set_hold(rec.id, False, None, who, time.time())
    _audit(request.app, rec.booking_id, "recording_hold_released",
           {"staff": who, "recording_id": rec.id, "previous_reason": rec.hold_reason})
    return web.json_response(_index(request).get(rec.id).public())  # type: ignore[union-attr]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/recordings", list_recordings)
    app.router.add_get("/api/recordings/{rec_id}", get_recording)
    app.router.add_get("/api/recordings/{rec_id}/media", download_recording)
    app.router.add_post("/api/recordings/{rec_id}/hold", place_hold)
    app.router.add_delete("/api/recordings/{rec_id}/hold", release_hold)


# --- wiring --------------------------------------------------------------------------------


def install(app: web.Application, conn: sqlite3.Connection | None = None) -> Any:
    """Wire recording into an app made by relay.app.create_app; returns the Recorder.

    Adds the call hook, the API routes, crash recovery and the retention sweeper at startup,
    and finishing every recording at shutdown. ``conn`` is the store's SQLite connection
    (a connection to ``config.db_path`` is opened when none is given). Reads
    ``app["audit"]`` and ``app["authorize_staff"]`` when they are used, so they may be set
    after this call (before the app starts).
    """
    from relay.media.recorder import Recorder
    from relay.records.retention import RetentionSweeper

    config: Config = app["config"]
    registry = app["registry"]
    if conn is None:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(config.db_path)
        app.on_cleanup.append(lambda _app: _close(conn))
    index = RecordingIndex(conn)

    def audit(booking_id: int, kind: str, detail: dict[str, Any]) -> None:
        _audit(app, booking_id, kind, detail)

    def video_mime(call: Any) -> str | None:
        live = registry.get(call.id)
        return live.video_mime if live is not None else None

    recorder = Recorder(config, index, audit, video_mime=video_mime)
    registry.hooks.append(recorder)
    sweeper = RetentionSweeper(index, config, audit, busy=recorder.recording_now)
    app[INDEX_KEY] = index
    app[KEY_KEY] = recorder.key
    app["recorder"] = recorder
    app["retention"] = sweeper
    add_routes(app)

    async def startup(_app: web.Application) -> None:
        recover_unfinished(index, config, recorder.recording_now(), audit)
        sweeper.start()

    async def shutdown(_app: web.Application) -> None:
        await recorder.close()
        await sweeper.stop()

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    return recorder


async def _close(conn: sqlite3.Connection) -> None:
    conn.close()
