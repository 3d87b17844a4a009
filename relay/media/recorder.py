"""Call recording: both legs' encoded media, as received, in one live WebM sealed at rest.

What is recorded is decided once, when the call is created (``recording_decision``): social
calls, unless the establishment turned that off (``policy.record_social``); legal calls never,
whatever the settings say, and any other call type neither (a new type must be added here on
purpose). For a call that is not recorded nothing is tapped, buffered or written.

What of a call is recorded: each leg from its admission. While a leg is held by its check
before the call (``Call.held``, set by the policy engine: ``CallPolicy.held_for_check``) none
of its frames are written; the check is not part of the call, and the evidence staff need to
admit by hand is the identity gate's (its last frame and scores, audited). Once admitted, the
leg's audio is written from that moment and its video from its next keyframe (asked for at
once), both on the call's clock: a leg admitted late starts late in the file. In-call pauses
are recorded like the rest (evidence matters most then).

How. A packet tap on each leg's audio and video producer (it sees every packet, also while the
call is paused) reassembles frames without decoding them
(protocol/frames.py). Each frame gets a presentation time in milliseconds from its RTP timestamp,
anchored to its arrival time on a clock shared by all four streams, so the family and prison
streams line up; a stream that starts late, restarts with a new SSRC (a reconnect) or whose
timestamps drift from arrival time by more than ``recording_resync_s`` is re-anchored.

The container is WebM (Matroska for H.264 calls, whose NAL units are stored length-prefixed
with an avcC built from the first keyframe's SPS and PPS: the same bytes, repackaged), written here by a small EBML writer rather than through
PyAV's muxer: FFmpeg's interleaver holds every packet back until each of the four streams has
had one (a leg that has not joined yet would keep the whole recording in memory, and unwritten,
until the end), and opening PyAV streams opens an encoder per stream (about 8 MB a call). Here
the file is "live" WebM (a Segment of unknown size followed by self-contained Clusters), the
form browsers' MediaRecorder writes and ffprobe, VLC and PyAV read. Every ``recording_chunk_s``
the frames that have arrived (minus the last ``recording_hold_s``, so late frames of another
stream still go in order) become one Cluster, sealed as one encrypted chunk
(relay/records/sealed.py) and appended to the recordings storage (relay/records/storage.py: a
folder all nodes mount) and fsynced by a writer thread, chunk by chunk: a crash of the node
loses at most the chunk being filled (``recording_chunk_s`` plus ``recording_hold_s``) and what
is in storage stays playable, from any node. Every ``recording_heartbeat_s`` the recording's
index row is marked alive, so other nodes can tell a recording cut short by its node's death. Per packet, the event loop only
reassembles and appends to a list.

The file's Tracks header needs each video's picture size (from its first keyframe). It is
written once both legs' first keyframes arrived, or ``recording_start_wait_s`` after the first
frame with the sizes known by then (a placeholder for a leg not there yet: decoders use the
size in the bitstream). Until then frames wait in memory, not on disk.

Tracks, always four and in this order: 1 family video, 2 family audio, 3 prison video,
4 prison audio (named so in the file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiortc import clock

from protocol.codecs import annexb_to_avc, h264_config, vp8_size
from protocol.frames import EncodedFrame
from protocol.vocabulary import PARTY_ROLES
from protocol.webm import (
    CLOCK,
    H264,
    STREAMS,
    VIDEO_FORMATS,
    VP8,
    Frame,
    VideoFormat,
    webm_clusters,
    webm_header,
)
from relay import metrics
from relay.calls.call import Call
from relay.config import Config
from relay.media.forwarder import Producer
from relay.records.sealed import SealedWriter, load_key
from relay.records.storage import FolderStorage, Storage

log = logging.getLogger(__name__)

Audit = Callable[[int, str, dict[str, Any]], None]

RECORDED_CALL_TYPES = frozenset({"social"})
RECENT_FRAMES = 64  # per stream: recognises a frame that arrives twice


def recording_decision(call: Call, enabled: bool = True) -> tuple[bool, str]:
    """Whether this call is recorded, and why (for the log and the audit trail)."""
    if call.is_legal:
        return False, "legal call: never recorded"
    if not enabled:
        return False, "recording is switched off on this relay (RELAY_RECORDING_ENABLED)"
    if call.call_type not in RECORDED_CALL_TYPES:
        return False, f"calls of type {call.call_type!r} are not recorded"
    if not getattr(call.policy_settings, "record_social", True):
        return False, "this establishment does not record social calls"
    return True, "social call"


# --- one call's recording --------------------------------------------------------------------


@dataclass
class _Stream:
    number: int
    role: str
    kind: str
    clock: int
    last_ext: int | None = None
    anchor_ext: int = 0
    anchor_pts: int = 0
    last_pts: int = -1
    written_pts: int = -1
    """The newest pts already handed to the writer: nothing older can go in any more."""
    waiting_keyframe: bool = True
    frames: int = 0
    skipped: int = 0
    resyncs: int = 0
    late: int = 0
    held: int = 0
    """Frames not recorded because the leg was held by its check before the call."""
    holding: bool = False
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_FRAMES))

    def restart(self) -> None:
        """A new source (first producer, a reconnect, a new SSRC): anchor it afresh."""
        self.last_ext = None
        self.recent.clear()
        self.waiting_keyframe = self.kind == "video"


class _Tap:
    """One recorded stream's subscription to its producer's frames (relay/frames.FrameHub)."""

    __slots__ = ("recording", "stream", "producer")

    def __init__(self, recording: CallRecording, stream: _Stream, producer: Producer | None = None
                 ) -> None:
        self.recording = recording
        self.stream = stream
        self.producer = producer

    def on_restart(self) -> None:
        """The sender started a new stream (it reconnected): re-anchor its timestamps."""
        self.stream.restart()

    def on_frame(self, frame: EncodedFrame) -> None:
        if self.recording.stopping:
            return
        stream = self.stream
        try:
            if stream.role in self.recording.call.held:  # not admitted yet: not part of the call
                stream.held += 1
                stream.holding = True
                return
            if stream.holding:  # admitted: start afresh at a keyframe, anchored to now
                stream.holding = False
                stream.restart()
            if not self.recording.add_frame(self.stream, frame) and self.producer is not None:
                # waiting for a keyframe to start this stream: ask (throttled per producer)
                self.producer.request_keyframe("recording")
        except Exception as exc:  # never let the recorder break the call's media path
            self.recording.tap_failed(exc)


class _FileWriter:
    """Thread side: the sealed file. Every method runs in the recorder's executor."""

    def __init__(self, storage: Storage, name: str, key: bytes, fsync: bool,
                 avc_tracks: frozenset[int] = frozenset()) -> None:
        self.sealed = SealedWriter(storage.create(name), key, fsync=fsync)
        self.avc_tracks = avc_tracks

    def write(self, head: bytes, frames: list[Frame], final: bool) -> int:
        if self.avc_tracks:  # H.264 with a CodecPrivate: length-prefixed NAL units
            frames = [
                (pts, track, key, annexb_to_avc(data) if track in self.avc_tracks else data)
                for pts, track, key, data in frames
            ]
        plaintext = head + webm_clusters(frames)
        if not plaintext and not final:
            return 0
        written = self.sealed.seal(plaintext, final=final)
        metrics.RECORDING_BYTES.inc(written)
        return written

    def abandon(self) -> None:
        self.sealed.close()


