"""Every aiortc/aioice internal the relay depends on, in one place, pinned to aiortc 1.16.

aiortc always decodes what it receives and encodes what it sends. An SFU must do neither, so
this module swaps two classes in on the peer connection's own transceivers:

* ``ForwardingReceiver`` keeps aiortc's per-packet duties (RTX unwrapping, NACK generation,
  REMB, receiver-report statistics) and hands each RTP packet to a sink instead of the jitter
  buffer and decoder thread.
* ``ForwardingSender`` has no track and no encoder: the forwarder calls ``forward()`` with an
  already-encoded packet. aiortc's own NACK handling (RTP history + RTX) and sender reports
  keep working because ``forward()`` fills the same private state ``_run_rtp`` would.

It also confines ICE to configured addresses (aioice leaves loopback out) and never uses a
public STUN server. ``tests/test_aiortc_glue.py`` fails loudly if aiortc changes underneath.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aioice.ice
import aiortc
import pylibsrtp
from aioice.turn import TurnTransport
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.codecs import is_rtx
from aiortc.codecs.h264 import h264_depayload
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.rate import (
    AimdRateControl,
    BandwidthUsage,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as _DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    RTP_HISTORY_SIZE,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
)
from aiortc.utils import uint16_add
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

try:
    from protocol import _rtpfast
except ImportError as exc:  # the C part is built by make, not by pip
    raise ImportError(
        "protocol/_rtpfast is not built: run `make` or `python -m protocol.rtpfast_build`"
    ) from exc

log = logging.getLogger(__name__)
sink_errors = 0
"""Packets dropped because the relay's own packet handling raised."""

on_nack: Callable[[int], None] | None = None
"""Called with the number of packets a viewer's NACK asks for (the relay counts them)."""

AIORTC_VERSION = "1.16.0"
"""The aiortc release whose internals this module was written against."""

RtpSink = Callable[[RtpPacket, int], Awaitable[None]]


def check_aiortc_version() -> None:
    if aiortc.__version__ != AIORTC_VERSION:
        raise RuntimeError(
            f"protocol.aiortc_glue was written for aiortc {AIORTC_VERSION}, found "
            f"{aiortc.__version__}: re-check the private attributes it uses"
        )


# --- ICE addresses ---------------------------------------------------------------------------

_media_addresses: list[str] = []
_original_get_host_addresses = aioice.ice.get_host_addresses


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if not _media_addresses:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    return [a for a in _media_addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def bind_media_addresses(addresses: Iterable[str]) -> None:
    """Gather ICE host candidates on exactly these local addresses (loopback allowed)."""
    _media_addresses[:] = list(addresses)
    aioice.ice.get_host_addresses = _configured_host_addresses
    aioice.ice.StunProtocol.datagram_received = _guarded_datagram_received
    aioice.ice.StunProtocol.connection_made = _connection_made_with_buffer


MEDIA_RCVBUF_BYTES = 2 * 1024 * 1024
"""Receive buffer asked for on each media socket: a relay briefly starved of CPU (a busy
host, a GC pause) then queues a couple of seconds of media instead of dropping datagrams.
The kernel caps it at net.core.rmem_max."""

_original_connection_made = aioice.ice.StunProtocol.connection_made


def _connection_made_with_buffer(self: aioice.ice.StunProtocol, transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, MEDIA_RCVBUF_BYTES)
        except OSError:
            pass
    _original_connection_made(self, transport)


_original_datagram_received = aioice.ice.StunProtocol.datagram_received
bad_datagrams = 0
"""Datagrams dropped at the media sockets before aioice/aiortc could choke on them."""


def _guarded_datagram_received(self: aioice.ice.StunProtocol, data: bytes, addr: tuple) -> None:
    """Anyone can send a datagram to a media port. Two kinds broke a leg in aioice 0.13 /
    aiortc 1.16: an empty one ends the DTLS receive loop (``data[0]``: the leg's media stops
    both ways), and a STUN-looking one with a short attribute raises ``struct.error`` from
    aioice's parser (a logged traceback per datagram). Drop both here
    (tests/test_fuzz_media.py). Once a relay leg is connected its protocol's own
    ``datagram_received`` (``_fast_receive``) takes RTP first (a load client's, its C
    receiver: ``RawMedia.listen``) and hands the rest here."""
    global bad_datagrams
    if not data:
        bad_datagrams += 1
        return
    try:
        _original_datagram_received(self, data, addr)
    except Exception:
        bad_datagrams += 1


_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host.*)$", re.M)


def announce_address(sdp: str, announced: str) -> str:
    """Rewrite host candidates and the connection line to a public (NAT) address."""
    if not announced:
        return sdp
    sdp = _CANDIDATE.sub(lambda m: m.group(1) + announced + m.group(3), sdp)
    family = "IP6" if ":" in announced else "IP4"
    return re.sub(r"^c=IN IP[46] \S+$", f"c=IN {family} {announced}", sdp, flags=re.M)


def new_peer_connection() -> RTCPeerConnection:
    """A peer connection that talks to no STUN/TURN server (aiortc's default is Google's).

    MAX_BUNDLE: with aiortc's default (balanced), an answerer given two sections of one kind
    (a watcher's offer) leaves the second on a transport that BUNDLE then discards.
    """
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


# --- receiving without decoding --------------------------------------------------------------


RtpViewSink = Callable[["RtpView"], None]


