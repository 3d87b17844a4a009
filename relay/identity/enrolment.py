"""Enrolment: a vetted person's face photo becomes a stored descriptor, sealed with the photo.

One owner, :class:`FaceEnrolments` (one per relay, ``keys.FACE_ENROLMENTS``):

- :meth:`FaceEnrolments.enrol_face` is the one function the vetting approval and the staff
  upload call. It checks the photo's type by its content, its size and declared pixel count,
  decodes it with PyAV, finds the face with CenterFace and refuses a photo with no face,
  several faces, a face too small, too blurred, too dark or washed out (vision.identity);
  then it writes the descriptor and the photo into ONE sealed file (relay/records/sealed.py,
  AES-256-GCM with the recording key) and records it in ``face_enrolments``. Decoding,
  detection and the descriptor run on the identity thread, never on the event loop.
- :meth:`FaceEnrolments.forget` deletes a person's enrolment (file and row): call it when
  the visitor or prisoner record is deleted. :meth:`FaceEnrolments.sweep` deletes those past
  ``retention_until`` (``Config.identity_retention_days`` after enrolment); the retention
  sweeper runs it (relay/records/retention.py), on one node of a cluster.
- :meth:`FaceEnrolments.descriptors` opens the sealed descriptors of a booking's people for
  matching (in-call re-checks and the check before the call).

Every enrolment, refusal and deletion is audited; no descriptor, photo or name is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from relay.config import Config
from relay.records.audit import AuditLog
from relay.records.sealed import RecordingError, SealedWriter, decrypt_bytes
from relay.records.store.base import transaction
from relay.records.store.engine import Database, Row
from vision.detector import Detector
from vision.identity import Enrolment, IdentityWorker, PhotoRefusal, enrol_image

log = logging.getLogger(__name__)

SubjectKind = Literal["visitor", "prisoner"]
SUBJECT_KINDS: tuple[SubjectKind, ...] = ("visitor", "prisoner")
_PHOTO_TYPES = (
    (b"\xff\xd8\xff", "jpeg_pipe", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png_pipe", "image/png"),
)
_LEN = struct.Struct(">I")
DAY_S = 86400.0


@dataclass(frozen=True)
class Enrolled:
    kind: SubjectKind
    subject_id: int
    enrolled_at: float
    enrolled_by: str
    retention_until: float
    face_px: int
    sharpness: float
    brightness: float

    def public(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject_id": self.subject_id,
            "enrolled": True,
            "enrolled_at": self.enrolled_at,
            "enrolled_by": self.enrolled_by,
            "retention_until": self.retention_until,
            "face_px": self.face_px,
            "sharpness": round(self.sharpness, 1),
            "brightness": round(self.brightness, 1),
        }


@dataclass(frozen=True)
class Refused:
    """Why a photo was not enrolled: ``code`` for programs, ``message`` for people."""

    code: str
    message: str
    status: int = 422


def sniff_photo(data: bytes) -> tuple[str, str] | None:
    """(PyAV demuxer, media type) of a JPEG or PNG by its first bytes; None otherwise."""
    for magic, demuxer, media_type in _PHOTO_TYPES:
        if data.startswith(magic):
            return demuxer, media_type
    return None


def decode_photo(data: bytes, demuxer: str, max_pixels: int) -> np.ndarray | Refused:
    """The photo as BGR, or a refusal; the declared size is checked before decoding."""
    try:
        with av.open(io.BytesIO(data), format=demuxer) as container:
            stream = container.streams.video[0]
            w, h = stream.codec_context.width, stream.codec_context.height
            if w * h > max_pixels:
                return Refused(
                    "photo_too_large",
                    f"the photo is {w}x{h}; at most {max_pixels // 1_000_000} megapixels",
                )
            frame = next(container.decode(stream))
            return frame.to_ndarray(format="bgr24")
    except (av.FFmpegError, StopIteration, IndexError, ValueError):
        return Refused("photo_unreadable", "the photo could not be decoded")


def _seal(path: Path, key: bytes, descriptor: np.ndarray, photo: bytes, media_type: str) -> None:
    head = json.dumps({"v": 1, "dim": int(descriptor.size), "media_type": media_type}).encode()
    vector = np.asarray(descriptor, "<f4").tobytes()
    writer = SealedWriter(path, key)
    try:
        writer.seal(_LEN.pack(len(head)) + head + vector + photo, final=True)
    finally:
        writer.close()


def _open(path: Path, key: bytes) -> tuple[np.ndarray, bytes, str]:
    """(descriptor, photo, media type) from a sealed enrolment file."""
    plain, _ = decrypt_bytes(path.read_bytes(), key)
    (n,) = _LEN.unpack_from(plain)
    head = json.loads(plain[_LEN.size : _LEN.size + n])
    start = _LEN.size + n
    end = start + 4 * int(head["dim"])
    return np.frombuffer(plain[start:end], "<f4").copy(), plain[end:], str(head["media_type"])


class FaceEnrolments:
    def __init__(
        self,
        conn: Database,
        config: Config,
        key: bytes,
        audit: AuditLog,
        detector: Callable[[], Detector | None],
        worker: IdentityWorker,
        clock: Callable[[], float],
    ) -> None:
        self.conn = conn
        self.config = config
        self.key = key
        self.audit = audit
        self.detector = detector
        self.worker = worker
        self.clock = clock
        self.faces_dir = Path(config.faces_dir or Path(config.data_dir) / "faces")

    # --- reading -----------------------------------------------------------------------

    def _row(self, kind: str, subject_id: int) -> Row | None:
        cur = self.conn.execute(
            "SELECT * FROM face_enrolments WHERE subject_kind = ? AND subject_id = ?",
            (kind, subject_id),
        )
        row: Row | None = cur.fetchone()
        return row

    def get(self, kind: SubjectKind, subject_id: int) -> Enrolled | None:
        r = self._row(kind, subject_id)
        if r is None:
            return None
        return Enrolled(
            kind,
            subject_id,
            r["enrolled_at"],
            r["enrolled_by"],
            r["retention_until"],
            r["face_px"],
            r["sharpness"],
            r["brightness"],
        )

    def _path(self, stored: str) -> Path:
        path = (self.faces_dir / stored).resolve()
        if path.parent != self.faces_dir.resolve():
            raise ValueError("enrolment path outside the faces folder")
        return path

    def descriptors(
        self, people: list[tuple[SubjectKind, int]]
    ) -> dict[tuple[str, int], np.ndarray]:
        """The enrolled descriptors of ``people`` (blocking: decrypts files; use a thread)."""
        out: dict[tuple[str, int], np.ndarray] = {}
        for kind, subject_id in people:
            r = self._row(kind, subject_id)
            if r is None:
                continue
            try:
                out[(kind, subject_id)] = _open(self._path(r["path"]), self.key)[0]
            except (OSError, ValueError, RecordingError) as exc:
                log.error(
                    "identity: enrolment %s of a %s cannot be opened: %s",
                    r["id"],
                    kind,
                    type(exc).__name__,
                )
        return out

    async def load_descriptors(
        self, people: list[tuple[SubjectKind, int]]
    ) -> dict[tuple[str, int], np.ndarray]:
        """Like :meth:`descriptors`: rows read here (the loop owns the connection), files
        opened on the identity thread."""
        rows = [(kind, sid, self._row(kind, sid)) for kind, sid in people]
        found = [(kind, sid, r["path"]) for kind, sid, r in rows if r is not None]

        def open_all(_encoder: object) -> dict[tuple[str, int], np.ndarray]:
            out: dict[tuple[str, int], np.ndarray] = {}
            for kind, sid, stored in found:
                try:
                    out[(kind, sid)] = _open(self._path(stored), self.key)[0]
                except (OSError, ValueError, RecordingError) as exc:
                    log.error(
                        "identity: an enrolment of a %s cannot be opened: %s",
                        kind,
                        type(exc).__name__,
                    )
            return out

        return await self.worker.run(open_all)

    def gallery_for(self, store: Any) -> Callable[[Any, str], Any]:
        """The in-call gallery (relay/calls/vision_link.py): the family side is matched
        against the booking's visitors, the prison side against its prisoner."""

        async def gallery(call: Any, role: str) -> dict[str, list[np.ndarray]]:
            booking = store.booking(call.id)
            if booking is None:
                return {}
            visitors = sorted({booking.main_visitor_id, *booking.visitor_ids})
            people: list[tuple[SubjectKind, int]] = (
                [("visitor", v) for v in visitors]
                if role == "family"
                else [("prisoner", booking.prisoner_id)]
            )
            vectors = await self.load_descriptors(people)
            return {f"{kind}:{sid}": [v] for (kind, sid), v in vectors.items()}

        return gallery

    def photo(self, kind: SubjectKind, subject_id: int) -> tuple[bytes, str] | None:
        """The enrolment photo and its media type (blocking)."""
        r = self._row(kind, subject_id)
        if r is None:
            return None
        _, photo, media_type = _open(self._path(r["path"]), self.key)
        return photo, media_type

    # --- enrolling ---------------------------------------------------------------------

    async def enrol_face(
        self,
        kind: SubjectKind,
        subject_id: int,
        photo: bytes,
        *,
        actor: str,
        establishment_id: int | None = None,
    ) -> Enrolled | Refused:
        """Enrol ``photo`` as ``kind`` ``subject_id``'s face, replacing an earlier one."""
        result = await self._enrol(kind, subject_id, photo, actor, establishment_id)
        detail: dict[str, Any] = {"kind": kind, "subject_id": subject_id, "bytes": len(photo)}
        if isinstance(result, Refused):
            detail["refused"] = result.code
            self.audit.append(
                "face_enrolment_refused", detail, establishment_id=establishment_id, actor=actor
            )
        else:
            detail.update(face_px=result.face_px, retention_until=result.retention_until)
            self.audit.append(
                "face_enrolled", detail, establishment_id=establishment_id, actor=actor
            )
        return result

    async def _enrol(
        self,
        kind: SubjectKind,
        subject_id: int,
        photo: bytes,
        actor: str,
        establishment_id: int | None,
    ) -> Enrolled | Refused:
        config = self.config
        if len(photo) > config.identity_photo_max_bytes:
            return Refused(
                "photo_too_large", f"at most {config.identity_photo_max_bytes} bytes", 413
            )
        sniffed = sniff_photo(photo)
        if sniffed is None:
            return Refused("unsupported_photo_type", "the photo must be a JPEG or PNG image", 415)
        detector = self.detector()
        if detector is None:
            # 409, not 503: the relay is working, it was configured without vision
            return Refused(
                "identity_unavailable",
                "face enrolment needs the face detector, "
                "which is turned off on this relay (RELAY_VISION_ENABLED)",
                409,
            )
        demuxer, media_type = sniffed
        settings = config.vision

        def work(encoder: Any) -> Enrolment | PhotoRefusal | Refused:
            image = decode_photo(photo, demuxer, config.identity_photo_max_pixels)
            if isinstance(image, Refused):
                return image
            return enrol_image(detector, encoder, image, settings)

        outcome = await self.worker.run(work)
        if isinstance(outcome, Refused):
            return outcome
        if isinstance(outcome, PhotoRefusal):
            return Refused(outcome.code, outcome.message)
        now = self.clock()
        self.faces_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{kind}-{subject_id}-{os.urandom(8).hex()}.face"
        path = self.faces_dir / name
        await self.worker.run(
            lambda _enc: _seal(path, self.key, outcome.descriptor, photo, media_type)
        )
        face_px = int(min(outcome.face.width, outcome.face.height))
        retention_until = now + config.identity_retention_days * DAY_S
        old = self._row(kind, subject_id)
        with transaction(self.conn):
            self.conn.execute(
                "DELETE FROM face_enrolments WHERE subject_kind = ? AND subject_id = ?",
                (kind, subject_id),
            )
            self.conn.execute(
                "INSERT INTO face_enrolments (subject_kind, subject_id, establishment_id, path,"
                " enrolled_at, enrolled_by, retention_until, face_px, sharpness, brightness)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    subject_id,
                    establishment_id,
                    name,
                    now,
                    actor,
                    retention_until,
                    face_px,
                    outcome.sharpness,
                    outcome.brightness,
                ),
            )
        if old is not None:
            self._unlink(old["path"])
        return Enrolled(
            kind,
            subject_id,
            now,
            actor,
            retention_until,
            face_px,
            outcome.sharpness,
            outcome.brightness,
        )

    # --- deleting ----------------------------------------------------------------------

    def _unlink(self, stored: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(stored).unlink()

    def forget(self, kind: SubjectKind, subject_id: int, *, actor: str, reason: str) -> bool:
        """Delete a person's descriptor and photo (the person's record is being deleted, or
        staff asked); True when there was one."""
        r = self._row(kind, subject_id)
        if r is None:
            return False
        with transaction(self.conn):
            cur = self.conn.execute("DELETE FROM face_enrolments WHERE id = ?", (r["id"],))
        if cur.rowcount != 1:
            return False  # another node's sweep (or staff) deleted it a moment ago
        self._unlink(r["path"])
        self.audit.append(
            "face_enrolment_deleted",
            {"kind": kind, "subject_id": subject_id, "reason": reason},
            establishment_id=r["establishment_id"],
            actor=actor,
        )
        return True

    def sweep(self, now: float | None = None) -> int:
        """Delete the enrolments past their retention; how many this run deleted. Run by the
        retention sweeper (its ``also``), so with many nodes only the duty's holder runs it."""
        now = self.clock() if now is None else now
        cur = self.conn.execute(
            "SELECT subject_kind, subject_id FROM face_enrolments WHERE retention_until <= ?",
            (now,),
        )
        return sum(
            self.forget(kind, subject_id, actor="relay", reason="retention")
            for kind, subject_id in cur.fetchall()
        )

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.worker.close)
