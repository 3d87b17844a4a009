"""Fails loudly when aiortc changes the internals protocol/aiortc_glue.py relies on."""

from __future__ import annotations

import inspect

import aioice.ice
import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver

from protocol import aiortc_glue


def test_aiortc_version_is_the_pinned_one():
    assert aiortc.__version__ == aiortc_glue.AIORTC_VERSION
    aiortc_glue.check_aiortc_version()


def _source(obj) -> str:
    return inspect.getsource(obj)


def test_receiver_private_state_still_exists():
    src = _source(RTCRtpReceiver.__init__)
    for name in (
        "__codecs",
        "__rtx_ssrc",
        "__remote_streams",
        "__nack_generator",
        "__remote_bitrate_estimator",
        "__rtcp_ssrc",
        "__started",
        "__transport",
        "__rtcp_task",
        "__decoder_thread",
    ):
        assert f"self.{name}" in src, f"RTCRtpReceiver lost {name}"
    handle = _source(RTCRtpReceiver._handle_rtp_packet)
    assert "unwrap_rtx" in handle and "nack_generator" in handle
    assert "_register_rtp_receiver" in _source(RTCRtpReceiver.receive)
    assert hasattr(RTCRtpReceiver, "_send_rtcp_pli") and hasattr(RTCRtpReceiver, "_run_rtcp")


def test_sender_private_state_still_exists():
    src = _source(RTCRtpSender.__init__)
    for name in (
        "__rtp_history",
        "__rtp_header_extensions_map",
        "__mid",
        "__ntp_timestamp",
        "__rtp_timestamp",
        "__octet_count",
        "__packet_count",
        "__rtp_started",
        "__rtp_exited",
        "__encoder",
    ):
        assert f"self.{name}" in src, f"RTCRtpSender lost {name}"
    assert "self._run_rtp(" in _source(RTCRtpSender.send)
    assert "_send_keyframe" in _source(RTCRtpSender._handle_rtcp_packet)
    assert "_retransmit" in _source(RTCRtpSender._handle_rtcp_packet)


def test_transceiver_codec_list_and_ice_address_hook():
    assert "_codecs" in _source(RTCRtpTransceiver.__init__)
    assert "get_host_addresses(" in _source(aioice.ice.Connection.gather_candidates)


def test_announce_address_rewrites_host_candidates():
    sdp = (
        "v=0\r\nc=IN IP4 127.0.0.1\r\na=candidate:abc 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
    )
    out = aiortc_glue.announce_address(sdp.replace("\r\n", "\n"), "203.0.113.7")
    assert "203.0.113.7 40000 typ host" in out and "c=IN IP4 203.0.113.7" in out


async def test_media_sockets_get_a_larger_receive_buffer():
    import socket

    aiortc_glue.bind_media_addresses(["127.0.0.1"])
    conn = aioice.ice.Connection(ice_controlling=False)
    try:
        await conn.gather_candidates()
        sock = conn._protocols[0].transport.get_extra_info("socket")
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert granted > 256 * 1024, granted  # the default is ~208 KiB; the kernel doubles the ask
    finally:
        await conn.close()


def test_lean_path_internals_still_exist():
    """What the lean packet path (issue 19) reads and writes inside aiortc and aioice."""
    from aiortc.codecs.vpx import Vp8Encoder
    from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter, State
    from aiortc.rtcicetransport import RTCIceTransport
    from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
    from aiortc.rtp import HeaderExtensionsMap

    dtls = _source(RTCDtlsTransport.__init__)
    for name in (
        "_rx_srtp",
        "_tx_srtp",
        "_rtp_router",
        "_rtp_header_extensions_map",
        "_state",
        "__rx_packets",
    ):
        assert f"self.{name}" in dtls, f"RTCDtlsTransport lost {name}"
    recv = _source(RTCDtlsTransport._recv_next)
    assert "self._handle_rtp_data(" in recv and "unprotect(" in recv  # queued RTP arrives here
    assert "self.transport._recv()" in recv
    assert State.CONNECTED
    router = _source(RtpRouter.__init__)
    assert "self.ssrc_table" in router and "self.payload_type_table" in router
    assert "self.__ids" in _source(HeaderExtensionsMap.__init__)
    ids = HeaderExtensionsMap()._HeaderExtensionsMap__ids
    for name in ("mid", "abs_send_time", "audio_level"):
        assert hasattr(ids, name)
    assert "self._connection" in _source(RTCIceTransport.__init__)
    conn = _source(aioice.ice.Connection.__init__)
    for name in ("_nominated", "_protocols", "_queue"):
        assert f"self.{name}" in conn, f"aioice Connection lost {name}"
    assert "self._queue.put_nowait((data, component))" in _source(
        aioice.ice.Connection.data_received
    )
    assert "transport.sendto(data, addr)" in _source(aioice.ice.StunProtocol.send_data)
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in _source(
        aioice.ice.Connection.sendto
    )
    # the receiver duties the lean path reuses read only these packet fields
    for cls in (StreamStatistics, NackGenerator):
        used = set(__import__("re").findall(r"packet\.(\w+)", _source(cls.add)))
        assert used <= {"sequence_number", "timestamp"}, (cls, used)
    sender = _source(RTCRtpSender.__init__)
    for name in ("__rtx_payload_type", "__rtx_sequence_number", "_rtx_ssrc", "__started"):
        assert f"self.{name}" in sender, f"RTCRtpSender lost {name}"
    assert "await self._retransmit(seq)" in _source(RTCRtpSender._handle_rtcp_packet)
    assert isinstance(inspect.getattr_static(Vp8Encoder, "_packetize"), classmethod)