class ForwardingReceiver(RTCRtpReceiver):
    """An RTCRtpReceiver whose packets go to a sink rather than to a decoder.

    With ``_view_sink`` set (the relay), packets take the lean path: ``_handle_view`` gets
    bytes and header fields, synchronously. With ``_sink`` (clients, checks), each packet
    is an aiortc RtpPacket handed to an async sink.
    """

    _sink: RtpSink | None

    async def receive(self, parameters: RTCRtpReceiveParameters) -> None:
        # aiortc's receive() also starts a decoder thread; this one does not.
        if self._RTCRtpReceiver__started:
            return
        for codec in parameters.codecs:
            self._RTCRtpReceiver__codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                self._RTCRtpReceiver__rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        transport = self._RTCRtpReceiver__transport
        transport._register_rtp_receiver(self, parameters)
        if self._view_sink is not None:
            # aiortc calls receive() once DTLS is connected: the SRTP sessions exist
            _install_fast_path(transport)
            if self._RTCRtpReceiver__nack_generator is not None:
                self._RTCRtpReceiver__nack_generator = _rtpfast.NackGenerator()
            estimator = self._RTCRtpReceiver__remote_bitrate_estimator
            if estimator is not None:
                estimator = LeanRemoteBitrateEstimator()
                self._RTCRtpReceiver__remote_bitrate_estimator = estimator
            self._prepare_lean(estimator)
        self._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(self._run_rtcp())
        self._RTCRtpReceiver__started = True

    def _prepare_lean(self, estimator: LeanRemoteBitrateEstimator | None) -> None:
        """The per-packet duties in C (``protocol._rtpfast.ReceiverDuties``), from the codec
        table (payload type -> clock rate, RTX or not) and aiortc's statistics dict; the
        fast path calls ``_handle_view`` (its ``handle``) with each packet."""
        codecs = self._RTCRtpReceiver__codecs
        self._lean_pts = {
            pt: (c.clockRate, c.parameters.get("apt") if is_rtx(c) else None)
            for pt, c in codecs.items()
        }
        self._lean_estimator = estimator
        self._lean_nack = self._RTCRtpReceiver__nack_generator
        self._remb_sent_ms = -(10**12)
        self._remb_sent_bps = 0
        self._duties = _rtpfast.ReceiverDuties(
            {pt: (rate, apt is not None) for pt, (rate, apt) in self._lean_pts.items()},
            self._RTCRtpReceiver__remote_streams,
            None if estimator is None else estimator._c,
            self._lean_nack,
            self.__dict__.get("_view_sink"),
            self._on_estimate,
            self._on_rtx,
            self._on_nack,
        )
        self._duties.enabled = self.__dict__.get("_enabled", True)
        self._handle_view = self._duties.handle

    # the duties read these two per packet: aiortc's own flag and the producer's sink
    @property
    def _enabled(self) -> bool:
        return self.__dict__.get("_enabled", True)

    @_enabled.setter
    def _enabled(self, value: bool) -> None:
        self.__dict__["_enabled"] = value
        duties = self.__dict__.get("_duties")
        if duties is not None:
            duties.enabled = bool(value)

    @property
    def _view_sink(self) -> RtpViewSink | None:
        return self.__dict__.get("_view_sink")

    @_view_sink.setter
    def _view_sink(self, sink: RtpViewSink | None) -> None:
        self.__dict__["_view_sink"] = sink
        duties = self.__dict__.get("_duties")
        if duties is not None:
            duties.sink = sink

    def _on_estimate(self, incoming: int, now_ms: int) -> None:
        """The rate control is due (about twice a second): a REMB may follow."""
        remb = self._lean_estimator.control(incoming, now_ms)  # type: ignore[union-attr]
        if remb is not None:
            self._maybe_send_remb(remb, now_ms)

    def _on_nack(self, view: RtpView) -> None:
        """A gap opened: ask for what is missing (a task, as aiortc does)."""
        asyncio.ensure_future(self._send_rtcp_nack(view.ssrc, sorted(self._lean_nack.missing)))

    def _on_rtx(self, view: RtpView) -> None:
        """A retransmission (counted in its own statistics): the original packet, then as
        any other (NACK bookkeeping, the sink)."""
        view = self._unwrap_rtx(view, self._lean_pts[view.payload_type][1])
        if view is None:
            return
        nack = self._lean_nack
        if nack is not None and nack.add(view):
            self._on_nack(view)
        sink = self._view_sink
        if sink is not None:
            sink(view)

    def _maybe_send_remb(self, remb: tuple[int, list[int]], now_ms: int) -> None:
        """Send the estimate as a REMB, as libwebrtc throttles it: at most once per
        REMB_MIN_INTERVAL_MS unless it fell by more than REMB_DROP_FRACTION. aiortc's
        estimator returns one per packet while it sees overuse (hundreds a second on a
        loaded host), each a task and an SRTCP packet."""
        rtcp_ssrc = self._RTCRtpReceiver__rtcp_ssrc
        if rtcp_ssrc is None:
            return
        bitrate = remb[0]
        if (
            now_ms - self._remb_sent_ms < REMB_MIN_INTERVAL_MS
            and bitrate >= self._remb_sent_bps * REMB_DROP_FRACTION
        ):
            return
        self._remb_sent_ms = now_ms
        self._remb_sent_bps = bitrate
        asyncio.ensure_future(
            self._send_rtcp(
                RtcpPsfbPacket(
                    fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb)
                )
            )
        )

    def _unwrap_rtx(self, view: RtpView, apt: Any) -> RtpView | None:
        original_ssrc = self._RTCRtpReceiver__rtx_ssrc.get(view.ssrc)
        payload = view.payload
        if original_ssrc is None or len(payload) <= 2 or apt not in self._lean_pts:
            return None
        # the original packet: the media SSRC, type and sequence number, the payload
        # without its two-byte original sequence number
        view.sequence_number = (payload[0] << 8) | payload[1]
        view.payload = payload[2:]
        view.payload_type = apt
        view.ssrc = original_ssrc
        return view

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if not self._enabled:
            return
        estimator = self._RTCRtpReceiver__remote_bitrate_estimator
        rtcp_ssrc = self._RTCRtpReceiver__rtcp_ssrc
        if estimator is not None and packet.extensions.abs_send_time is not None:
            remb = estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=packet.ssrc,
            )
            if rtcp_ssrc is not None and remb is not None:
                await self._send_rtcp(
                    RtcpPsfbPacket(
                        fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb)
                    )
                )
        codecs = self._RTCRtpReceiver__codecs
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        streams = self._RTCRtpReceiver__remote_streams
        stats = streams.get(packet.ssrc)
        if stats is None:
            stats = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)
        if is_rtx(codec):
            original_ssrc = self._RTCRtpReceiver__rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or apt not in codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
        nack = self._RTCRtpReceiver__nack_generator
        if nack is not None and nack.add(packet):
            await self._send_rtcp_nack(packet.ssrc, sorted(nack.missing))
        if self._sink is not None and packet.payload:
            try:
                await self._sink(packet, arrival_time_ms)
            except Exception:
                # an error here must not end aiortc's receive loop for the whole connection
                _sink_failed()

    async def request_keyframe(self, media_ssrc: int) -> None:
        await self._send_rtcp_pli(media_ssrc)


def _sink_failed() -> None:
    global sink_errors
    sink_errors += 1
    if sink_errors <= 3:  # the first few are logged; the count keeps going
        log.exception("packet sink failed; the packet was dropped")


# --- sending pre-encoded packets -------------------------------------------------------------


def _sender_count(field: str) -> property:
    """One of the counts aiortc's sender reports read, from the C sender (0 before it
    exists); aiortc's constructor zeroes it, which stores nothing."""
    return property(
        lambda self: 0 if self._fast is None else getattr(self._fast, field),
        lambda self, value: None,
    )