class CallRecording:
    """Records one call from its first frame to its end."""

    def __init__(self, recorder: Recorder, call: Call, policy: Any) -> None:
        self.recorder = recorder
        self.config = recorder.config
        self.call = call
        self.streams = {
            (role, kind): _Stream(n, role, kind, CLOCK[kind])
            for n, (role, kind) in enumerate(STREAMS, start=1)
        }
        self.stopping = False
        self.failed = False
        self.recording_id: int | None = None
        self.path: str | None = None
        """The recording's key in the storage once its file exists."""
        self._heartbeat_at = 0.0
        self.started_at: float | None = None
        self.sizes: dict[str, tuple[int, int]] = {}
        self.video: VideoFormat | None = None
        self.codec_private: dict[str, bytes] = {}
        self.keyframe_seen: set[str] = set()
        self.frames_written = 0
        self.bytes_written = 0
        self.flush_seconds = 0.0
        self.flushes = 0
        self._pending: list[Frame] = []
        self._origin_ms: int | None = None
        self._first_frame_at: float | None = None
        self._writer: _FileWriter | None = None
        self._detach: list[Callable[[], None]] = []
        self._stop = asyncio.Event()
        self._resync_ms = int(self.config.recording_resync_s * 1000)
        self.done = asyncio.ensure_future(self._run(policy))
        call.add_tap(self._on_producer)

    # --- event loop side: per packet / frame ---------------------------------------------

    def _on_producer(self, role: str, kind: str, producer: Producer) -> None:
        stream = self.streams.get((role, kind))
        if stream is None or self.stopping:
            return
        if kind == "audio":
            mime = "audio/opus"
        else:
            mime = (self.recorder.video_mime(self.call) or "").lower()
            fmt = VIDEO_FORMATS.get(mime)
            if fmt is None or (self.video is not None and fmt is not self.video):
                # not silently: the call goes on, the recording holds its audio only
                log.error("call %s: recording %s video is not supported; audio only",
                          self.call.id, mime or "unknown", extra={"call_id": self.call.id})
                self.recorder.audit(self.call.id, "recording_problem",
                                    {"problem": f"video codec {mime or 'unknown'} not recorded"})
                return
            self.video = fmt
        tap = _Tap(self, stream, producer)
        self._detach.append(producer.frames(mime).subscribe(tap.on_frame, tap.on_restart))

    def add_frame(self, s: _Stream, frame: EncodedFrame) -> bool:
        """Time-stamp and queue one frame; False when it was skipped (no keyframe yet)."""
        now = frame.arrival_ms
        if self._origin_ms is None:
            self._origin_ms = now
            self._first_frame_at = time.monotonic()
            self.started_at = time.time()
        if s.waiting_keyframe:
            if not frame.keyframe:
                s.skipped += 1
                return False
            s.waiting_keyframe = False
            if s.kind == "video" and s.role not in self.keyframe_seen:
                self._first_keyframe(s.role, frame.data)
        expected = now - self._origin_ms
        if s.last_ext is None:
            ext = frame.timestamp
            s.anchor_ext, s.anchor_pts = ext, max(expected, s.last_pts + 1)
        else:
            delta = ((frame.timestamp - s.last_ext + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            ext = s.last_ext + delta
        pts = s.anchor_pts + (ext - s.anchor_ext) * 1000 // s.clock
        if s.last_ext is None or ext > s.last_ext:  # in order
            if abs(pts - expected) > self._resync_ms:
                s.resyncs += 1
                s.anchor_ext, s.anchor_pts = ext, max(expected, s.last_pts + 1)
                pts = s.anchor_pts
            if pts <= s.last_pts:
                pts = s.last_pts + 1
            s.last_ext, s.last_pts = ext, pts
        elif ext in s.recent or pts <= s.written_pts:
            # a duplicate (a retransmission of an audio packet), or later than what is
            # already on disk for this stream: it cannot go in without breaking the order
            s.late += 1
            return True
        # a frame that arrived out of order keeps its own time: the flush sorts it into place
        s.recent.append(ext)
        s.frames += 1
        self._pending.append((pts, s.number, frame.keyframe, frame.data))
        return True

    def tap_failed(self, exc: Exception) -> None:
        """A bug on the per-packet path: stop recording (keep what was written), loudly."""
        if self.stopping:
            return
        self.stopping = True
        self.failed = True
        metrics.RECORDING_ERRORS.labels(stage="packet_path").inc()
        log.error("call %s: recording stopped by an error on the packet path", self.call.id,
                  exc_info=exc, extra={"call_id": self.call.id})
        self.recorder.audit(self.call.id, "recording_failed",
                            {"recording_id": self.recording_id, "error": repr(exc)[:200]})
        self.stop()

    def _first_keyframe(self, role: str, data: bytes) -> None:
        """What the header needs from a leg's first keyframe: picture size, H.264 parameters."""
        self.keyframe_seen.add(role)
        size = None
        if self.video is H264:
            config = h264_config(data)
            if config is not None:
                self.codec_private[role], size = config
        else:
            size = vp8_size(data)
        if size is not None:
            self.sizes[role] = size

    # --- the flush loop --------------------------------------------------------------------

    async def _run(self, policy: Any) -> None:
        ended = asyncio.ensure_future(policy.ended.wait())
        ended.add_done_callback(lambda _f: self._stop.set())
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.config.recording_chunk_s)
                if self._stop.is_set():
                    break
                await self._flush(final=False)
            self.stopping = True
            for detach in self._detach:
                detach()
            self._detach.clear()
            await self._flush(final=True)
        except Exception as exc:
            self._fail(exc)
        finally:
            ended.cancel()
            self.stopping = True
            self.recorder.forget(self)

    def stop(self) -> None:
        self._stop.set()

    def _ready_to_start(self, final: bool) -> bool:
        if self._first_frame_at is None or not self._pending:
            return False
        if final or len(self.keyframe_seen) == 2:
            return True
        return time.monotonic() - self._first_frame_at >= self.config.recording_start_wait_s

    async def _flush(self, final: bool) -> None:
        loop = asyncio.get_running_loop()
        head = b""
        if self._writer is None:
            if not self._ready_to_start(final):
                return
            head = await self._start()
        pending = self._pending
        pending.sort(key=lambda f: f[0])
        if final or self._origin_ms is None:
            batch, self._pending = pending, []
        else:
            cut = self._now_pts() - int(self.config.recording_hold_s * 1000)
            n = _count_upto(pending, cut)
            batch, self._pending = pending[:n], pending[n:]
        by_number = {st.number: st for st in self.streams.values()}
        for pts, number, _key, _data in batch:  # sorted: the last one per stream is the newest
            by_number[number].written_pts = pts
        started = time.perf_counter()
        assert self._writer is not None
        written = await loop.run_in_executor(
            self.recorder.executor, self._writer.write, head, batch, final
        )
        self.flush_seconds += time.perf_counter() - started
        self.flushes += 1
        self.frames_written += len(batch)
        self.bytes_written += written
        if final:
            self._finished()
        elif self.recording_id is not None:
            now = time.time()
            if now - self._heartbeat_at >= self.config.recording_heartbeat_s:
                self._heartbeat_at = now
                self.recorder.index.heartbeat(self.recording_id, now)

    def _now_pts(self) -> int:
        assert self._origin_ms is not None
        return clock.current_ms() - self._origin_ms

    async def _start(self) -> bytes:
        """Create the file and its index row; returns the WebM header for the first chunk."""
        assert self.started_at is not None
        call = self.call
        video = self.video or VP8
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.started_at))
        name = f"{call.establishment_id}/booking-{call.id}-{stamp}-{secrets.token_hex(4)}{video.suffix}"
        self.path = name
        private = dict(self.codec_private)
        if video is H264 and len(private) == 1:
            # the other leg's parameters stand in; its own SPS/PPS travel in its keyframes
            only = next(iter(private.values()))
            private = {role: private.get(role, only) for role in PARTY_ROLES}
        header = webm_header(self.sizes, f"booking {call.id}", self.started_at, video, private)
        avc_tracks = frozenset(
            st.number for (role, kind), st in self.streams.items() if kind == "video" and role in private
        )
        loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(
            self.recorder.executor,
            _FileWriter, self.recorder.storage, name, self.recorder.key,
            self.config.recording_fsync, avc_tracks,
        )
        days = getattr(call.policy_settings, "retention_days", None)
        if days is None:
            days = self.config.retention_default_days
        self.recording_id = self.recorder.index.add(
            booking_id=call.id,
            establishment_id=call.establishment_id,
            path=name,
            media_type=video.media_type,
            started_at=self.started_at,
            retention_until=self.started_at + float(days) * 86400,
            node=self.recorder.node,
        )
        self._heartbeat_at = time.time()
        self.recorder.audit(call.id, "recording_started", {"recording_id": self.recording_id})
        log.info("call %s: recording to %s", call.id, name, extra={"call_id": call.id})
        return header

    def _finished(self) -> None:
        if self._writer is None or self.recording_id is None:
            return
        sealed = self._writer.sealed
        self.recorder.index.finish(
            self.recording_id, ended_at=time.time(), size=sealed.size,
            sha256=sealed.sha256.hexdigest(), status="failed" if self.failed else "complete",
        )
        self.recorder.audit(self.call.id, "recording_finished", {
            "recording_id": self.recording_id, "size": sealed.size,
            "sha256": sealed.sha256.hexdigest(), "frames": self.frames_written,
        })
        log.info("call %s: recording finished (%d bytes)", self.call.id, sealed.size,
                 extra={"call_id": self.call.id})

    def _fail(self, exc: BaseException) -> None:
        self.failed = True
        metrics.RECORDING_ERRORS.labels(stage="write").inc()
        log.error("call %s: recording failed: %s", self.call.id, exc, exc_info=exc,
                  extra={"call_id": self.call.id})
        self.recorder.audit(self.call.id, "recording_failed",
                            {"recording_id": self.recording_id, "error": str(exc)[:200]})
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.abandon()
            if self.recording_id is not None:
                sealed = self._writer.sealed
                with contextlib.suppress(Exception):
                    self.recorder.index.finish(
                        self.recording_id, ended_at=time.time(), size=sealed.size,
                        sha256=sealed.sha256.hexdigest(), status="failed",
                    )
        self._pending.clear()

    def describe(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "frames": {f"{s.role}_{s.kind}": s.frames for s in self.streams.values()},
            "skipped_before_keyframe": {f"{s.role}_{s.kind}": s.skipped for s in self.streams.values()},
            "resyncs": {f"{s.role}_{s.kind}": s.resyncs for s in self.streams.values()},
            "late_or_duplicate": {f"{s.role}_{s.kind}": s.late for s in self.streams.values()},
            "held_not_recorded": {f"{s.role}_{s.kind}": s.held for s in self.streams.values()},
            "flushes": self.flushes,
            "flush_seconds": self.flush_seconds,
            "bytes": self.bytes_written,
        }


