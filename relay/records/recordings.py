"""Recordings after the call: the index (SQLite), staff access through the API, wiring.

The index keeps one row per recording file: booking, establishment, file (a key in the
recordings storage, relay/records/storage.py), start and end, size and SHA-256 of the
ciphertext (chain of custody), ``retention_until`` and the legal hold. Rows are never removed: a
deleted recording keeps its row with status ``deleted`` so the index and the audit trail agree
on what existed.

Segments: a call recorded by one node and continued by another (its node died or drained, the
call was placed afresh) has one row per file, numbered ``segment`` 1, 2, ... within its booking.
The writing node (``node``) marks its rows alive every ``recording_heartbeat_s``
(``heartbeat_at``); a row left ``recording`` with no heartbeat for ``recording_stale_s`` was cut
short by its node's death, and any node marks it ``interrupted`` (``recover_unfinished``),
with the size and hash of what its chunks made durable.

The routes are operations of the API's route table (``relay.web.routes``: ``recording_*``),
with their models and staff role (releasing a hold is for admins); ids are parsed by
``relay.web.models.parse_id``. Every access through the API (list, view, download, hold) and
every refusal is written to the audit trail (``app[keys.CALL_AUDIT](booking_id, kind, detail)``); a list that spans bookings is one
entry under booking 0 naming the recordings shown. Who may ask is decided by
``app[keys.AUTHORIZE_STAFF](request)`` (sync or async), which returns the staff member or raises
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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

from aiohttp import web

from relay import keys, metrics
from relay.config import Config
from relay.records.sealed import RecordingError, SealedReader, sha256_stream
from relay.records.storage import FolderStorage, Storage
from relay.records.store.base import migrate, transaction
from relay.records.store.engine import Database
from relay.records.store.values import RecordingStatus
from relay.tasks import cancel_and_wait
from relay.web import models
from relay.web.routes import OPERATIONS, RECORDINGS_PREFIX, Op, role_allows

log = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = get_args(RecordingStatus)


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
    segment: int = 1
    node: str | None = None
    heartbeat_at: float | None = None

    def public(self) -> dict[str, Any]:
        """What staff see: everything but where the file lies and which node wrote it."""
        out = asdict(self)
        for internal in ("path", "node", "heartbeat_at"):
            del out[internal]
        out["complete"] = self.status == "complete"
        return out


class RecordingIndex:
    """The recordings table. Used from the event loop only (one connection, short statements)."""

    def __init__(self, conn: Database) -> None:
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
        node: str | None = None,
    ) -> int:
        """A new row, the booking's next segment (counted in the same transaction)."""
        with transaction(self.conn):
            (segment,) = self.conn.execute(
                "SELECT COALESCE(MAX(segment), 0) + 1 FROM recordings WHERE booking_id = ?",
                (booking_id,),
            ).fetchone()
            cur = self.conn.execute(
                "INSERT INTO recordings (booking_id, establishment_id, path, media_type, "
                "started_at, retention_until, segment, node, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (booking_id, establishment_id, path, media_type, started_at, retention_until,
                 segment, node, started_at),
            )
            return int(cur.fetchone()[0])

    def heartbeat(self, rec_id: int, at: float) -> None:
        """The writing node is alive and still writing this row's file."""
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE recordings SET heartbeat_at = ? WHERE id = ? AND status = 'recording'",
                (at, rec_id),
            )

    def finish(self, rec_id: int, ended_at: float, size: int, sha256: str, status: str) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE recordings SET ended_at = ?, size = ?, sha256 = ?, status = ? WHERE id = ?",
                (ended_at, size, sha256, status, rec_id),
            )

    def interrupt(self, rec_id: int, ended_at: float, size: int, sha256: str) -> bool:
        """Mark a row cut short, unless someone (another node, its writer) finished it first."""
        with transaction(self.conn):
            cur = self.conn.execute(
                "UPDATE recordings SET ended_at = ?, size = ?, sha256 = ?, status = 'interrupted'"
                " WHERE id = ? AND status = 'recording'",
                (ended_at, size, sha256, rec_id),
            )
        return cur.rowcount == 1

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

    def mark_deleted(self, rec_id: int, at: float) -> bool:
        """False when the row was already deleted (another node's sweep got there first)."""
        with transaction(self.conn):
            cur = self.conn.execute(
                "UPDATE recordings SET status = 'deleted', deleted_at = ?"
                " WHERE id = ? AND status != 'deleted'", (at, rec_id)
            )
        return cur.rowcount == 1

    def unfinished(self, node: str | None = None, stale_before: float | None = None
                   ) -> list[Recording]:
        """Rows left ``recording``: all of them, or (with ``node``) this node's own, those of
        no node (written before nodes were named) and any whose heartbeat is older than
        ``stale_before``."""
        if node is None:
            return self._rows("WHERE status = 'recording'")
        return self._rows(
            "WHERE status = 'recording' AND (node IS NULL OR node = ?"
            " OR COALESCE(heartbeat_at, started_at) < ?)",
            (node, stale_before if stale_before is not None else float("-inf")),
        )