class ForwardingSender(RTCRtpSender):
    """An RTCRtpSender without a track: ``forward_view()`` sends packets encoded elsewhere.

    The outgoing header (this sender's SSRC and payload type, the consumer's sequence number
    and timestamp, its own MID and abs-send-time, the source's audio level) is packed by a
    C sender (``protocol._rtpfast.Sender``), which also keeps each payload per sequence
    number for NACK (``_retransmit``, RTX-wrapped where negotiated, as aiortc keeps
    RtpPackets) and the counts aiortc's sender reports read.
    """

    _codec: RTCRtpCodecParameters | None
    _on_keyframe_request: Callable[[], None] | None
    _fast: Any = None  # protocol._rtpfast.Sender, from _run_rtp on

    async def _run_rtp(self, codec: RTCRtpCodecParameters) -> None:
        # Replaces aiortc's encode loop (which would poll for a track every 20 ms).
        self._pair: Any = None
        self._sendto: Callable[[Any, tuple[str, int]], Any] | None = None
        self._dest: tuple[str, int] | None = None
        ids = self._RTCRtpSender__rtp_header_extensions_map._HeaderExtensionsMap__ids
        mid = self._RTCRtpSender__mid
        mid_element = b""
        if mid and ids.mid:
            raw = mid.encode("utf8")
            mid_element = bytes([(ids.mid << 4) | (len(raw) - 1)]) + raw
        # the header (MID, abs-send-time, the source's audio level), the NACK history and
        # the counts sender reports read: in C (protocol/_rtpfast.c)
        self._fast = _rtpfast.Sender(
            self._ssrc,
            codec.payloadType,
            mid_element,
            ids.abs_send_time or 0,
            ids.audio_level or 0,
            RTP_HISTORY_SIZE,
        )
        self._codec = codec
        self._dtls = self.transport
        self._nominated = self._dtls.transport._connection._nominated  # aioice's, never rebound
        self._RTCRtpSender__rtp_started.set()
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            pass
        finally:
            self._codec = None
            self._RTCRtpSender__rtp_exited.set()

    async def _send_rtcp(self, packets: list[AnyRtcpPacket]) -> None:
        # aiortc's, without its coroutine chain to the socket (send_plain_rtcp)
        send_plain_rtcp(self.transport, b"".join(bytes(p) for p in packets))

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if (
            on_nack is not None
            and isinstance(packet, RtcpRtpfbPacket)
            and packet.fmt == RTCP_RTPFB_NACK
        ):
            on_nack(len(packet.lost))
        note_viewer_rtcp(self, packet)  # the viewer's REMB (issue 17, end of this module)
        await super()._handle_rtcp_packet(packet)

    def _send_keyframe(self) -> None:
        # A PLI/FIR from the viewer: there is no encoder here, so ask upstream.
        if self._on_keyframe_request is not None:
            self._on_keyframe_request()

    @property
    def ready(self) -> bool:
        return self._codec is not None

    def last_sent(self) -> tuple[int | None, int, int]:
        """(sequence number, timestamp, source arrival ms) of the last packet forwarded,
        whichever consumer fed it (None: nothing yet): where a new consumer carries on."""
        fast = self._fast
        if fast is None or fast.last_seq < 0:
            return None, 0, 0
        # the NTP time of the packet's arrival, in RtpView.arrival_ms units
        return fast.last_seq, fast.last_ts, fast.last_ntp * 1000 >> 32

    # aiortc's sender reports and stats read these four; the C sender counts them
    _RTCRtpSender__packet_count = _sender_count("packet_count")
    _RTCRtpSender__octet_count = _sender_count("octet_count")
    _RTCRtpSender__ntp_timestamp = _sender_count("last_ntp")
    _RTCRtpSender__rtp_timestamp = _sender_count("last_ts")

    def forward_view(self, view: RtpView, sequence_number: int, timestamp: int) -> int:
        """Send one received packet as this sender's, with these sequence number and
        timestamp; returns the bytes sent (before SRTP), 0 when not sent.

        The C sender packs the header in its buffer, copies the payload after it, protects
        it in place and sends it on the nominated pair's descriptor; on TURN it hands the
        datagram back for the allocation's transport. A full socket buffer drops the packet
        (uvloop's transport would queue it: late media is no use to a viewer). The
        descriptor is only used while DTLS is connected on that pair: it is closed with the
        pair's protocol, after the connection has gone."""
        if self._codec is None:
            return 0
        dtls = self._dtls
        if dtls._state is not _DtlsState.CONNECTED:
            return 0
        pair = self._nominated.get(1)
        if pair is not self._pair:
            if not self._use_pair(dtls, pair):
                return 0
        fast = self._fast
        if self._sendto is None:
            return fast.forward(view, sequence_number, timestamp)
        data = fast.protect(
            view.payload, sequence_number, timestamp, view.marker, view.ntp, view.audio_level
        )
        if data is None:
            return 0
        try:
            self._sendto(data, self._dest)  # type: ignore[arg-type]
        except OSError:
            return 0
        return fast.last_size

    def _use_pair(self, dtls: RTCDtlsTransport, pair: Any) -> bool:
        """Bind the C sender to this nominated pair (and the current SRTP session), once per
        pair: its descriptor, or its transport (TURN) where the datagram is handed back."""
        self._pair = None
        if pair is None:
            return False
        transport = pair.protocol.transport
        if transport is None:
            return False
        sock = _send_socket(pair.protocol)
        session = dtls._tx_srtp
        protect, ctx = _srtp_addresses(session, "srtp_protect")
        host, port = pair.remote_addr[:2]
        direct = self._fast.bind(
            session, protect, ctx, -1 if sock is None else sock.fileno(), host, port
        )
        self._sendto = None if direct else transport.sendto
        self._dest = pair.remote_addr
        self._pair = pair
        return True

    async def _retransmit(self, sequence_number: int) -> None:
        sent = self._fast.history(sequence_number)
        if sent is None:
            return
        # the packet as it was first sent (same header, same abs-send-time), rebuilt
        payload, timestamp, marker, ntp, level = sent
        head = bytearray(self._fast.header(sequence_number, timestamp, marker, ntp, level))
        data = bytes(head) + payload
        rtx_pt = self._RTCRtpSender__rtx_payload_type
        if rtx_pt is not None:
            rtx_seq = self._RTCRtpSender__rtx_sequence_number
            self._RTCRtpSender__rtx_sequence_number = uint16_add(rtx_seq, 1)
            head[1] = (head[1] & 0x80) | rtx_pt
            struct.pack_into("!H", head, 2, rtx_seq)
            struct.pack_into("!I", head, 8, self._rtx_ssrc)
            data = bytes(head) + struct.pack("!H", sequence_number) + payload
        _send_plain_rtp(self.transport, data)


def _srtp_addresses(session: pylibsrtp.Session, function: str) -> tuple[int, int]:
    """libsrtp's ``function`` and the session's context, as addresses for protocol._rtpfast."""
    fn = int(_srtp_ffi.cast("uintptr_t", _srtp_ffi.addressof(_srtp_lib, function)))
    return fn, int(_srtp_ffi.cast("uintptr_t", session._srtp[0]))


def _send_socket(protocol: Any) -> socket.socket | None:
    """A plain socket object on the descriptor of a StunProtocol's UDP socket (a dup: the
    event loop's transport keeps its own), for the relay's sends: Python's ``sendto`` is a
    quarter cheaper than uvloop's transport here. Closed with the protocol."""
    sock = protocol.__dict__.get("_relay_sock")
    if sock is not None:
        return sock
    transport = protocol.transport
    if transport is None or transport.is_closing() or isinstance(transport, TurnTransport):
        return None  # a TURN allocation's transport frames what it sends: keep it
    raw = transport.get_extra_info("socket")
    if raw is None:
        return None
    sock = socket.socket(fileno=os.dup(raw.fileno()))
    sock.setblocking(False)
    protocol._relay_sock = sock
    return sock


_original_connection_lost = aioice.ice.StunProtocol.connection_lost


def _connection_lost_closing_socket(self: aioice.ice.StunProtocol, exc: Exception | None) -> None:
    sock = self.__dict__.pop("_relay_sock", None)
    if sock is not None:
        sock.close()
    _original_connection_lost(self, exc)


def send_plain_rtcp(dtls: RTCDtlsTransport, data: bytes) -> None:
    """SRTCP-protect and send, synchronously: aiortc's ``_send_rtp`` goes through three
    coroutines (DTLS, ICE transport, aioice) to the same ``sendto``. Reports, REMBs, NACKs
    and PLIs are most of a connected call's fixed cost (bench/idlecost.py)."""
    if dtls._state is not _DtlsState.CONNECTED:
        return
    pair = dtls.transport._connection._nominated.get(1)
    if pair is not None:
        pair.protocol.transport.sendto(dtls._tx_srtp.protect_rtcp(data), pair.remote_addr)


