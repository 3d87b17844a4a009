"""Load legs that cost little: the handshake through aiortc, the media by hand.

A leg joins like any client (signalling, ICE and DTLS through aiortc, so the server sees a
real peer), offering tracks that never produce a frame. Once connected it takes the leg's
media socket and DTLS-keyed SRTP sessions (``protocol.aiortc_glue.RawMedia``) and from then on:

* sends the clip pre-packetised (aiortc's VP8 payloader, run once per process): per packet a
  12-byte header plus MID and abs-send-time extensions, packed and SRTP-protected in one C call
  (the relay's own ``protocol._rtpfast.Sender``), ``sendto``. One pacer
  task per process serves every leg; there is no per-leg thread or timer.
* answers a PLI/FIR by restarting the clip at its latest keyframe at or before the current
  frame (the clip is a valid GOP from there, so the far side decodes it; the content jumps
  back by at most one keyframe interval), and a NACK by resending the protected packet it
  sent (SRTP accepts it where the first copy was lost).
* sends RTCP once a second per leg: a receiver report for each stream it receives and a REMB
  (so the server's NACK and REMB handling run), and a NACK when a received stream has a gap.
* counts what arrives per stream (packets, payload bytes, frames by marker bit, frame delay
  against the RTP clock) straight from the socket, in C (``RawMedia.listen``): a header read
  (in clear in SRTP), and SRTP authentication and decryption of one packet in
  ``RawMedia.RX_VERIFY_EVERY``; Python runs only for RTCP and a gap's NACK.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Sequence
from typing import Any

from aiortc.mediastreams import MediaStreamTrack

from protocol.aiortc_glue import RawMedia, SendContext, media_started, send_context, vp8_packetize

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000
PACER_TICK_S = 0.005
"""The pacer's shortest sleep: frames due within it go out together (lateness under 5 ms)."""
RTCP_INTERVAL_S = 1.0
REMB_BPS = 2_000_000
"""What each leg's REMB says it can receive (the clip is about 1 Mbit/s)."""
HISTORY = 512
"""Sent packets kept per stream for NACKs (about half a second of video)."""
MAX_NACK_GAP = 64
RESEND_MIN_INTERVAL_S = 0.1
"""A packet is resent at most this often however often it is NACKed (as libwebrtc holds a
retransmission back for about an RTT): a receiver that re-NACKs its whole missing list on
each new gap must not turn a loss burst into a retransmission storm."""
START_TIMEOUT_S = 20.0

_RTCP_HDR = struct.Struct("!BBH")