_COLUMNS = tuple(Recording.__dataclass_fields__)


def _recording(row: tuple[Any, ...]) -> Recording:
    rec = Recording(*row)
    rec.legal_hold = bool(rec.legal_hold)
    return rec


def recording_path(config: Config, rec: Recording) -> Path:
    """The file of an index row in the folder storage, refusing any path that would leave
    recordings_dir (tools and tests; the relay itself goes through its ``Storage``)."""
    return FolderStorage(Path(config.recordings_dir)).path(rec.path)


def recover_unfinished(
    index: RecordingIndex, storage: Storage, busy: set[str],
    audit: Callable[..., None] | None = None, node: str | None = None,
    stale_before: float | None = None,
) -> list[int]:
    """Rows left 'recording' by a writer that is gone become 'interrupted', with the size and
    hash of what is in storage. Without ``node``: every such row (one node, after a crash);
    with it: this node's own (a previous run), and other nodes' whose heartbeat is older
    than ``stale_before`` (their node died). ``busy``: keys being written here, left alone."""
    recovered = []
    for rec in index.unfinished(node, stale_before):
        if rec.path in busy:
            continue
        try:
            with storage.open(rec.path) as source:
                size, digest = sha256_stream(source)
            ended: float = storage.modified(rec.path)
        except FileNotFoundError:
            size, digest, ended = 0, None, time.time()
        if not index.interrupt(rec.id, ended_at=ended, size=size, sha256=digest or ""):
            continue  # another node recovered it (or its writer finished it) meanwhile
        if audit is not None:
            audit(rec.booking_id, "recording_interrupted",
                  {"recording_id": rec.id, "size": size, "sha256": digest, "node": rec.node})
        metrics.RECORDINGS_INTERRUPTED.inc()
        log.warning("recording %s was cut short (its node %s stopped while recording)",
                    rec.id, rec.node or "?")
        recovered.append(rec.id)
    return recovered


# --- API -----------------------------------------------------------------------------------


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
    audit = app.get(keys.CALL_AUDIT)
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


async def _authorize(request: web.Request, action: str, op: Op) -> Any:
    """The staff member making this request (of at least ``op``'s role), or a refusal that is
    audited."""
    authorize = request.app.get(keys.AUTHORIZE_STAFF)
    try:
        if authorize is None:
            raise web.HTTPForbidden(text="recordings need a staff sign-in, which is not configured")
        staff = authorize(request)
        if inspect.isawaitable(staff):
            staff = await staff
        if not role_allows(op.staff_role, _get(staff, "role")):
            raise web.HTTPForbidden(text=f"only an {op.staff_role} may do this")
    except (web.HTTPUnauthorized, web.HTTPForbidden) as exc:
        rec = None
        with contextlib.suppress(web.HTTPNotFound):
            rec = _lookup(request) if "rec_id" in request.match_info else None
        _refused(request, action, exc, rec)
        raise
    return staff