def _send_plain_rtp(dtls: RTCDtlsTransport, data: bytes) -> bool:
    """SRTP-protect and send on the nominated pair's socket (aioice's own send does just
    this behind two coroutines)."""
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None:
        return False
    pair.protocol.transport.sendto(dtls._tx_srtp.protect(data), pair.remote_addr)
    return True


def adopt_transceiver(
    transceiver: RTCRtpTransceiver,
    sink: RtpSink | None,
    on_keyframe_request: Callable[[], None] | None,
) -> tuple[ForwardingReceiver, ForwardingSender]:
    """Turn a fresh transceiver's receiver and sender into forwarding ones.

    Must run after setRemoteDescription() and before setLocalDescription(), which is when
    aiortc starts them.
    """
    receiver, sender = transceiver.receiver, transceiver.sender
    receiver.__class__ = ForwardingReceiver
    receiver._sink = sink
    receiver._view_sink = None
    sender.__class__ = ForwardingSender
    sender._codec = None
    sender._on_keyframe_request = on_keyframe_request
    return receiver, sender  # type: ignore[return-value]


def offered_mimes(transceiver: RTCRtpTransceiver) -> list[str]:
    """Codecs both the remote offer and aiortc support, in the offer's order (no RTX)."""
    return [c.mimeType for c in transceiver._codecs if not is_rtx(c)]


def restrict_codecs(transceiver: RTCRtpTransceiver, mime: str) -> bool:
    """Answer with exactly one codec (plus its RTX), so both legs of a call share it.

    aiortc answers with every common codec in the offer's order and sends with the first;
    filtering its list after setRemoteDescription() pins both directions. False when the
    offer lacks the codec.
    """
    codecs = transceiver._codecs
    keep = [c for c in codecs if c.mimeType.lower() == mime.lower()][:1]
    if not keep:
        return False
    pt = keep[0].payloadType
    keep += [c for c in codecs if is_rtx(c) and c.parameters.get("apt") == pt]
    transceiver._codecs = keep
    return True


# --- depacketizing (recorder, vision, test and load clients) ---------------------------------


def depayload(mime: str, payload: bytes) -> bytes:
    """One RTP payload's share of the codec bitstream (VP8 descriptor stripped, H.264 Annex B)."""
    low = mime.lower()
    if low == "video/vp8":
        return vp8_depayload(payload)
    if low == "video/h264":
        return h264_depayload(payload)
    return payload


def adopt_receiver(transceiver: RTCRtpTransceiver, sink: RtpSink) -> ForwardingReceiver:
    """Client side: receive encoded packets without decoding (load clients, checks)."""
    receiver = transceiver.receiver
    receiver.__class__ = ForwardingReceiver
    receiver._sink = sink
    receiver._view_sink = None
    return receiver  # type: ignore[return-value]


# --- the lean packet path --------------------------------------------------------------------
#
# aiortc hands every datagram through aioice's queue to the DTLS transport's receive loop,
# parses it into an RtpPacket, routes it, and the sender serialises a new RtpPacket. For a
# forwarder that is most of the cost per packet. Here, once DTLS is up, RTP datagrams are
# taken straight from the media socket's datagram_received: SRTP unprotect and the few
# header fields the relay needs in one C call (protocol/_rtpfast.c, on pylibsrtp's libsrtp),
# and a synchronous hand-off to the receiver; senders pack the outgoing header, protect and
# send on the nominated pair's descriptor in one C call.
# RTCP, DTLS and STUN still take aiortc's and aioice's own paths (RTCP is handled in one place,
# the receiver's and sender's ``_handle_rtcp_packet``).

LATENCY_SAMPLE_EVERY = _rtpfast.LATENCY_SAMPLE_EVERY
"""One packet in this many carries a perf_counter arrival time, for the latency histogram."""

fast_drops = 0
"""RTP datagrams dropped on the lean path: SRTP authentication failed or a malformed header."""


RtpView = _rtpfast.RtpView
"""One received RTP packet: its payload plus the header fields the relay reads (a C object,
protocol/_rtpfast.c: ``payload``, ``payload_type``, ``marker``, ``sequence_number``,
``timestamp``, ``ssrc``, ``abs_send_time``, ``audio_level`` (the raw byte), ``wall``
(time.time() at arrival), ``arrival_ms`` and ``ntp`` (from it), ``t0`` (perf_counter at
arrival for one packet in LATENCY_SAMPLE_EVERY, else 0.0)).

The names are RtpPacket's, so aiortc's StreamStatistics and NackGenerator accept it as it
is. One is built per received packet and shared by every consumer; not tracked by the
garbage collector (nothing it holds can hold it)."""


def rtp_packet(view: RtpView) -> RtpPacket:
    """A full RtpPacket (for taps: recorder, vision); built only where one is attached."""
    packet = RtpPacket(
        payload_type=view.payload_type,
        marker=view.marker,
        sequence_number=view.sequence_number,
        timestamp=view.timestamp,
        ssrc=view.ssrc,
        payload=view.payload,
    )
    if view.audio_level is not None:
        packet.extensions.audio_level = (bool(view.audio_level & 0x80), view.audio_level & 0x7F)
    return packet


def parse_rtp(data: bytes, abs_id: int | None, level_id: int | None) -> RtpView | None:
    """The header fields of one plain RTP packet (the two extension ids the relay reads, None
    where not negotiated); None when it is malformed."""
    return _rtpfast.parse(data, abs_id, level_id)


SRTP_BUFFER_LIMIT = _rtpfast.PLAIN_LIMIT
"""The largest plain packet handed to libsrtp directly: pylibsrtp's 1500-byte buffer less
its largest SRTP trailer (pylibsrtp refuses longer ones the same way)."""


class _FastPath:
    """The lean receive path of one DTLS transport (audio and video share it under BUNDLE)."""

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self.dtls = dtls
        self.router = dtls._rtp_router
        self.ids = dtls._rtp_header_extensions_map._HeaderExtensionsMap__ids
        session = dtls._rx_srtp
        self.receive = _rtpfast.Receiver(
            session, *_srtp_addresses(session, "srtp_unprotect")
        ).receive

    async def queued(self, plain: bytes, arrival_time_ms: int) -> None:
        """Packets aioice had queued before the lean path was installed (the first ones
        after the handshake) still reach aiortc's receive loop: take them here too."""
        global fast_drops
        ids = self.ids
        view = parse_rtp(plain, ids.abs_send_time, ids.audio_level)
        if view is None:
            fast_drops += 1
            return
        try:
            self.route(view)
        except Exception:
            _sink_failed()  # counted and dropped: one packet, never aiortc's receive loop

    def route(self, view: RtpView) -> None:
        """Hand one received packet to its receiver (aiortc's router tables)."""
        router = self.router
        receiver = router.ssrc_table.get(view.ssrc)
        pt_receivers = router.payload_type_table.get(view.payload_type, ())
        if receiver is None:
            if len(pt_receivers) != 1:
                return
            receiver = router.ssrc_table[view.ssrc] = next(iter(pt_receivers))
        elif receiver not in pt_receivers:
            return
        handle = getattr(receiver, "_handle_view", None)
        if handle is not None:
            handle(view)


def _fast_receive(fast: _FastPath, protocol: Any, data: bytes, addr: tuple) -> None:
    """A connected leg's socket: RTP is unprotected and parsed in C (protocol/_rtpfast.c) and
    routed here; the rest goes to aioice and aiortc through the guarded handler."""
    global fast_drops
    ids = fast.ids
    view = fast.receive(data, ids.abs_send_time, ids.audio_level)
    if view.__class__ is RtpView:
        try:
            fast.route(view)
        except Exception:
            _sink_failed()  # counted and dropped: one packet, never the connection
    elif view is None:
        _guarded_datagram_received(protocol, data, addr)
    else:
        fast_drops += 1  # too long, authentication or replay check failed, or malformed


