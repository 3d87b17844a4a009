"""Encoded media forwarding: Producers (what a leg sends) feed Consumers (what a viewer gets).

Names follow mediasoup. A Producer wraps one incoming RTP stream of a leg; each Consumer
rewrites that stream onto one outgoing sender of another leg or watcher: its own SSRC, payload
type, and sequence numbers and timestamps shifted by offsets. Offsets (not counters) keep the
sender's gaps visible, so a viewer's NACK for a packet the relay never got still maps to the
right packet once the relay has recovered it from the sender.

When a consumer starts, resumes after a pause or its source changes (the sender reconnected),
its offsets are re-anchored so the viewer sees one continuous stream, and video is held back
until a keyframe begins; a keyframe is requested upstream, throttled per producer.
Nothing here decodes or encodes.

The packet path is lean (issue 19): a packet arrives as bytes plus the few header fields the
relay needs (``protocol.aiortc_glue.RtpView``), each consumer rewrites SSRC, payload type,
sequence number and timestamp into a new header and sends; an aiortc ``RtpPacket`` is built
only when a tap (recorder, vision) is attached. Counters are ``metrics.Tally`` (plain adds,
published on scrape) and the latency histogram sees one packet in
``aiortc_glue.LATENCY_SAMPLE_EVERY``.

Pause is explicit state, as mediasoup's ``producer.pause()``: the call's policy engine pauses
and resumes its producers when its state changes; nothing is polled per packet. A paused
producer still feeds its taps (recorder, vision) and its watchers' consumers (staff keep
seeing a paused call); the parties' consumers start over at a keyframe once it resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from time import perf_counter

from aiortc.rtp import RtpPacket

from protocol.aiortc_glue import ForwardingReceiver, ForwardingSender, RtpView, rtp_packet
from protocol.codecs import keyframe_start
from protocol.frames import FrameHub
from relay import metrics

log = logging.getLogger(__name__)

PacketTap = Callable[[RtpPacket, int], None]
"""Sees every received packet, paused or not (recorder, vision sampler). Must be cheap."""


class Producer:
    """One incoming stream (audio or video) of one leg."""

    def __init__(
        self,
        kind: str,
        receiver: ForwardingReceiver,
        keyframe_throttle_s: float,
        direction: str,
    ) -> None:
        self.kind = kind
        self.receiver = receiver
        self.direction = direction
        self.consumers: list[Consumer] = []
        self.taps: list[PacketTap] = []
        self.media_ssrc: int | None = None
        self.packets_received = 0
        self.packets_withheld = 0
        self._paused = False
        self._throttle_s = keyframe_throttle_s
        self._last_keyframe_request = -1e9
        self._keyframe_pending = False
        self._hubs: dict[str, FrameHub] = {}
        self._withheld_packets = metrics.tally(metrics.PACKETS_WITHHELD, kind, direction)
        self._withheld_bytes = metrics.tally(metrics.BYTES_WITHHELD, kind, direction)
        receiver._view_sink = self.on_rtp

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Withhold this stream from the parties' consumers (watchers still get it)."""
        self._paused = True

    def resume(self) -> None:
        """Forward again; each party consumer re-anchors and waits for a keyframe."""
        if self._paused:
            self._paused = False
            for consumer in self.consumers:
                if consumer.follows_pause:
                    consumer.restart()

    def frames(self, mime: str) -> FrameHub:
        """Whole frames of this stream, assembled once for every subscriber."""
        hub = self._hubs.get(mime)
        if hub is None:
            hub = self._hubs[mime] = FrameHub(mime)
            self.taps.append(hub.tap)
        return hub

    def on_rtp(self, view: RtpView) -> None:
        """One received packet (the lean path calls this synchronously, per packet)."""
        self.media_ssrc = view.ssrc
        self.packets_received += 1
        if self.taps:
            packet = rtp_packet(view)
            for tap in self.taps:
                tap(packet, view.arrival_ms)
        if self._paused:
            self.packets_withheld += 1
            self._withheld_packets.value += 1
            self._withheld_bytes.value += len(view.payload)
            for consumer in self.consumers:
                if not consumer.follows_pause:
                    consumer.push(view)
            return
        for consumer in self.consumers:
            consumer.push(view)

    def request_keyframe(self, reason: str) -> None:
        """Ask the sending leg for a keyframe, at most once per throttle period."""
        if self.kind != "video":
            return
        now = time.monotonic()
        wait = self._last_keyframe_request + self._throttle_s - now
        if wait <= 0:
            self._last_keyframe_request = now
            self._send_pli(reason)
        elif not self._keyframe_pending:
            self._keyframe_pending = True
            asyncio.get_running_loop().call_later(wait, self._flush_pending, reason)

    def _flush_pending(self, reason: str) -> None:
        self._keyframe_pending = False
        self._last_keyframe_request = time.monotonic()
        self._send_pli(reason)

    def _send_pli(self, reason: str) -> None:
        if self.media_ssrc is None:
            return
        metrics.KEYFRAME_REQUESTS.labels(reason).inc()
        asyncio.ensure_future(self.receiver.request_keyframe(self.media_ssrc))

    def detach(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)