async def _authorize_for(request: web.Request, action: str, op: Op) -> tuple[Any, Recording]:
    """Staff first (an unknown id is no answer to strangers), then the recording, then scope."""
    staff = await _authorize(request, action, op)
    rec = _lookup(request)
    allowed = staff_establishments(staff)
    if allowed is not None and rec.establishment_id not in allowed:
        # the same 404 as an unknown id (as bookings and contacts answer): staff elsewhere
        # cannot tell which recording ids exist; the refusal is still audited
        exc = web.HTTPNotFound(text=NO_SUCH_RECORDING)
        _refused(request, action, exc, rec, staff)
        raise exc
    return staff, rec


def _index(request: web.Request) -> RecordingIndex:
    return request.app[keys.RECORDING_INDEX]


_NO_STORE = {"Cache-Control": "no-store"}
NO_SUCH_RECORDING = "no such recording"


def _json(op: Op, value: Any) -> web.Response:
    """``value`` in ``op``'s response model (the documented shape), never cached."""
    assert op.response is not None
    body = op.response.model_validate(value).model_dump(mode="json")
    return web.json_response(body, status=op.status, headers=_NO_STORE)


def _lookup(request: web.Request) -> Recording:
    rec_id = models.parse_id(request.match_info["rec_id"])
    if rec_id is None:
        raise web.HTTPNotFound(text=NO_SUCH_RECORDING)
    rec = _index(request).get(rec_id)
    if rec is None:
        raise web.HTTPNotFound(text=NO_SUCH_RECORDING)
    return rec


async def list_recordings(request: web.Request, op: Op) -> web.Response:
    staff = await _authorize(request, "list", op)
    query = await _read(request, op)
    assert isinstance(query, models.RecordingsQuery)
    booking = query.booking_id
    rows = _index(request).list(booking_id=booking, establishment_ids=staff_establishments(staff))
    _audit(request.app, booking or 0, "recording_list", {
        "staff": staff_name(staff), "booking_id": booking, "recording_ids": [r.id for r in rows],
    })
    return _json(op, {"recordings": [r.public() for r in rows]})


async def get_recording(request: web.Request, op: Op) -> web.Response:
    staff, rec = await _authorize_for(request, "view", op)
    _audit(request.app, rec.booking_id, "recording_view",
           {"staff": staff_name(staff), "recording_id": rec.id})
    return _json(op, rec.public())


async def download_recording(request: web.Request, op: Op) -> web.StreamResponse:
    """The decrypted WebM, streamed chunk by chunk (no plaintext ever touches disk)."""
    staff, rec = await _authorize_for(request, "download", op)
    who = staff_name(staff)
    if rec.status == "deleted":
        _audit(request.app, rec.booking_id, "recording_download",
               {"staff": who, "recording_id": rec.id, "result": "gone"})
        raise web.HTTPGone(text="this recording was deleted at the end of its retention")
    storage: Storage = request.app[keys.RECORDING_STORAGE]
    key: bytes = request.app[keys.RECORDING_KEY]
    loop = asyncio.get_running_loop()
    try:
        source = await loop.run_in_executor(None, storage.open, rec.path)
    except (FileNotFoundError, ValueError):
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


async def place_hold(request: web.Request, op: Op) -> web.Response:
    staff, rec = await _authorize_for(request, "hold", op)
    # JSON only: not a form a third-party page could submit with a staff member's cookies
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send JSON: {\"reason\": ...}")
    body = await _read(request, op)
    assert isinstance(body, models.Hold)
    reason = body.reason
    if not reason.strip():
        raise web.HTTPBadRequest(text="a legal hold needs a reason")
    if rec.status == "deleted":
        raise web.HTTPGone(text="this recording was already deleted")
    who = staff_name(staff)
    _index(request).set_hold(rec.id, True, reason, who, time.time())
    _audit(request.app, rec.booking_id, "recording_hold_placed",
           {"staff": who, "recording_id": rec.id, "reason": reason})
    return _json(op, _index(request).get(rec.id).public())  # type: ignore[union-attr]


