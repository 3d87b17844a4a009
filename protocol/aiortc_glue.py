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
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aioice.ice
import aiortc
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc import clock as _clock
from aiortc.codecs import is_rtx
from aiortc.codecs.h264 import h264_depayload
from aiortc.codecs.vpx import vp8_depayload
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
    (tests/test_fuzz_media.py)."""
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


class ForwardingReceiver(RTCRtpReceiver):
    """An RTCRtpReceiver whose packets go to ``_sink`` rather than to a decoder."""

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
        self._RTCRtpReceiver__transport._register_rtp_receiver(self, parameters)
        self._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(self._run_rtcp())
        self._RTCRtpReceiver__started = True

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
                global sink_errors
                sink_errors += 1
                if sink_errors <= 3:  # the first few are logged; the count keeps going
                    log.exception("packet sink failed; the packet was dropped")

    async def request_keyframe(self, media_ssrc: int) -> None:
        await self._send_rtcp_pli(media_ssrc)


# --- sending pre-encoded packets -------------------------------------------------------------


class ForwardingSender(RTCRtpSender):
    """An RTCRtpSender without a track: ``forward()`` sends packets encoded elsewhere."""

    _codec: RTCRtpCodecParameters | None
    _on_keyframe_request: Callable[[], None] | None

    async def _run_rtp(self, codec: RTCRtpCodecParameters) -> None:
        # Replaces aiortc's encode loop (which would poll for a track every 20 ms).
        self._codec = codec
        self._RTCRtpSender__rtp_started.set()
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            pass
        finally:
            self._codec = None
            self._RTCRtpSender__rtp_exited.set()

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if on_nack is not None and isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
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

    async def forward(
        self,
        source: RtpPacket,
        sequence_number: int,
        timestamp: int,
    ) -> int:
        """Send one encoded packet with this sender's SSRC and payload type; returns bytes."""
        codec = self._codec
        if codec is None:
            return 0
        packet = RtpPacket(
            payload_type=codec.payloadType,
            marker=source.marker,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=self._ssrc,
            payload=source.payload,
        )
        ext = packet.extensions
        ext.abs_send_time = (_clock.current_ntp_time() >> 14) & 0x00FFFFFF
        ext.mid = self._RTCRtpSender__mid
        if source.extensions.audio_level is not None:
            ext.audio_level = source.extensions.audio_level
        self._RTCRtpSender__rtp_history[sequence_number % RTP_HISTORY_SIZE] = packet
        data = packet.serialize(self._RTCRtpSender__rtp_header_extensions_map)
        await self.transport._send_rtp(data)
        self._RTCRtpSender__ntp_timestamp = _clock.current_ntp_time()
        self._RTCRtpSender__rtp_timestamp = timestamp
        self._RTCRtpSender__octet_count += len(packet.payload)
        self._RTCRtpSender__packet_count += 1
        return len(data)


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
    return receiver  # type: ignore[return-value]


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



def selected_candidate_types(pc: RTCPeerConnection) -> list[str]:
    """The local candidate type ("host", "relay", ...) of each transport's nominated pair."""
    out: list[str] = []
    seen: set[int] = set()
    for transceiver in pc.getTransceivers():
        transport = transceiver.sender.transport
        if transport is None or id(transport) in seen:
            continue
        seen.add(id(transport))
        connection = transport.transport.iceGatherer._connection
        out += [pair.local_candidate.type for pair in connection._nominated.values()]
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
    await RTCRtpReceiver._send_rtcp(self, packet)


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