def test_receiver_helpers_the_lean_twins_replace():
    from aiortc.rate import RateCounter, RemoteBitrateEstimator
    from aiortc.rtcrtpreceiver import NackGenerator

    assert "self.incoming_bitrate = RateCounter(1000, 8000)" in _source(
        RemoteBitrateEstimator.__init__
    )
    for name in ("add", "rate", "reset"):
        assert hasattr(RateCounter, name)
    assert "self.missing" in _source(NackGenerator.__init__)
    src = _source(RTCRtpReceiver.__init__)
    assert "self.__nack_generator = NackGenerator()" in src
    assert "self.__remote_bitrate_estimator = RemoteBitrateEstimator()" in src
    from aiortc.rate import AimdRateControl

    assert AimdRateControl().feedback_interval() == aiortc_glue._rtpfast.FEEDBACK_INTERVAL_MS


def test_pylibsrtp_and_aioice_internals_the_lean_path_uses():
    """protocol._rtpfast calls libsrtp on a Session's context; the relay sends on a dup of
    the nominated pair's socket and closes it with the protocol."""
    import os

    import pylibsrtp
    from aiortc.rtcdtlstransport import RTCDtlsTransport

    assert pylibsrtp.__version__ == "1.0.0"
    session = pylibsrtp.Session(
        pylibsrtp.Policy(key=os.urandom(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    )
    assert len(session._buffer) == 1500 and aiortc_glue.SRTP_BUFFER_LIMIT <= 1500 - 144
    # protocol._rtpfast is handed libsrtp's functions and a session's context as addresses
    fn, ctx = aiortc_glue._srtp_addresses(session, "srtp_protect")
    assert fn and ctx == int(aiortc_glue._srtp_ffi.cast("uintptr_t", session._srtp[0]))
    assert "_rx_srtp" in _source(RTCDtlsTransport._recv_next)
    assert "_tx_srtp.protect_rtcp" in _source(RTCDtlsTransport._send_rtp)
    assert "self.transport" in _source(aiortc_glue._original_connection_made)
    assert "def remote_addr" in _source(aioice.ice.CandidatePair)


def test_turn_tls_internals_still_exist():
    """verify_turn_tls_with and selected_turn_tls (TURN over TLS, ``turns:``)."""
    from aioice.turn import TurnTransport, create_turn_endpoint
    from aiortc.rtcicetransport import connection_kwargs

    kwargs = connection_kwargs([aiortc.RTCIceServer("turns:t.example:443?transport=tcp")])
    assert kwargs["turn_ssl"] is True and kwargs["turn_transport"] == "tcp"
    assert "self.turn_ssl = turn_ssl" in _source(aioice.ice.Connection.__init__)
    gather = aiortc_glue._original_component_candidates  # aioice's own (the mux wraps it)
    assert "turn_ssl=self.turn_ssl" in _source(gather)
    assert "ssl=ssl" in _source(create_turn_endpoint)
    assert "self.__inner_protocol = inner_protocol" in _source(TurnTransport.__init__)


def test_consent_internals_close_peer_connection_relies_on():
    """close_peer_connection: connect() starts consent through the instance's attribute
    (so a no-op set on the instance wins), and close() cancels a consent task already running."""
    assert "asyncio.create_task(self.query_consent())" in _source(aioice.ice.Connection.connect)
    close = _source(aioice.ice.Connection.close)
    assert "self._query_consent_task.cancel()" in close


def test_connect_internals_close_peer_connection_relies_on():
    """close_peer_connection finds aiortc's untracked connect task by its coroutine's name and
    stops a sender or receiver it started after close() through their RTCP task."""
    pc = aiortc.RTCPeerConnection
    assert "asyncio.ensure_future(self.__connect())" in _source(pc.setRemoteDescription)
    connect = pc._RTCPeerConnection__connect
    assert connect.__qualname__ == aiortc_glue._CONNECT_QUALNAME
    body = _source(connect)
    assert body.index("await dtlsTransport.start(") < body.index("await transceiver.sender.send(")
    assert "self.__rtcp_task = asyncio.ensure_future(self._run_rtcp())" in _source(
        RTCRtpSender.send
    )
    assert "self.__rtcp_task = asyncio.ensure_future(self._run_rtcp())" in _source(
        RTCRtpReceiver.receive
    )