def _count_upto(frames: list[Frame], cut: int) -> int:
    lo, hi = 0, len(frames)
    while lo < hi:
        mid = (lo + hi) // 2
        if frames[mid][0] <= cut:
            lo = mid + 1
        else:
            hi = mid
    return lo


# --- the process-wide recorder -----------------------------------------------------------


class Recorder:
    """A call hook (``registry.hooks.append(recorder)``) that records the calls it should.

    ``index`` is a relay.records.recordings.RecordingIndex; ``audit`` the app's
    ``(booking_id, kind, detail)`` audit callable; ``video_mime(call)`` the call's negotiated
    video codec (the registry's ``LiveCall.video_mime``).
    """

    def __init__(
        self,
        config: Config,
        index: Any,
        audit: Audit | None = None,
        video_mime: Callable[[Call], str | None] | None = None,
        key: bytes | None = None,
        storage: Storage | None = None,
        node: str | None = None,
    ) -> None:
        self.config = config
        self.storage: Storage = storage or FolderStorage(Path(config.recordings_dir))
        self.node = node
        """Written into each recording's index row: which node's heartbeat keeps it alive."""
        self.index = index
        self._audit = audit
        self._video_mime = video_mime
        self.key = key if key is not None else load_key(config)
        self.executor = ThreadPoolExecutor(
            max_workers=max(1, config.recording_threads), thread_name_prefix="recorder"
        )
        self.active: dict[int, CallRecording] = {}
        if isinstance(self.storage, FolderStorage):
            self.storage.prepare()

    @classmethod
    def hook(cls, config: Config, index: Any, audit: Audit | None = None, **kwargs: Any) -> Recorder:
        return cls(config, index, audit, **kwargs)

    def __call__(self, call: Call, policy: Any) -> None:
        record, why = recording_decision(call, self.config.recording_enabled)
        if not record:
            log.info("call %s not recorded: %s", call.id, why, extra={"call_id": call.id})
            self.audit(call.id, "recording_off", {"reason": why})
            return
        if call.id in self.active:
            self.active[call.id].stop()
        self.active[call.id] = CallRecording(self, call, policy)
        metrics.RECORDINGS_ACTIVE.set(len(self.active))

    def video_mime(self, call: Call) -> str | None:
        return self._video_mime(call) if self._video_mime is not None else None

    def audit(self, booking_id: int, kind: str, detail: dict[str, Any]) -> None:
        if self._audit is None:
            return
        try:
            self._audit(booking_id, kind, detail)
        except Exception:
            log.exception("audit of %s for booking %s failed", kind, booking_id)

    def forget(self, recording: CallRecording) -> None:
        if self.active.get(recording.call.id) is recording:
            del self.active[recording.call.id]
            metrics.RECORDINGS_ACTIVE.set(len(self.active))

    def recording_now(self) -> set[str]:
        """Storage keys being written here: the sweeper and recovery leave them alone."""
        return {r.path for r in self.active.values() if r.path is not None}

    async def close(self) -> None:
        """Finish every recording (the relay is shutting down), then stop the writers."""
        pending = [r.done for r in self.active.values()]
        for recording in list(self.active.values()):
            recording.stop()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self.executor.shutdown(wait=True)