def _install_fast_path(dtls: RTCDtlsTransport) -> None:
    if getattr(dtls, "_relay_fast_path", None) is not None:
        return
    fast = dtls._relay_fast_path = _FastPath(dtls)
    dtls._handle_rtp_data = fast.queued  # the instance's, shadowing aiortc's method
    _patch_stun_protocol()
    _hook_when_drained(fast, dtls.transport._connection)


def _hook_when_drained(
    fast: _FastPath, connection: aioice.ice.Connection, deadline: float | None = None
) -> None:
    """Take RTP at the socket once aioice's queue is empty. What arrived before still waits
    there and reaches aiortc's receive loop (then ``fast.queued``) after the handshake code
    has finished, as before; switching only when it is empty keeps every packet in order.
    On a starved host the queue may never empty (aiortc's loop takes one datagram per turn,
    slower than they arrive): after HOOK_WAIT_S the lean path takes over all the same,
    and the few still queued arrive late (a NACK the sender answers or ignores), instead of
    the connection staying on the slow path for good. A connection closed meanwhile stays."""
    if not connection._nominated:
        return
    loop = asyncio.get_running_loop()
    if deadline is None:
        deadline = loop.time() + HOOK_WAIT_S
    if connection._queue.empty() or loop.time() >= deadline:
        for protocol in connection._protocols:
            # the instance's own datagram_received (uvloop and the mux look it up per
            # datagram): one Python call from the socket to the fast path
            protocol.datagram_received = functools.partial(_fast_receive, fast, protocol)
    else:
        loop.call_later(0.001, _hook_when_drained, fast, connection, deadline)


HOOK_WAIT_S = 0.3
"""How long to wait for aioice's queue to drain before the lean path takes over."""


def _patch_stun_protocol() -> None:
    aioice.ice.StunProtocol.datagram_received = _guarded_datagram_received
    aioice.ice.StunProtocol.connection_lost = _connection_lost_closing_socket


