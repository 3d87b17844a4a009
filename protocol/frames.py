"""RTP packets back into whole encoded frames, without decoding them.

Used where whole frames are needed: the vision sampler (often keyframes only), the recorder,
and clients that check what arrived bit for bit. Tolerates reordering and retransmissions
within a small window; a frame missing a packet is dropped, never emitted damaged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc.rtp import RtpPacket

from protocol.aiortc_glue import depayload
from protocol.codecs import keyframe_start, vp8_frame_start

MAX_PENDING_FRAMES = 32


@dataclass
class EncodedFrame:
    data: bytes
    timestamp: int
    keyframe: bool
    arrival_ms: int


@dataclass
class _Pending:
    packets: dict[int, bytes] = field(default_factory=dict)
    first: int | None = None
    last: int | None = None
    keyframe: bool = False
    arrival_ms: int = 0


FrameSink = Callable[[EncodedFrame], None]


class FrameAssembler:
    def __init__(self, mime: str, on_frame: FrameSink, keyframes_only: bool = False) -> None:
        self.mime = mime.lower()
        self.on_frame = on_frame
        self.keyframes_only = keyframes_only
        self.frames_emitted = 0
        self.frames_dropped = 0
        self._audio = self.mime.startswith("audio/")
        self._vp8 = self.mime == "video/vp8"
        self._pending: dict[int, _Pending] = {}
        self._done: dict[int, None] = {}  # insertion-ordered: oldest first
        self._last_marker_seq: int | None = None

    def add(self, packet: RtpPacket, arrival_ms: int = 0) -> None:
        if self._audio:
            self.frames_emitted += 1
            self.on_frame(EncodedFrame(packet.payload, packet.timestamp, True, arrival_ms))
            return
        ts = packet.timestamp
        if ts in self._done:
            return
        pending = self._pending.get(ts)
        if pending is None:
            if len(self._pending) >= MAX_PENDING_FRAMES:
                oldest = next(iter(self._pending))
                del self._pending[oldest]
                self.frames_dropped += 1
            pending = self._pending[ts] = _Pending(arrival_ms=arrival_ms)
        seq = packet.sequence_number
        payload = packet.payload
        if self._vp8:
            starts = vp8_frame_start(payload)
        else:  # H.264 marks only the end of an access unit: the packet after a marker starts one
            starts = seq == _next(self._last_marker_seq) or (
                self._last_marker_seq is None and keyframe_start(self.mime, payload))
        if starts and (pending.first is None or ((pending.first - seq) & 0xFFFF) < 0x8000):
            # the earliest start wins: an H.264 access unit may begin with SPS/PPS and then
            # an IDR fragment, and both look like the start of a keyframe
            pending.first = seq
            pending.keyframe = keyframe_start(self.mime, payload)
            if self.keyframes_only and not pending.keyframe:
                self._finish(ts)
                return
        if packet.marker:
            pending.last = seq
            self._last_marker_seq = seq
        pending.packets[seq] = payload
        self._try_emit(ts, pending)

    def _try_emit(self, ts: int, pending: _Pending) -> None:
        if pending.first is None or pending.last is None:
            return
        count = ((pending.last - pending.first) & 0xFFFF) + 1
        if len(pending.packets) < count:
            return
        parts = []
        seq = pending.first
        for _ in range(count):
            part = pending.packets.get(seq)
            if part is None:
                return
            parts.append(depayload(self.mime, part))
            seq = (seq + 1) & 0xFFFF
        self._finish(ts)
        self.frames_emitted += 1
        self.on_frame(EncodedFrame(b"".join(parts), ts, pending.keyframe, pending.arrival_ms))

    def _finish(self, ts: int) -> None:
        self._pending.pop(ts, None)
        self._done[ts] = None
        if len(self._done) > 4 * MAX_PENDING_FRAMES:
            del self._done[next(iter(self._done))]


def _next(seq: int | None) -> int | None:
    return None if seq is None else (seq + 1) & 0xFFFF


class FrameHub:
    """One reassembly per incoming stream, shared by everyone who needs whole frames.

    The recorder and the vision sampler both want the frames of the same video stream; each
    used to depayload and reassemble every packet itself. A hub sits on the producer as one
    packet tap, starts a fresh assembly when the sender's SSRC changes (it reconnected) and
    tells subscribers so. When every subscriber wants keyframes only, delta frames are not
    assembled at all.
    """

    def __init__(self, mime: str) -> None:
        self.mime = mime
        self._subscribers: list[tuple[FrameSink, Callable[[], None] | None, bool]] = []
        self._assembler: FrameAssembler | None = None
        self._ssrc: int | None = None
        self.errors = 0

    def subscribe(self, on_frame: FrameSink, on_restart: Callable[[], None] | None = None,
                  keyframes_only: bool = False) -> Callable[[], None]:
        entry = (on_frame, on_restart, keyframes_only)
        self._subscribers.append(entry)
        self._retune()

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)
                self._retune()

        return unsubscribe

    def _retune(self) -> None:
        if self._assembler is not None:
            self._assembler.keyframes_only = self._keyframes_only()

    def _keyframes_only(self) -> bool:
        return bool(self._subscribers) and all(k for _, _, k in self._subscribers)

    def tap(self, packet: RtpPacket, arrival_ms: int) -> None:
        if not self._subscribers:
            return
        try:
            if packet.ssrc != self._ssrc or self._assembler is None:
                self._ssrc = packet.ssrc
                self._assembler = FrameAssembler(self.mime, self._emit, self._keyframes_only())
                for _, on_restart, _ in list(self._subscribers):
                    if on_restart is not None:
                        on_restart()
            self._assembler.add(packet, arrival_ms)
        except Exception:  # a bad packet must never stop forwarding: start over instead
            self.errors += 1
            self._assembler = None

    def _emit(self, frame: EncodedFrame) -> None:
        for on_frame, _, keyframes_only in list(self._subscribers):
            if frame.keyframe or not keyframes_only:
                on_frame(frame)