class Consumer:
    """One producer's stream rewritten onto one outgoing sender."""

    def __init__(
        self,
        producer: Producer,
        sender: ForwardingSender,
        direction: str,
        follows_pause: bool = True,
    ) -> None:
        self.producer = producer
        self.sender = sender
        self.direction = direction
        self.follows_pause = follows_pause
        self.packets_sent = 0
        self._video = producer.kind == "video"
        self._source_ssrc: int | None = None
        # Continuity: when the source leg rejoins, a new consumer feeds the same outgoing
        # stream and must carry on from where the last one stopped (a jump backwards in
        # sequence numbers is dropped by the viewer's SRTP replay check): it anchors on what
        # the sender sent last (``ForwardingSender.last_sent``: nothing kept per packet here).
        self._anchor = True
        self._waiting_keyframe = self._video
        self._held = True  # anchoring or waiting for a keyframe: the per-packet fast test
        self._seq_offset = 0
        self._ts_offset = 0
        self._packets = metrics.tally(metrics.PACKETS_FORWARDED, producer.kind, direction)
        self._bytes = metrics.tally(metrics.BYTES_FORWARDED, producer.kind, direction)
        self._gated = metrics.tally(metrics.PACKETS_GATED, direction)
        sender._on_keyframe_request = self._viewer_wants_keyframe
        producer.consumers.append(self)
        if self._video:
            producer.request_keyframe("subscribe")

    def restart(self) -> None:
        """Start over at the next packet: re-anchor offsets, wait for a keyframe."""
        self._anchor = True
        self._waiting_keyframe = self._video
        self._held = True

    def close(self) -> None:
        self.producer.detach(self)
        self.sender._on_keyframe_request = None

    def _viewer_wants_keyframe(self) -> None:
        self.producer.request_keyframe("viewer")

    def push(self, view: RtpView) -> None:
        """One packet of the producer's stream: rewritten by this consumer's two offsets and
        sent (the steady state is one test, two additions and the sender's call)."""
        if view.ssrc != self._source_ssrc or self._held:
            if not self._admit(view):
                return
        sent = self.sender.forward_view(
            view,
            (view.sequence_number + self._seq_offset) & 0xFFFF,
            (view.timestamp + self._ts_offset) & 0xFFFFFFFF,
        )
        if sent:
            self.packets_sent += 1
            self._packets.value += 1
            self._bytes.value += sent
            if view.t0:
                metrics.FORWARD_LATENCY.observe(perf_counter() - view.t0)

    def _admit(self, view: RtpView) -> bool:
        """A new source, or held: start over on a new source, gate on a keyframe, anchor
        the offsets. False when this packet is not to be sent."""
        codec = self.sender._codec
        if codec is None:
            return False
        if view.ssrc != self._source_ssrc:
            self._source_ssrc = view.ssrc
            self.restart()
        if self._waiting_keyframe:
            if not keyframe_start(codec.mimeType, view.payload):
                self._gated.value += 1
                self.producer.request_keyframe("gate")
                return False
            self._waiting_keyframe = False
        if self._anchor:
            self._anchor_at(view, codec.clockRate)
        self._held = False
        return True

    def _anchor_at(self, view: RtpView, clock_rate: int) -> None:
        """Offsets that continue the outgoing stream from its last packet (or start it)."""
        self._anchor = False
        last_seq, last_ts, last_sent_ms = self.sender.last_sent()
        if last_seq is None:
            self._seq_offset = 0
            self._ts_offset = 0
        else:
            elapsed = max(1, view.arrival_ms - last_sent_ms) * clock_rate // 1000
            self._seq_offset = (last_seq + 1 - view.sequence_number) & 0xFFFF
            self._ts_offset = (last_ts + elapsed - view.timestamp) & 0xFFFFFFFF