class RawMedia:
    """A connected peer connection's media socket and SRTP sessions, for a load client.

    After the ICE + DTLS handshake, the client sends and receives RTP/RTCP itself: packets
    protected with the DTLS-keyed sessions (a C sender per stream, libsrtp called directly),
    out on the nominated pair. ``listen`` hands the socket's datagrams to a C receiver
    (``protocol._rtpfast.LegReceiver``) that counts what arrives per stream: the header a load
    client counts is in clear in SRTP, so one packet in ``RX_VERIFY_EVERY`` (and every RTCP
    packet) is authenticated and decrypted and the others are counted from their headers; the
    sample still catches a relay that sends anything SRTP refuses (``bad``).
    """

    RX_VERIFY_EVERY = 8
    KIND_CODES = {"video": 0, "audio": 1, "rtx": 2}
    """How the C receiver names what a payload type carries."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        transceivers = pc.getTransceivers()
        dtls = transceivers[0].sender.transport
        self._dtls = dtls
        self._rx_session = dtls._rx_srtp
        self._tx_session = dtls._tx_srtp
        self._ice = dtls.transport._connection
        self._rx: Any = None
        self.send_errors = 0
        self.rtcp_bad = 0

    @property
    def connected(self) -> bool:
        return self._dtls._state == _DtlsState.CONNECTED and bool(self._ice._nominated)

    def listen(
        self,
        kinds: dict[int, str],
        max_gap: int,
        video_clock: int,
        frame_delays: list[float],
        on_rtcp: Callable[[bytes], None],
        on_gap: Callable[[int, int, int], None],
    ) -> None:
        """Take the socket's datagrams from now on. ``kinds``: payload type to "video",
        "audio" or "rtx"; each marked video packet appends its frame's delay (arrival on the
        monotonic clock less its RTP time, unwrapped) to ``frame_delays``; ``on_rtcp`` gets
        each RTCP packet decrypted, ``on_gap(ssrc, last_seq, gap)`` a jump of 2 to
        ``max_gap`` in a stream's sequence numbers; STUN and DTLS still go to aioice."""
        session = self._rx_session
        self._rx = _rtpfast.LegReceiver(
            session,
            *_srtp_addresses(session, "srtp_unprotect"),
            {pt: self.KIND_CODES[kind] for pt, kind in kinds.items()},
            self.RX_VERIFY_EVERY,
            max_gap,
            float(video_clock),
            frame_delays,
            functools.partial(self._rtcp, on_rtcp),
            on_gap,
            _guarded_datagram_received,
        )
        _patch_stun_protocol()
        for protocol in self._ice._protocols:
            # the instance's own datagram_received (looked up per datagram): one C call
            protocol.datagram_received = functools.partial(self._rx.datagram, protocol)

    def _rtcp(self, on_rtcp: Callable[[bytes], None], data: bytes) -> None:
        try:
            plain = self._rx_session.unprotect_rtcp(data)
        except pylibsrtp.Error:
            self.rtcp_bad += 1
            return
        on_rtcp(plain)

    def counts(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Packets and payload bytes received per kind, and video frames (marked packets)."""
        if self._rx is None:
            return {"video": 0, "audio": 0}, {"video": 0, "audio": 0}, 0
        return self._rx.counts()

    def streams(self) -> list[tuple[int, int, int, int]]:
        """(ssrc, first sequence number, highest, packets received) of each stream received."""
        return self._rx.streams() if self._rx is not None else []

    @property
    def verified(self) -> int:
        return self._rx.verified if self._rx is not None else 0

    @property
    def bad(self) -> int:
        """Datagrams SRTP refused (RTP in the sample, RTCP) or too short to be SRTP."""
        return self.rtcp_bad + (self._rx.bad if self._rx is not None else 0)

    @property
    def failed(self) -> int:
        """Datagrams whose handling raised in a callback (dropped; the first was printed)."""
        return self._rx.failed if self._rx is not None else 0

    @staticmethod
    def sender(ssrc: int, payload_type: int, mid_element: bytes, abs_id: int) -> Any:
        """A C sender (``protocol._rtpfast.Sender``) for one outgoing stream of a load
        client: ``protect()`` packs the header, copies the payload and protects it, and the
        client sends (and keeps) the datagram; bound with ``bind_sender``."""
        return _rtpfast.Sender(ssrc, payload_type, mid_element, abs_id, 0, 1)

    def bind_sender(self, sender: Any) -> None:
        """Protect with this connection's outgoing SRTP session."""
        sender.bind(self._tx_session, *_srtp_addresses(self._tx_session, "srtp_protect"), -1, "", 0)

    def resend(self, datagram: bytes) -> None:
        """Send an already protected datagram again (SRTP accepts it where the first was lost)."""
        self._send(datagram)

    def send_rtcp(self, plain: bytes) -> None:
        self._send(self._tx_session.protect_rtcp(plain))

    def _send(self, data: bytes) -> None:
        pair = self._ice._nominated.get(1)
        if pair is None:
            self.send_errors += 1
            return
        pair.protocol.transport.sendto(data, pair.remote_addr)


@dataclass(frozen=True)
class SendContext:
    """What a load client needs to send one stream as the peer connection negotiated it."""

    kind: str
    ssrc: int
    payload_type: int
    mid: str
    mid_id: int | None
    abs_send_time_id: int | None
    receive_payload_types: dict[int, str]  # payload type -> kind, RTX types as "rtx"


def send_context(transceiver: RTCRtpTransceiver) -> SendContext:
    """A sending transceiver's negotiated SSRC, payload type, MID and header extension ids."""
    sender = transceiver.sender
    codecs = transceiver._codecs
    media = [c for c in codecs if not is_rtx(c)]
    ids = sender._RTCRtpSender__rtp_header_extensions_map._HeaderExtensionsMap__ids
    pts = {c.payloadType: ("rtx" if is_rtx(c) else transceiver.kind) for c in codecs}
    return SendContext(
        transceiver.kind,
        sender._ssrc,
        media[0].payloadType,
        transceiver.mid or "",
        ids.mid,
        ids.abs_send_time,
        pts,
    )


def vp8_packetize(frame: bytes, picture_id: int) -> list[bytes]:
    """aiortc's VP8 payloader (descriptor + partitions of at most aiortc's packet size)."""
    return Vp8Encoder._packetize(frame, picture_id)


def media_started(pc: RTCPeerConnection) -> bool:
    """True once aiortc has started every sending transceiver's sender (header extension ids
    and payload types are then final)."""
    return all(
        t.sender._RTCRtpSender__started
        for t in pc.getTransceivers()
        if t.currentDirection in ("sendonly", "sendrecv")
    ) and bool(pc.getTransceivers())


# --- the receive-side estimate: its per-packet step in C, aiortc's rate control here ----------


REMB_MIN_INTERVAL_MS = 200
"""libwebrtc's REMB throttle (RembThrottler): one REMB per 200 ms, unless the estimate fell."""
REMB_DROP_FRACTION = 0.97
"""A new estimate below this share of the last one sent goes out at once."""


class LeanRemoteBitrateEstimator:
    """aiortc's receive-side estimator (``RemoteBitrateEstimator``) with its per-packet work
    in C (``protocol._rtpfast.BitrateEstimator``: rate counter, inter-arrival groups, the
    overuse estimator's Kalman filter and the detector, operation for operation) and its rate
    control (aiortc's ``AimdRateControl``) here, run when the C part says it is due: once
    per feedback interval, and under overuse when libwebrtc would cut (not on every packet,
    as aiortc does). The same estimates (tests/test_packet_path.py)."""

    def __init__(self) -> None:
        self._c = _rtpfast.BitrateEstimator()
        self.observe = self._c.observe
        """observe(arrival_ms, abs_send_time, payload_size, ssrc): None, or the incoming
        rate (-1: none yet) when the rate control is due (then ``control``)."""
        self.rate_control = AimdRateControl()

    def add(
        self, arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int
    ) -> tuple[int, list[int]] | None:
        """aiortc's ``add``: a (bitrate, SSRCs) estimate to send as a REMB, or None."""
        incoming = self.observe(arrival_time_ms, abs_send_time, payload_size, ssrc)
        return None if incoming is None else self.control(incoming, arrival_time_ms)

    def control(self, incoming: int, now_ms: int) -> tuple[int, list[int]] | None:
        """Run the rate control on the detector's state and the incoming rate."""
        c = self._c
        control = self.rate_control
        usage = BandwidthUsage(c.hypothesis)
        target = control.update(usage, None if incoming < 0 else incoming, now_ms)
        # libwebrtc's TimeToReduceFurther, for the C part to apply under overuse: an RTT
        # (clamped) after the last change, or at once when the rate falls under half
        low, high = REDUCE_INTERVAL_MS
        last = control.last_change_ms
        c.reduce_after_ms = -(2**63) if last is None else last + min(max(control.rtt, low), high)
        c.reduce_below = (
            0.5 * control.current_bitrate if control.current_bitrate_initialized else -1.0
        )
        if target is None:
            return None
        c.last_update_ms = now_ms
        return target, c.ssrcs()


REDUCE_INTERVAL_MS = (10, 200)
"""libwebrtc's bounds on the interval between two cuts under overuse (the RTT, clamped)."""


# --- TURN on the client side (issue 17) ------------------------------------------------------


def pick_turn_url(urls: Iterable[str], transport: str) -> str | None:
    """The first URL for ``transport`` ("udp", "tcp" or "tls"): aiortc uses one TURN URL only."""
    for url in urls:
        secure = url.startswith("turns:")
        kind = "tls" if secure else ("tcp" if "transport=tcp" in url else "udp")
        if kind == transport:
            return url
    return None


def new_client_peer_connection(
    ice_servers: list[dict[str, Any]], turn_transport: str = "udp", relay_only: bool = False
) -> RTCPeerConnection:
    """A peer connection that may use the relay's TURN server over ``turn_transport``.

    ``ice_servers`` is the relay's ``ice_servers`` message (WebRTC's RTCIceServer shape).
    Without a matching TURN URL this is ``new_peer_connection()``: still no public server.
    ``relay_only`` is iceTransportPolicy "relay" (aiortc 1.16 passes it to aioice, which then
    gathers no host candidate at all).
    """
    servers = []
    for server in ice_servers:
        url = pick_turn_url(server.get("urls", []), turn_transport)
        if url is not None:
            servers.append(
                aiortc.RTCIceServer(
                    urls=url, username=server.get("username"), credential=server.get("credential")
                )
            )
            break
    policy = aiortc.RTCIceTransportPolicy.RELAY if relay_only else aiortc.RTCIceTransportPolicy.ALL
    return RTCPeerConnection(
        RTCConfiguration(
            iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE, iceTransportPolicy=policy
        )
    )


def _ice_connections(pc: RTCPeerConnection) -> list[Any]:
    """aioice's ``Connection`` of each of ``pc``'s transports, once each (bundled
    transceivers share one)."""
    out: list[Any] = []
    seen: set[int] = set()
    for transceiver in pc.getTransceivers():
        transport = transceiver.sender.transport
        if transport is None or id(transport) in seen:
            continue
        seen.add(id(transport))
        out.append(transport.transport.iceGatherer._connection)
    return out


async def _no_consent_after_close() -> None:
    return None


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    """``pc.close()``, leaving no ICE consent task behind.

    aioice's ``Connection.connect()`` starts consent freshness checks once its check list
    completes. A close that lands after the list completed but before ``connect()`` resumed
    (a leg closed just as its ICE finished, e.g. right after a rejoin) returns first; the
    consent task then starts on the closed sockets and lingers for about 30 s ("Task was
    destroyed but it is pending" when the loop closes). A consent check that had started
    is cancelled by aioice's close; one that had not is made a no-op here. aiortc's connect
    task, when the close lands inside its handshake, is awaited and what it started after the
    close is stopped (below)."""
    for connection in _ice_connections(pc):
        connection.query_consent = _no_consent_after_close  # this instance, from now on
    connecting = _connect_tasks(pc)
    await pc.close()
    if not connecting:
        return
    # aiortc's connect task (not kept by aiortc) awaits ICE and then DTLS for each transceiver
    # before it starts that transceiver's sender and receiver. When close() lands inside one
    # of those awaits, close() stops the transceivers first and the connect task, resuming,
    # starts them after: their RTCP tasks (and a receiver's decoder thread) would outlive the
    # close, and the task's next ICE start fails ("RTCIceTransport is closed") with no one to
    # retrieve the error. It is awaited here and whatever it started is stopped again.
    await asyncio.gather(*connecting, return_exceptions=True)
    for transceiver in pc.getTransceivers():
        receiver_task = getattr(transceiver.receiver, "_RTCRtpReceiver__rtcp_task", None)
        if receiver_task is not None and not receiver_task.done():
            await transceiver.receiver.stop()
        sender_task = getattr(transceiver.sender, "_RTCRtpSender__rtcp_task", None)
        if sender_task is not None and not sender_task.done():
            await transceiver.sender.stop()


_CONNECT_QUALNAME = "RTCPeerConnection.__connect"


def _connect_tasks(pc: RTCPeerConnection) -> list[asyncio.Task[Any]]:
    """The tasks running ``pc``'s connect coroutine now (aiortc starts one per description
    set and keeps no reference to it)."""
    out: list[asyncio.Task[Any]] = []
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if (
            frame is not None
            and getattr(coro, "__qualname__", "") == _CONNECT_QUALNAME
            and frame.f_locals.get("self") is pc
        ):
            out.append(task)
    return out


def selected_candidate_types(pc: RTCPeerConnection) -> list[str]:
    """The local candidate type ("host", "relay", ...) of each transport's nominated pair."""
    return [
        pair.local_candidate.type
        for connection in _ice_connections(pc)
        for pair in connection._nominated.values()
    ]


def verify_turn_tls_with(pc: RTCPeerConnection, context: ssl.SSLContext) -> int:
    """Check a ``turns:`` server's certificate with ``context`` (e.g. one that trusts a
    private CA) instead of Python's default one; returns how many ICE connections use it.

    aiortc hands aioice ``turn_ssl=True`` for ``turns:`` and aioice then lets asyncio make
    ``ssl.create_default_context()`` (the system store, or ``SSL_CERT_FILE``); aioice's
    ``Connection`` also takes a context there, which aiortc has no way to pass. Call this
    after the transceivers are added (each has made its gatherer) and before the offer."""
    changed = 0
    for connection in _ice_connections(pc):
        if connection.turn_ssl is True:
            connection.turn_ssl = context
            changed += 1
    return changed


def selected_turn_tls(pc: RTCPeerConnection) -> list[str | None]:
    """For each transport's nominated pair: the TLS version of the connection to the TURN
    server that carries it ("TLSv1.3"), None when that is not TLS (or not TURN at all)."""
    out: list[str | None] = []
    for connection in _ice_connections(pc):
        for pair in connection._nominated.values():
            turn = pair.protocol.transport
            inner = getattr(turn, "_TurnTransport__inner_protocol", None)
            stream = getattr(inner, "transport", None) if isinstance(turn, TurnTransport) else None
            ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
            out.append(ssl_object.version() if ssl_object is not None else None)
    return out


# --- one UDP port for all media (issue 17) ---------------------------------------------------
#
# aioice opens one UDP socket per ICE connection (a firewall in front of the relay must open a
# whole port range). With the mux on, every connection's host candidate on a media address is
# the same socket (mediasoup's WebRtcServer, LiveKit's UDP mux): a datagram goes to the leg
# whose ICE username fragment its STUN USERNAME names ("<relay ufrag>:<remote ufrag>"), and
# after that by its remote address. Unknown senders' datagrams are dropped and counted.

_mux_enabled = False
_mux_port = 0
_muxes: dict[tuple[str, int], UdpMux] = {}
"""(media address, id of the event loop) -> the shared socket's mux."""
mux_dropped = 0
"""Datagrams at a shared media port from no known leg (garbage, scans, stale peers)."""
_STUN_MAGIC = b"\x21\x12\xa4\x42"


def use_media_mux(enabled: bool, port: int = 0) -> None:
    """All ICE host candidates on one UDP ``port`` per media address (0: one the kernel
    picks, for tests); ``enabled=False`` keeps aioice's socket per connection."""
    global _mux_enabled, _mux_port
    _mux_enabled, _mux_port = enabled, port
    aioice.ice.Connection.get_component_candidates = _component_candidates


def share_media_port(pc: RTCPeerConnection) -> None:
    """Put this (relay-side) peer connection's ICE on the shared port when the mux is on.

    Only marked connections use the mux: clients in the same process (tests, the benchmark)
    keep their own sockets. Call after setRemoteDescription(), before setLocalDescription().
    """
    for transceiver in pc.getTransceivers():
        transport = transceiver.sender.transport
        if transport is not None:
            transport.transport.iceGatherer._connection._share_media_port = True


async def close_media_mux() -> None:
    """Close this event loop's shared media sockets (the relay's shutdown)."""
    loop_id = id(asyncio.get_running_loop())
    for key in [k for k in _muxes if k[1] == loop_id]:
        _muxes.pop(key).close()


def media_mux_ports() -> dict[str, int]:
    """The shared port of each media address open in this event loop."""
    loop_id = id(asyncio.get_running_loop())
    return {addr: mux.port for (addr, lid), mux in _muxes.items() if lid == loop_id}


class UdpMux(asyncio.DatagramProtocol):
    """One shared UDP socket: demultiplexes datagrams to the ICE connections using it."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.by_ufrag: dict[str, MuxedStunProtocol] = {}
        self.by_addr: dict[tuple[str, int], MuxedStunProtocol] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # every leg's media queues here: a bigger buffer than a single leg's
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, MEDIA_RCVBUF_BYTES * 4)
            except OSError:
                pass
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        global mux_dropped
        addr = (addr[0], addr[1])
        protocol = None
        if len(data) >= 20 and data[0] < 2 and data[4:8] == _STUN_MAGIC:
            ufrag = _stun_local_ufrag(data)
            if ufrag is not None:
                protocol = self.by_ufrag.get(ufrag)
                if protocol is not None:
                    self.by_addr[addr] = protocol
        if protocol is None:
            protocol = self.by_addr.get(addr)
        if protocol is None or not data:
            mux_dropped += 1
            return
        protocol.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for one peer must not touch the others

    def register(self, protocol: MuxedStunProtocol, ufrag: str) -> None:
        self.by_ufrag[ufrag] = protocol

    def unregister(self, protocol: MuxedStunProtocol) -> None:
        for table in (self.by_ufrag, self.by_addr):
            for key in [k for k, p in table.items() if p is protocol]:
                del table[key]

    def close(self) -> None:
        for protocol in set(self.by_ufrag.values()) | set(self.by_addr.values()):
            protocol.connection_lost(None)
        self.by_ufrag.clear()
        self.by_addr.clear()
        if self.transport is not None:
            self.transport.close()


def _stun_local_ufrag(data: bytes) -> str | None:
    """The relay's ufrag from a STUN message's USERNAME attribute (type 0x0006), unparsed."""
    end = min(len(data), 20 + int.from_bytes(data[2:4], "big"))
    pos = 20
    while pos + 4 <= end:
        attr_type = int.from_bytes(data[pos : pos + 2], "big")
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if attr_type == 0x0006:
            value = data[pos + 4 : pos + 4 + length]
            local, colon, _ = value.partition(b":")
            return local.decode("ascii", "replace") if colon else None
        pos += 4 + ((length + 3) & ~3)
    return None


class _MuxedTransport:
    """What a StunProtocol needs of its transport, on the shared socket."""

    def __init__(self, mux: UdpMux, protocol: MuxedStunProtocol) -> None:
        self.mux = mux
        self.protocol = protocol

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        mux = self.mux
        if mux.transport is None or mux.transport.is_closing():
            return
        mux.by_addr.setdefault((addr[0], addr[1]), self.protocol)  # its answers come back here
        mux.transport.sendto(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self.mux.transport is None:
            return default
        return self.mux.transport.get_extra_info(name, default)

    def close(self) -> None:
        self.mux.unregister(self.protocol)
        self.protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self.mux.transport is None or self.mux.transport.is_closing()


class MuxedStunProtocol(aioice.ice.StunProtocol):
    """aioice's StunProtocol for one ICE connection, sending and receiving on a shared socket."""


async def _shared_mux(address: str) -> UdpMux:
    loop = asyncio.get_running_loop()
    key = (address, id(loop))
    mux = _muxes.get(key)
    if mux is None or mux.transport is None or mux.transport.is_closing():
        _, mux = await loop.create_datagram_endpoint(UdpMux, local_addr=(address, _mux_port))
        _muxes[key] = mux
    return mux


_original_component_candidates = aioice.ice.Connection.get_component_candidates


async def _component_candidates(
    self: aioice.ice.Connection, component: int, addresses: list[str], timeout: int = 5
) -> list[aioice.Candidate]:
    shared = getattr(self, "_share_media_port", False)
    if not _mux_enabled or not shared or self.stun_server or self.turn_server:
        return await _original_component_candidates(self, component, addresses, timeout)
    candidates = []
    for address in addresses:
        try:
            mux = await _shared_mux(address)
        except OSError as exc:
            log.warning("media mux: cannot bind %s:%s (%s)", address, _mux_port, exc)
            continue
        protocol = MuxedStunProtocol(self)
        protocol.connection_made(_MuxedTransport(mux, protocol))  # type: ignore[arg-type]
        protocol.local_candidate = aioice.Candidate(
            foundation=aioice.candidate.candidate_foundation("host", "udp", address),
            component=component,
            transport="udp",
            priority=aioice.candidate.candidate_priority(component, "host"),
            host=address,
            port=mux.port,
            type="host",
        )
        mux.register(protocol, self.local_username)
        self._protocols.append(protocol)
        candidates.append(protocol.local_candidate)
    return candidates


# --- link quality and bandwidth from RTCP (issue 17) -----------------------------------------
#
# What relay/media/bandwidth.py reads and writes: a viewer's REMB as it arrives on the
# sender that feeds it, the sending leg's own REMB (aiortc's receive-side estimate) as it
# leaves, capped to what the viewers can take, and REMBs sent upstream by the relay itself.


def note_viewer_rtcp(sender: RTCRtpSender, packet: AnyRtcpPacket) -> None:
    """Keep the latest REMB a viewer sent about this sender's stream (bit/s, monotonic s)."""
    if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
        try:
            bitrate, _ssrcs = unpack_remb_fci(packet.fci)
        except ValueError:
            return
        sender._viewer_remb = (bitrate, time.monotonic())


def viewer_remb(sender: RTCRtpSender) -> tuple[int, float] | None:
    """(bit/s, ``time.monotonic()``) of the viewer's last REMB on this sender, if any."""
    return getattr(sender, "_viewer_remb", None)


def sent_octets(sender: RTCRtpSender) -> int:
    """Payload bytes this sender has sent (what its sender reports count)."""
    return int(sender._RTCRtpSender__octet_count)


def set_remb_cap(receiver: RTCRtpReceiver, bitrate: int | None) -> None:
    """Cap the REMBs this receiver sends its remote sender (None: aiortc's own estimate)."""
    receiver._remb_cap = bitrate


def remb_cap(receiver: RTCRtpReceiver) -> int | None:
    """The cap set by ``set_remb_cap`` (None: none)."""
    return getattr(receiver, "_remb_cap", None)


def own_remb(receiver: RTCRtpReceiver) -> int | None:
    """aiortc's own estimate of the remote sender's uplink (its last REMB, before the cap)."""
    return getattr(receiver, "_own_remb", None)


async def _send_rtcp_capped(self: RTCRtpReceiver, packet: AnyRtcpPacket) -> None:
    if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
        try:
            bitrate, ssrcs = unpack_remb_fci(packet.fci)
        except ValueError:
            bitrate, ssrcs = 0, []
        if bitrate:
            self._own_remb = bitrate
            cap = getattr(self, "_remb_cap", None)
            if cap is not None and bitrate > cap:
                packet = RtcpPsfbPacket(
                    fmt=RTCP_PSFB_APP, ssrc=packet.ssrc, media_ssrc=0, fci=pack_remb_fci(cap, ssrcs)
                )
    send_plain_rtcp(self.transport, bytes(packet))


ForwardingReceiver._send_rtcp = _send_rtcp_capped  # type: ignore[method-assign]


async def send_remb(receiver: RTCRtpReceiver, bitrate: int) -> bool:
    """Tell the remote sender of this receiver's streams to stay under ``bitrate``."""
    rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc
    ssrcs = list(receiver._RTCRtpReceiver__remote_streams)
    if rtcp_ssrc is None or not ssrcs:
        return False
    fci = pack_remb_fci(int(bitrate), ssrcs)
    await RTCRtpReceiver._send_rtcp(
        receiver, RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=fci)
    )
    return True