async def release_hold(request: web.Request, op: Op) -> web.Response:
    staff, rec = await _authorize_for(request, "release_hold", op)
    if not rec.legal_hold:
        raise web.HTTPConflict(text="this recording is not on legal hold")
    who = staff_name(staff)
    _index(request).set_hold(rec.id, False, None, who, time.time())
    _audit(request.app, rec.booking_id, "recording_hold_released",
           {"staff": who, "recording_id": rec.id, "previous_reason": rec.hold_reason})
    return _json(op, _index(request).get(rec.id).public())  # type: ignore[union-attr]


async def _read(request: web.Request, op: Op) -> Any:
    """The body or query of ``op``, validated as the booking API does (same codes)."""
    from relay.web.api import read_request  # the API's parser; imported late (no cycle)

    return await read_request(request, op)


_HANDLERS: dict[str, Callable[[web.Request, Op], Any]] = {
    "recordings_list": list_recordings,
    "recording_get": get_recording,
    "recording_media": download_recording,
    "recording_hold": place_hold,
    "recording_release": release_hold,
}


def _bind(op: Op) -> Callable[[web.Request], Any]:
    fn = _HANDLERS[op.op_id]

    async def route(request: web.Request) -> web.StreamResponse:
        from relay.web.api import ApiError, error_response

        try:
            return await fn(request, op)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)

    route.__name__ = f"api_{op.op_id}"
    return route


def add_routes(app: web.Application) -> None:
    """The table's recording operations (``relay.web.routes``), each with its role check."""
    for op in OPERATIONS:
        if op.prefix == RECORDINGS_PREFIX:
            app.router.add_route(op.method, op.full_path, _bind(op))


# --- wiring --------------------------------------------------------------------------------


def install(app: web.Application, conn: Database) -> Any:
    """Wire recording into the app (relay/app.py build_app); returns the Recorder.

    Adds the call hook, the API routes, crash recovery and the retention sweeper at startup,
    and finishing every recording at shutdown. ``conn`` is the store's SQLite connection. Reads
    ``app[keys.CALL_AUDIT]`` and ``app[keys.AUTHORIZE_STAFF]`` when they are used, so tests may
    replace them after this call (before the app starts).
    """
    from relay.media.recorder import Recorder
    from relay.node import node_id
    from relay.records.retention import RetentionSweeper

    config = app[keys.CONFIG]
    registry = app[keys.REGISTRY]
    index = RecordingIndex(conn)
    storage = FolderStorage(Path(config.recordings_dir))
    node = node_id(config)

    def audit(booking_id: int, kind: str, detail: dict[str, Any]) -> None:
        _audit(app, booking_id, kind, detail)

    def video_mime(call: Any) -> str | None:
        live = registry.get(call.id)
        return live.video_mime if live is not None else None

    recorder = Recorder(config, index, audit, video_mime=video_mime, storage=storage, node=node)
    registry.hooks.append(recorder)
    sweeper = RetentionSweeper(index, config, audit, busy=recorder.recording_now, storage=storage)
    app[keys.RECORDING_STORAGE] = storage
    app[keys.RECORDING_INDEX] = index
    app[keys.RECORDING_KEY] = recorder.key
    app[keys.RECORDER] = recorder
    app[keys.RETENTION] = sweeper
    add_routes(app)

    def recover() -> None:
        stale = time.time() - config.recording_stale_s
        recover_unfinished(index, storage, recorder.recording_now(), audit, node, stale)

    async def watch_stale() -> None:
        """Other nodes' recordings cut short by their death: found within a heartbeat."""
        while True:
            await asyncio.sleep(config.recording_heartbeat_s)
            try:
                recover()
            except Exception:
                log.exception("looking for recordings cut short failed")

    watcher: list[asyncio.Task[None]] = []

    async def startup(_app: web.Application) -> None:
        recover()
        watcher.append(asyncio.ensure_future(watch_stale()))
        sweeper.start()

    async def shutdown(_app: web.Application) -> None:
        await recorder.close()
        await sweeper.stop()
        await cancel_and_wait(watcher.pop() if watcher else None)

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    return recorder