class SilentTrack(MediaStreamTrack):
    """Offered so the SDP has a sending section; never yields: the lean leg sends instead."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.sent = 0  # the lean leg's frame count is reported instead

    async def recv(self) -> Any:
        await asyncio.get_running_loop().create_future()


class VideoPlan:
    """The clip as RTP payloads, once per process: (keyframe, payloads) per frame."""

    def __init__(self, frames: Sequence[Any]) -> None:
        self.frames = [
            (f.keyframe, vp8_packetize(f.data, i % 0x8000)) for i, f in enumerate(frames)
        ]
        keys = [i for i, f in enumerate(frames) if f.keyframe] or [0]
        # the latest keyframe at or before each frame (the clip starts with one)
        self.key_before = []
        last = keys[0]
        for i in range(len(frames)):
            if frames[i].keyframe:
                last = i
            self.key_before.append(last)


class _Stream:
    """One outgoing stream of a leg."""

    def __init__(self, ctx: SendContext, clock: int, rate: float) -> None:
        self.ctx = ctx
        self.seq = int.from_bytes(os.urandom(2), "big")
        self.ts = int.from_bytes(os.urandom(4), "big")
        self.step = clock // int(rate)
        self.period = 1.0 / rate
        self.frames = 0
        self.packets = 0
        self.history: list[tuple[int, bytes] | None] = [None] * HISTORY
        self.resent_at = [0.0] * HISTORY
        # the header (MID, abs-send-time) is packed and the packet protected in C; the leg
        # keeps what it sent itself, to resend byte for byte
        mid = b""
        if ctx.mid and ctx.mid_id:
            raw = ctx.mid.encode()
            mid = bytes([(ctx.mid_id << 4) | (len(raw) - 1)]) + raw
        self.fast = RawMedia.sender(ctx.ssrc, ctx.payload_type, mid, ctx.abs_send_time_id or 0)

    def protect(self, payload: bytes, marker: bool, now: float) -> bytes | None:
        """The next packet of this stream, protected (None: SRTP refused it)."""
        ntp = int((now + 2208988800) * 4294967296.0)  # abs-send-time is its 6.18 seconds
        data = self.fast.protect(payload, self.seq, self.ts, marker, ntp, None)
        self.seq = (self.seq + 1) & 0xFFFF
        self.packets += 1
        return data


class LeanMedia:
    """One leg's media after the handshake (see the module docstring)."""

    def __init__(self, pc: Any, counters: Any, plan: VideoPlan, audio: Sequence[bytes]) -> None:
        self.pc = pc
        self.counters = counters
        self.plan = plan
        self.audio_frames = audio
        self.raw: RawMedia | None = None
        self.video: _Stream | None = None
        self.audio: _Stream | None = None
        self.pt_kind: dict[int, str] = {}
        self.reported: dict[int, tuple[int, int]] = {}
        """Per received SSRC: (expected, received) at the previous receiver report."""
        self.position = 0  # the clip frame sent next
        self.audio_position = 0
        self.next_video = 0.0
        self.next_audio = 0.0
        self.keyframe_asked = False
        self.plis = 0
        self.nacks_answered = 0
        self.nacks_sent = 0
        self.rtcp_ssrc = int.from_bytes(os.urandom(4), "big")

    async def start(self) -> None:
        """Wait for the handshake and aiortc's senders to start, then take the media over."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self.pc.connectionState == "connected" and media_started(self.pc)):
            if time.monotonic() > deadline or self.pc.connectionState in ("failed", "closed"):
                raise ConnectionError(f"leg not connected ({self.pc.connectionState})")
            await asyncio.sleep(0.02)
        for t in self.pc.getTransceivers():
            ctx = send_context(t)
            self.pt_kind.update(ctx.receive_payload_types)
            if t.kind == "video":
                self.video = _Stream(ctx, VIDEO_CLOCK, 30)
            else:
                self.audio = _Stream(ctx, AUDIO_CLOCK, 50)
        self.raw = RawMedia(self.pc)
        for stream in (self.video, self.audio):
            if stream is not None:
                self.raw.bind_sender(stream.fast)
        self.raw.listen(
            self.pt_kind,
            MAX_NACK_GAP,
            VIDEO_CLOCK,
            self.counters.frame_delays,
            self._on_rtcp,
            self._send_nack,
        )
        now = time.monotonic()
        self.next_video = self.next_audio = now

    # --- sending ------------------------------------------------------------------------

    def send_due(self, now: float, wall: float, lateness: list[float]) -> None:
        raw = self.raw
        if raw is None:
            return
        video = self.video
        if video is not None:
            while self.next_video <= now:
                lateness.append(now - self.next_video)
                self.next_video += video.period
                self._send_video_frame(raw, video, wall)
        audio = self.audio
        if audio is not None:
            frames = self.audio_frames
            while self.next_audio <= now:
                self.next_audio += audio.period
                payload = frames[self.audio_position % len(frames)]
                self.audio_position += 1
                self._send(raw, audio, payload, self.audio_position == 1, wall)
                audio.ts = (audio.ts + audio.step) & 0xFFFFFFFF
                audio.frames += 1

    def _send_video_frame(self, raw: RawMedia, video: _Stream, wall: float) -> None:
        plan = self.plan
        n = len(plan.frames)
        if self.keyframe_asked:
            self.keyframe_asked = False
            self.position = plan.key_before[self.position % n]
        _, payloads = plan.frames[self.position % n]
        self.position += 1
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            self._send(raw, video, payload, i == last, wall)
        video.ts = (video.ts + video.step) & 0xFFFFFFFF
        video.frames += 1

    def _send(
        self, raw: RawMedia, stream: _Stream, payload: bytes, marker: bool, wall: float
    ) -> None:
        seq = stream.seq
        sent = stream.protect(payload, marker, wall)
        if sent is None:
            raw.send_errors += 1
            return
        raw.resend(sent)
        # kept as sent: a NACK is answered with the same datagram
        stream.history[seq % HISTORY] = (seq, sent)
        stream.resent_at[seq % HISTORY] = 0.0

    # --- receiving ----------------------------------------------------------------------

    def _on_rtcp(self, data: bytes) -> None:
        pos = 0
        n = len(data)
        while pos + 4 <= n:
            b0, pt, words = _RTCP_HDR.unpack_from(data, pos)
            end = pos + 4 * (words + 1)
            fmt = b0 & 0x1F
            if pt == 206 and fmt in (1, 4):  # PLI, FIR
                self.keyframe_asked = True
                self.plis += 1
            elif pt == 205 and fmt == 1 and end >= pos + 16:  # NACK
                (media_ssrc,) = struct.unpack_from("!I", data, pos + 8)
                for i in range(pos + 12, end - 3, 4):
                    pid, blp = struct.unpack_from("!HH", data, i)
                    self._resend(media_ssrc, pid)
                    for bit in range(16):
                        if blp >> bit & 1:
                            self._resend(media_ssrc, (pid + bit + 1) & 0xFFFF)
            pos = end

    def _resend(self, ssrc: int, seq: int) -> None:
        for stream in (self.video, self.audio):
            if stream is not None and stream.ctx.ssrc == ssrc:
                slot = seq % HISTORY
                entry = stream.history[slot]
                now = time.monotonic()
                if (
                    entry is not None
                    and entry[0] == seq
                    and self.raw is not None
                    and now - stream.resent_at[slot] >= RESEND_MIN_INTERVAL_S
                ):
                    stream.resent_at[slot] = now
                    self.raw.resend(entry[1])
                    self.nacks_answered += 1

    # --- RTCP ---------------------------------------------------------------------------

    def _send_nack(self, media_ssrc: int, last_seq: int, gap: int) -> None:
        if self.raw is None:
            return
        missing = [(last_seq + i) & 0xFFFF for i in range(1, gap)]
        fci = b""
        while missing:
            pid = missing.pop(0)
            blp = 0
            while missing and 0 < ((missing[0] - pid) & 0xFFFF) <= 16:
                blp |= 1 << (((missing.pop(0) - pid) & 0xFFFF) - 1)
            fci += struct.pack("!HH", pid, blp)
        body = struct.pack("!II", self.rtcp_ssrc, media_ssrc) + fci
        self.raw.send_rtcp(_RTCP_HDR.pack(0x81, 205, len(body) // 4) + body)
        self.nacks_sent += 1

    def send_reports(self) -> None:
        """A receiver report for every stream received, then a REMB, in one compound packet."""
        raw = self.raw
        streams = raw.streams()[:31] if raw is not None else []
        if raw is None or not streams:
            return
        blocks = b""
        for ssrc, base, max_seq, received in streams:
            expected = ((max_seq - base) & 0xFFFF) + 1
            expected_prior, received_prior = self.reported.get(ssrc, (0, 0))
            exp_i = expected - expected_prior
            rec_i = received - received_prior
            self.reported[ssrc] = (expected, received)
            lost_i = max(0, exp_i - rec_i)
            fraction = (lost_i << 8) // exp_i if exp_i > 0 else 0
            lost = max(0, min(0x7FFFFF, expected - received))
            blocks += struct.pack("!IB", ssrc, min(255, fraction)) + lost.to_bytes(3, "big")
            blocks += struct.pack("!IIII", max_seq, 0, 0, 0)
        count = len(blocks) // 24
        rr = (
            _RTCP_HDR.pack(0x80 | count, 201, 1 + 6 * count)
            + struct.pack("!I", self.rtcp_ssrc)
            + blocks
        )
        ssrcs = [stream[0] for stream in streams]
        exp, mantissa = 0, REMB_BPS
        while mantissa > 0x3FFFF:
            mantissa >>= 1
            exp += 1
        fci = b"REMB" + bytes([len(ssrcs)]) + ((exp << 18) | mantissa).to_bytes(3, "big")
        fci += b"".join(struct.pack("!I", x) for x in ssrcs)
        body = struct.pack("!II", self.rtcp_ssrc, 0) + fci
        remb = _RTCP_HDR.pack(0x8F, 206, len(body) // 4) + body
        raw.send_rtcp(rr + remb)

    # --- reporting ----------------------------------------------------------------------

    def received(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Packets and payload bytes received per kind, and video frames."""
        if self.raw is None:
            return {"video": 0, "audio": 0}, {"video": 0, "audio": 0}, 0
        return self.raw.counts()

    def sent(self) -> tuple[dict[str, int], dict[str, int]]:
        frames = {"video": 0, "audio": 0}
        packets = {"video": 0, "audio": 0}
        for kind, stream in (("video", self.video), ("audio", self.audio)):
            if stream is not None:
                frames[kind] = stream.frames
                packets[kind] = stream.packets
        return frames, packets


class Pacer:
    """One task for every leg of the process: send what is due, RTCP once a second."""

    def __init__(self, lateness: list[float]) -> None:
        self.legs: list[LeanMedia] = []
        self.lateness = lateness
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        next_rtcp = time.monotonic() + RTCP_INTERVAL_S
        while True:
            now = time.monotonic()
            wall = time.time()
            for leg in self.legs:
                leg.send_due(now, wall, self.lateness)
            if now >= next_rtcp:
                next_rtcp += RTCP_INTERVAL_S
                for leg in self.legs:
                    leg.send_reports()
            # sleep until something is due, but no less than a tick: with few legs the loop
            # wakes at their frame rate, with many it batches what falls due within a tick
            due = min((min(leg.next_video, leg.next_audio) for leg in self.legs), default=next_rtcp)
            await asyncio.sleep(max(PACER_TICK_S, min(due, next_rtcp) - time.monotonic()))