def uplink_counts(receiver: RTCRtpReceiver) -> tuple[int, int, float]:
    """(packets expected, packets received, jitter in seconds) over this receiver's media
    streams (RTX excluded), from aiortc's receiver-report statistics, without resetting them."""
    expected = received = 0
    jitter = 0.0
    rtx = receiver._RTCRtpReceiver__rtx_ssrc
    for ssrc, stats in receiver._RTCRtpReceiver__remote_streams.items():
        if ssrc in rtx:
            continue
        expected += stats.packets_expected
        received += stats.packets_received
        jitter = max(jitter, stats.jitter / stats._clockrate)
    return expected, received, jitter


async def downlink_report(sender: RTCRtpSender) -> dict[str, float] | None:
    """The viewer's last receiver report on this sender: fraction lost (0..1), jitter in
    seconds, round-trip time in seconds (None until a report with a delay arrived)."""
    codec = getattr(sender, "_codec", None)
    for stats in (await sender.getStats()).values():
        if stats.type == "remote-inbound-rtp":
            clock_rate = codec.clockRate if codec is not None else 90000
            return {
                "loss": stats.fractionLost / 256,
                "jitter_s": stats.jitter / clock_rate,
                "rtt_s": stats.roundTripTime,
            }
    return None


def encoder_target_bitrate(sender: RTCRtpSender) -> int | None:
    """A client's encoder target (aiortc applies a REMB there), for tests and the bench."""
    encoder = sender._RTCRtpSender__encoder
    return getattr(encoder, "target_bitrate", None)


# --- closing a refused connection -------------------------------------------------------


async def close_refused(pc: RTCPeerConnection) -> None:
    """Close a peer connection whose offer was refused part-way through negotiation.

    aiortc's ``close()`` assumes every transceiver got a transport; an offer refused after
    ``setRemoteDescription`` (a truncated or contradictory SDP) can leave one without, and
    ``close()`` then raises AttributeError half-way. Whatever was opened is closed here; the
    client has already been told why its offer was refused."""
    try:
        await pc.close()
    except AttributeError:
        for transceiver in pc.getTransceivers():
            for part in (transceiver.sender, transceiver.receiver):
                transport = getattr(part, "transport", None)
                if transport is not None:
                    await transport.stop()
