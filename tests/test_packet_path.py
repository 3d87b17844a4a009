"""The lean packet path (issue 19): header parsing, that the relay really uses it, and the
bench's lean load legs against a real relay (real ICE, DTLS, SRTP on loopback)."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from bench import leanleg
from bench.loadclient import CountingClient, LegCounters
from protocol import aiortc_glue
from protocol.client import CallClient
from protocol.media import EncodedTrack
from relay import keys
from tests.support import admission, tone_clip, video_clip

ABS_ID, LEVEL_ID, MID_ID = 3, 5, 9


def _map(abs_id: int = ABS_ID, mid_id: int = MID_ID) -> HeaderExtensionsMap:
    ext = HeaderExtensionsMap()
    ext.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(
                    id=abs_id, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
                ),
                RTCRtpHeaderExtensionParameters(
                    id=LEVEL_ID, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"
                ),
                RTCRtpHeaderExtensionParameters(
                    id=mid_id, uri="urn:ietf:params:rtp-hdrext:sdes:mid"
                ),
            ]
        )
    )
    return ext


def test_parse_rtp_reads_what_aiortc_reads():
    ext = _map()
    for marker, padding, csrc, level in ((1, 0, [], (True, 33)), (0, 7, [0x1234, 0x5678], None)):
        packet = RtpPacket(
            payload_type=111,
            marker=marker,
            sequence_number=65535,
            timestamp=0xFFFFFFF0,
            ssrc=0xDEADBEEF,
            payload=b"\x90\x01payload" * 9,
        )
        packet.csrc = csrc
        packet.padding_size = padding
        packet.extensions.abs_send_time = 0x123456
        packet.extensions.mid = "1"
        packet.extensions.audio_level = level
        data = packet.serialize(ext)
        view = aiortc_glue.parse_rtp(data, ABS_ID, LEVEL_ID)
        assert view is not None
        again = RtpPacket.parse(data, ext)
        assert (
            view.payload_type,
            view.marker,
            view.sequence_number,
            view.timestamp,
            view.ssrc,
        ) == (again.payload_type, again.marker, again.sequence_number, again.timestamp, again.ssrc)
        assert view.payload == again.payload
        assert view.abs_send_time == 0x123456
        built = aiortc_glue.rtp_packet(view)
        assert built.payload == again.payload and built.extensions.audio_level == level


def test_parse_rtp_refuses_malformed_headers():
    good = RtpPacket(
        payload_type=96, sequence_number=1, timestamp=2, ssrc=3, payload=b"x"
    ).serialize()
    assert aiortc_glue.parse_rtp(good[:11], None, None) is None
    # extension flag set, extension length running past the end
    bad = bytes([good[0] | 0x10]) + good[1:12] + b"\xbe\xde\x00\x09" + b"x"
    assert aiortc_glue.parse_rtp(bad, ABS_ID, None) is None
    # padding longer than the payload
    assert aiortc_glue.parse_rtp(bytes([good[0] | 0x20]) + good[1:12] + b"\x05", None, None) is None
    # an extension element whose length runs past the block: not read, the packet kept
    cut = bytes([good[0] | 0x10]) + good[1:12] + b"\xbe\xde\x00\x01" + b"\x33\x01\x02\x03x"
    view = aiortc_glue.parse_rtp(cut, ABS_ID, None)
    assert view is not None and view.abs_send_time is None and view.payload == b"x"


def _srtp_pair():
    """Two pylibsrtp sessions sharing a key: one protects, the other unprotects."""
    import os

    import pylibsrtp

    key = os.urandom(30)
    out = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    into = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    return out, into


def test_the_c_receiver_unprotects_and_reads_what_parse_reads():
    """protocol._rtpfast.Receiver: a datagram is classified, unprotected in its own buffer
    and parsed; what is not RTP goes back (None), what it drops is a reason code."""
    from protocol import _rtpfast

    out, into = _srtp_pair()
    rx = _rtpfast.Receiver(into, *aiortc_glue._srtp_addresses(into, "srtp_unprotect"))
    packet = RtpPacket(
        payload_type=100, marker=1, sequence_number=7, timestamp=9, ssrc=11, payload=b"p" * 50
    )
    packet.padding_size = 3
    packet.extensions.abs_send_time = 0xABCDEF
    packet.extensions.audio_level = (True, 20)
    plain = packet.serialize(_map())
    a = aiortc_glue.parse_rtp(plain, ABS_ID, LEVEL_ID)
    b = rx.receive(out.protect(plain), ABS_ID, LEVEL_ID)
    assert type(b) is aiortc_glue.RtpView and a is not None
    fields = ("payload", "payload_type", "marker", "sequence_number", "timestamp", "ssrc")
    for name in fields + ("abs_send_time", "audio_level"):
        assert getattr(a, name) == getattr(b, name), name
    assert b.payload == b"p" * 50 and b.audio_level == 0x80 | 20
    # the arrival time in the units the relay uses (NTP from 1900, ms and 32.32 fixed point)
    assert b.arrival_ms == int((b.wall + 2208988800) * 1000)
    assert b.ntp == int((b.wall + 2208988800) * 4294967296.0)
    # replayed: libsrtp's replay check refuses it
    again = out.protect(plain[:2] + b"\x00\x08" + plain[4:])
    assert rx.receive(again, ABS_ID, LEVEL_ID).__class__ is aiortc_glue.RtpView
    assert rx.receive(again, ABS_ID, LEVEL_ID) == _rtpfast.DROP_UNPROTECT
    tampered = bytearray(out.protect(plain[:2] + b"\x00\x09" + plain[4:]))
    tampered[20] ^= 1
    assert rx.receive(bytes(tampered), ABS_ID, LEVEL_ID) == _rtpfast.DROP_UNPROTECT
    assert rx.receive(bytes([0x80, 96]) + b"x" * 1400, None, None) == _rtpfast.DROP_TOO_LONG
    # RTCP (payload types 192-223), STUN, DTLS and runts are not RTP
    for other in (bytes([0x80, 200]) + b"x" * 30, b"\x00\x01" + b"x" * 18, b"\x16\xfe" + b"x" * 20):
        assert rx.receive(other, ABS_ID, LEVEL_ID) is None
    assert rx.receive(b"\x80\x60", ABS_ID, LEVEL_ID) is None
    # a view is a plain C object: settable fields (RTX unwrapping rewrites four), no dict
    b.sequence_number, b.payload_type, b.ssrc, b.payload = 1, 2, 3, b"q"
    assert (b.sequence_number, b.payload_type, b.ssrc, b.payload) == (1, 2, 3, b"q")
    import gc

    assert not gc.is_tracked(b) and not hasattr(b, "__dict__")


def test_the_c_sender_packs_what_aiortc_parses_and_keeps_its_history():
    """protocol._rtpfast.Sender on a real loopback socket: the datagram unprotects with the
    peer's session and parses with aiortc as the header the sender was asked for; the NACK
    history and the counts sender reports read follow what was sent."""
    import socket

    from protocol import _rtpfast

    out, into = _srtp_pair()
    mid = bytes([(MID_ID << 4) | 0]) + b"1"
    sender = _rtpfast.Sender(0xCAFEBABE, 111, mid, ABS_ID, LEVEL_ID, 128)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    source = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(2)
        host, port = receiver.getsockname()
        protect = aiortc_glue._srtp_addresses(out, "srtp_protect")
        assert sender.bind(out, *protect, source.fileno(), host, port) is True
        ntp = 0x1234_5678_9ABC_DEF0
        for seq, level in ((65535, 0x80 | 33), (0, None)):
            size = sender.send(b"frame" * 20, seq, 0xFFFFFFF0 + seq, 1, ntp, level)
            packet = RtpPacket.parse(into.unprotect(receiver.recv(1500)), _map())
            assert size == len(packet.serialize(_map()))
            assert (packet.ssrc, packet.payload_type, packet.marker) == (0xCAFEBABE, 111, 1)
            assert (packet.sequence_number, packet.timestamp) == (
                seq,
                (0xFFFFFFF0 + seq) & 0xFFFFFFFF,
            )
            assert packet.payload == b"frame" * 20 and packet.extensions.mid == "1"
            assert packet.extensions.abs_send_time == (ntp >> 14) & 0xFFFFFF
            expected = None if level is None else (True, 33)
            assert packet.extensions.audio_level == expected
        assert (sender.packet_count, sender.octet_count, sender.last_seq) == (2, 200, 0)
        assert sender.last_ts == 0xFFFFFFF0 and sender.last_ntp == ntp
        assert sender.history(65535) == (b"frame" * 20, 0xFFEF, 1, ntp, 0x80 | 33)
        assert sender.history(0) == (b"frame" * 20, 0xFFFFFFF0, 1, ntp, None)
        assert sender.history(128) is None and sender.history(7) is None
        # the header for a retransmission is the one first sent
        again = sender.header(0, 0xFFFFFFF0, 1, ntp, None)
        assert RtpPacket.parse(again + b"frame" * 20, _map()).extensions.mid == "1"
        # forward(): the same, with the payload, marker, arrival and level read from a view
        view = aiortc_glue.RtpView(b"viewed", 96, 1, 1, 2, 3, None, 0x85, 1.0e9, 0.0)
        assert sender.forward(view, 5, 6) > 0
        packet = RtpPacket.parse(into.unprotect(receiver.recv(1500)), _map())
        assert (packet.payload, packet.sequence_number, packet.timestamp) == (b"viewed", 5, 6)
        assert packet.extensions.audio_level == (True, 5) and packet.marker == 1
        assert packet.extensions.abs_send_time == (view.ntp >> 14) & 0xFFFFFF
        assert sender.packet_count == 3
        # fields deleted from Python read as absent, or are refused: never a crash
        del view.audio_level
        assert sender.forward(view, 6, 7) > 0 and receiver.recv(1500)
        del view.payload
        with pytest.raises(TypeError):
            sender.forward(view, 7, 8)
        assert sender.packet_count == 4
        # too long for libsrtp's buffer: not sent, not counted
        assert sender.send(b"x" * 1400, 1, 0, 0, ntp, None) == 0 and sender.packet_count == 4
        # a host that is not a plain address (or no descriptor, TURN): the caller sends
        assert sender.bind(out, *protect, -1, host, port) is False
        assert sender.send(b"x", 2, 0, 0, ntp, None) == 0
        data = sender.protect(b"late", 3, 5, 0, ntp, None)
        assert RtpPacket.parse(into.unprotect(data), _map()).payload == b"late"
        assert sender.last_size == len(data) - 10 and sender.packet_count == 5
    finally:
        receiver.close()
        source.close()


def test_the_c_leg_receiver_counts_what_arrives_and_hands_on_the_rest():
    """protocol._rtpfast.LegReceiver (the load legs' receive step): per-kind packets and
    payload bytes, frames by marker with their delay, one packet in ``verify_every``
    decrypted (a tampered one there is ``bad``), a gap reported once, RTX counted as video,
    RTCP and non-RTP handed on; a failing callback costs that datagram only."""
    import time

    from protocol import _rtpfast

    out, into = _srtp_pair()
    rtcp, other, gaps, delays = [], [], [], []

    def on_gap(ssrc, last, gap):
        gaps.append((ssrc, last, gap))
        if ssrc == 0xBAD:
            raise RuntimeError("a failing NACK")

    rx = _rtpfast.LegReceiver(
        into,
        *aiortc_glue._srtp_addresses(into, "srtp_unprotect"),
        {96: 0, 111: 1, 97: 2},
        4,
        64,
        90000.0,
        delays,
        rtcp.append,
        on_gap,
        lambda protocol, data, addr: other.append((protocol, data, addr)),
    )

    def rtp(pt, seq, ts, ssrc, payload, marker=0, padding=0):
        packet = RtpPacket(
            payload_type=pt,
            marker=marker,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=payload,
        )
        packet.padding_size = padding
        packet.extensions.abs_send_time = 1
        return out.protect(packet.serialize(_map()))

    now_rtp = int(time.monotonic() * 90000) & 0xFFFFFFFF
    for i in range(8):  # the first one is verified (the trailer length is learnt from it)
        rx.datagram("p", rtp(96, 65533 + i & 0xFFFF, now_rtp, 0x1111, b"v" * 100, i % 4 == 3), "a")
    for i in range(5):
        rx.datagram("p", rtp(111, 10 + i, i * 960, 0x2222, b"a" * 40, padding=4), "a")
    # (padding is encrypted: stripped from the packet decrypted, counted in the four not)
    assert rx.counts() == ({"video": 8, "audio": 5}, {"video": 800, "audio": 5 * 40 + 4 * 4}, 2)
    assert rx.verified == 4 and rx.bad == 0 and gaps == []
    assert len(delays) == 2 and all(abs(d) < 1.0 for d in delays)  # wrap across 65535 kept
    # a gap of 5 in the video stream: reported once, with the sequence number before it
    rx.datagram("p", rtp(96, 9, now_rtp + 3000, 0x1111, b"v" * 10), "a")
    assert gaps == [(0x1111, 4, 5)]
    # a retransmission (RTX payload type, OSN in front): video, not a stream of its own
    rx.datagram("p", rtp(97, 1, now_rtp, 0x3333, b"\x00\x05" + b"r" * 30), "a")
    packets, nbytes, frames = rx.counts()
    assert packets["video"] == 10 and nbytes["video"] == 800 + 10 + 30
    assert [s[0] for s in rx.streams()] == [0x1111, 0x2222]
    assert rx.streams()[0] == (0x1111, 65533, 9, 9)
    # RTCP goes on protected; STUN/DTLS with its protocol and address; unknown types ignored
    report = out.protect_rtcp(bytes([0x80, 201, 0, 1, 0, 0, 0, 1]))
    rx.datagram("p", report, "a")
    rx.datagram("p", b"\x00\x01" + b"x" * 18, ("127.0.0.1", 9))
    rx.datagram("p", rtp(50, 1, 0, 0x4444, b"z"), "a")
    assert rtcp == [report] and other == [("p", b"\x00\x01" + b"x" * 18, ("127.0.0.1", 9))]
    assert rx.counts()[0] == {"video": 10, "audio": 5}
    # tampered where it is verified: refused, not counted; runts are bad too
    while True:
        packets_before = rx.counts()[0]["audio"]
        data = bytearray(rtp(111, 20 + packets_before, 0, 0x2222, b"a" * 40))
        data[-1] ^= 1
        rx.datagram("p", bytes(data), "a")
        if rx.bad:
            break
    assert rx.bad == 1 and rx.counts()[0]["audio"] <= packets_before + 3
    rx.datagram("p", bytes([0x80, 111]) + b"\x00" * 12, "a")
    # a callback that raises: counted in failed (the first printed), the next are handled
    import sys

    printed = []
    hook, sys.unraisablehook = sys.unraisablehook, printed.append
    try:
        rx.datagram("p", rtp(96, 100, 0, 0xBAD, b"x"), "a")
        rx.datagram("p", rtp(96, 103, 0, 0xBAD, b"x"), "a")
        rx.datagram("p", rtp(96, 106, 0, 0xBAD, b"x"), "a")
    finally:
        sys.unraisablehook = hook
    assert rx.failed == 2 and gaps[-1] == (0xBAD, 103, 3)
    assert [type(p.exc_value) for p in printed] == [RuntimeError]
    before = rx.counts()[0]["video"]
    rx.datagram("p", rtp(96, 104, 0, 0xBAD, b"x"), "a")
    assert rx.counts()[0]["video"] == before + 1


def test_video_plan_knows_the_keyframe_before_every_frame():
    from protocol.media import EncodedClipFrame

    frames = [
        EncodedClipFrame(b"\x10" * 3000 if k else b"\x11" * 100, k)
        for k in (True, False, False, True, False)
    ]
    plan = leanleg.VideoPlan(frames)
    assert plan.key_before == [0, 0, 0, 3, 3]
    assert len(plan.frames[0][1]) >= 3  # a big frame is split into several payloads
    assert all(len(p) <= 1300 for p in plan.frames[0][1])


class _ExtensionsSeen(CallClient):
    """Keeps the header extensions of what arrives: the relay's own header, parsed by aiortc."""

    def _packet_sink(self, name, kind):
        inner = super()._packet_sink(name, kind)
        self.seen = getattr(self, "seen", {})

        async def sink(packet, arrival_ms):
            ext = packet.extensions
            self.seen.setdefault(kind, set()).add((ext.mid, ext.abs_send_time is not None))
            await inner(packet, arrival_ms)

        return sink


async def _pair(relay, tokens, booking_id):
    fam = _ExtensionsSeen(
        relay.base_url,
        tokens.add(f"f{booking_id}", admission(booking_id, "family")),
        receive="count",
        video=EncodedTrack("video", video_clip(seed=1), 30),
        audio=EncodedTrack("audio", tone_clip(440), 50),
    )
    pri = CallClient(
        relay.base_url,
        tokens.add(f"p{booking_id}", admission(booking_id, "prison")),
        receive="count",
        video=EncodedTrack("video", video_clip(seed=2), 30),
        audio=EncodedTrack("audio", tone_clip(660), 50),
    )
    await fam.join()
    await pri.join()
    return fam, pri


async def test_relay_forwards_on_the_lean_path(relay, tokens):
    await _check_lean_path(relay, tokens)


async def test_lean_path_on_the_shared_media_port(config, tokens):
    """With the media mux (one UDP port for every leg) the lean path takes RTP all the same."""
    from aiohttp.test_utils import TestServer

    from relay.app import build_app

    server = TestServer(build_app(config.replace(media_mux=True), admit=tokens), host="127.0.0.1")
    await server.start_server()
    server.base_url = str(server.make_url("")).rstrip("/")
    try:
        await _check_lean_path(server, tokens)
        assert len(aiortc_glue.media_mux_ports()) == 1
    finally:
        await server.close()
        aiortc_glue.use_media_mux(False)


async def _check_lean_path(relay, tokens) -> None:
    fam, pri = await _pair(relay, tokens, 61)
    try:
        await fam.wait_frames("video0", 45)
        await pri.wait_frames("video0", 45)
        # every packet the relay built carried its MID, and abs-send-time where negotiated
        # (aiortc negotiates it for video only), as aiortc's own sender would
        mids = {t.kind: t.mid for t in fam._pc.getTransceivers()}
        assert fam.seen == {"video": {(mids["video"], True)}, "audio": {(mids["audio"], False)}}
        live = relay.app[keys.REGISTRY].get(61)
        for leg in live.call.legs.values():
            for producer in leg.producers.values():
                dtls = producer.receiver.transport
                assert getattr(dtls, "_relay_fast_path", None) is not None
                # aiortc's own receive loop saw the handshake, RTCP and the first few queued
                # packets, not the media: it went through the lean path
                aiortc_rx = dtls._RTCDtlsTransport__rx_packets
                assert producer.packets_received > 100
                assert aiortc_rx < producer.packets_received / 2, (
                    aiortc_rx,
                    producer.packets_received,
                )
            for sender in leg.senders.values():
                assert sender._RTCRtpSender__packet_count > 0  # the sender reports count it
        # forwarded counts reach /metrics (published on scrape)
        text = await _get(relay.base_url + "/metrics")
        assert (
            'relay_media_packets_forwarded_total{direction="family_to_prison",kind="video"}' in text
        )
    finally:
        await fam.close()
        await pri.close()


async def _get(url: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return await resp.text()


async def test_lean_load_legs_send_receive_and_answer_keyframe_requests(relay, tokens):
    from bench import clips

    video_frames, _ = clips.load(clips.ensure_video(clips.QUICK))
    audio_frames, _ = clips.load(clips.ensure_audio())
    plan = leanleg.VideoPlan(video_frames)
    audio = [f.data for f in audio_frames]
    lateness: list[float] = []
    pacer = leanleg.Pacer(lateness)
    legs = []
    try:
        for role in ("prison", "family"):
            counters = LegCounters(0)
            client = CountingClient(
                relay.base_url,
                tokens.add(f"lean-{role}", admission(71, role)),
                video=leanleg.SilentTrack("video"),
                audio=leanleg.SilentTrack("audio"),
                counters=counters,
            )
            await client.join()
            media = leanleg.LeanMedia(client.pc, counters, plan, audio)
            await media.start()
            pacer.legs.append(media)
            legs.append((client, media, counters))
        await asyncio.sleep(3.0)
        for _, media, counters in legs:
            frames, packets = media.sent()
            assert frames["video"] >= 60 and frames["audio"] >= 100
            rx_packets, rx_bytes, rx_frames = media.received()
            assert rx_frames >= 45, rx_frames
            assert rx_packets["audio"] >= 80
            assert rx_bytes["video"] > 100_000
            assert len(counters.frame_delays) >= 45
            # a sample of what arrived was authenticated and decrypted, and all of it passed
            assert media.raw.verified >= sum(rx_packets.values()) // 10 > 0
            assert media.raw.bad == 0 and media.raw.failed == 0
        live = relay.app[keys.REGISTRY].get(71)
        for leg in live.call.legs.values():
            for producer in leg.producers.values():
                assert producer.packets_received > 0
        # a keyframe request from the relay (a PLI over real SRTCP) reaches the sending leg,
        # which restarts its clip at a keyframe
        video = live.call.legs["family"].producers["video"]
        family = legs[1][1]
        asked = family.plis
        await asyncio.sleep(0.6)  # past the relay's keyframe-request throttle
        video.request_keyframe("test")
        for _ in range(100):
            if family.plis > asked:
                break
            await asyncio.sleep(0.02)
        assert family.plis > asked
        await asyncio.sleep(0.1)
        assert not family.keyframe_asked  # answered with the next frame
    finally:
        pacer.task.cancel()
        for client, _, _ in legs:
            await client.close()


def test_lean_nack_generator_keeps_aiortcs_missing_set():
    import random

    from aiortc.rtcrtpreceiver import NackGenerator

    rng = random.Random(7)
    steps = (
        (1, 1, 1, 1, 2, 3, 0, -2, 40, 300),  # in order, loss, late, big gaps
        (1, 1, 1, 1, 1, 1, 2, 5, -3, -60, -200, 127, 128, 129) * 8 + (0x7FFF, 0x8000, 0x8001),
    )
    for choices in steps:
        theirs, ours = NackGenerator(), aiortc_glue._rtpfast.NackGenerator()
        seq = 65000
        for _ in range(5000):
            seq = (seq + rng.choice(choices)) & 0xFFFF
            packet = RtpPacket(sequence_number=seq)
            assert theirs.add(packet) == ours.add(packet)
            assert theirs.missing == ours.missing and theirs.max_seq == ours.max_seq


async def test_idlecost_measures_connected_silent_calls():
    from bench import idlecost

    (point,) = await idlecost.run([1], 2.0)
    assert point["calls"] == 1
    assert point["connected_cpu_pct"] >= 0 and point["idle_cpu_pct"] >= 0
    assert point["per_call_cpu_pct"] < 10  # silent legs: timers and RTCP only


class _Socket:
    """Stands in for the leg's media socket (the system edge): keeps what would be sent,
    protected with a real SRTP session (``plain`` unprotects it with its peer)."""

    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.send_errors = 0
        self._out, self._into = _srtp_pair()

    def bind_sender(self, sender) -> None:
        sender.bind(self._out, *aiortc_glue._srtp_addresses(self._out, "srtp_protect"), -1, "", 0)

    def plain(self, datagram: bytes) -> bytes:
        return self._into.unprotect(datagram)

    def resend(self, datagram: bytes) -> None:
        self.rtp.append(datagram)

    def send_rtcp(self, plain: bytes) -> None:
        self.rtcp.append(plain)


def test_lean_leg_answers_pli_with_a_keyframe_and_nack_with_one_resend():
    import struct

    from protocol.media import EncodedClipFrame

    frames = [
        EncodedClipFrame(bytes([k]) * 200, k) for k in (True, False, False, False, True, False)
    ]
    media = leanleg.LeanMedia(None, LegCounters(0), leanleg.VideoPlan(frames), [b"\x01"])
    ctx = aiortc_glue.SendContext("video", 0x1111, 96, "1", 4, 2, {96: "video"})
    media.video = leanleg._Stream(ctx, 90000, 30)
    media.raw = sock = _Socket()
    sock.bind_sender(media.video.fast)
    for _ in range(3):
        media._send_video_frame(sock, media.video, 0.0)
    first_seq = struct.unpack_from("!H", sock.rtp[0], 2)[0]
    assert [p[1] & 0x7F for p in sock.rtp] == [96, 96, 96]
    assert struct.unpack_from("!I", sock.rtp[0], 8)[0] == 0x1111
    assert sock.rtp[2][1] & 0x80  # marker on each frame's last packet
    # a PLI: the next frame is the clip's latest keyframe at or before where it was
    pli = struct.pack("!BBHII", 0x81, 206, 2, 1, 0x1111)
    media._on_rtcp(pli)
    media._send_video_frame(sock, media.video, 0.0)
    assert media.plis == 1 and sock.plain(sock.rtp[-1]).endswith(b"\x01" * 200)
    # the header as aiortc reads it: MID and abs-send-time
    header = RtpPacket.parse(sock.plain(sock.rtp[0]), _map(abs_id=2, mid_id=4))
    assert header.extensions.mid == "1" and header.extensions.abs_send_time is not None
    # a NACK for the first packet, twice at once: resent once, byte for byte
    nack = struct.pack("!BBHIIHH", 0x81, 205, 3, 1, 0x1111, first_seq, 0)
    sent = len(sock.rtp)
    media._on_rtcp(nack)
    media._on_rtcp(nack)
    assert sock.rtp[sent:] == [sock.rtp[0]] and media.nacks_answered == 1


def test_lean_stream_statistics_count_as_aiortcs():
    import random

    from aiortc import rtcrtpreceiver
    from aiortc.rtcrtpreceiver import StreamStatistics

    class _Clock:
        now = 1000.0

        def time(self) -> float:
            return self.now

    clock = _Clock()
    real_time = rtcrtpreceiver.time
    rtcrtpreceiver.time = clock  # aiortc reads the clock itself; ours is handed the time
    try:
        rng = random.Random(11)
        theirs, ours = StreamStatistics(90000), aiortc_glue._rtpfast.StreamStats(90000)
        seq, ts = 65500, 0xFFFFF000
        for _ in range(4000):
            seq = (seq + rng.choice((1, 1, 1, 2, 0, -3, 900, 0x8000))) & 0xFFFF
            ts = (ts + rng.choice((0, 0, 3000, 3003, 6000))) & 0xFFFFFFFF
            clock.now += rng.choice((0.0, 0.001, 0.033, 0.2))
            theirs.add(RtpPacket(sequence_number=seq, timestamp=ts))
            ours.add_fields(seq, ts, clock.now)
            assert (ours.max_seq, ours.cycles, ours.packets_received, ours.jitter) == (
                theirs.max_seq,
                theirs.cycles,
                theirs.packets_received,
                theirs.jitter,
            )
            assert ours.packets_expected == theirs.packets_expected
    finally:
        rtcrtpreceiver.time = real_time


def test_lean_bitrate_estimator_gives_aiortcs_estimates():
    """Frames of several packets (one abs-send-time each), paced, with queueing that builds
    up and drains (so the detector over- and under-uses) and reordering. The reference is
    aiortc's estimator with libwebrtc's rule for cutting under overuse (TimeToReduceFurther:
    once the last change is an RTT old, or the rate fell under half the estimate) put in
    front of its rate control; aiortc alone cuts on every packet while it sees overuse."""
    import random

    from aiortc.rate import BandwidthUsage, RemoteBitrateEstimator

    rng = random.Random(5)
    theirs, ours = RemoteBitrateEstimator(), aiortc_glue.LeanRemoteBitrateEstimator()
    control = theirs.rate_control

    def time_to_reduce_further(control, now_ms, incoming):
        """libwebrtc's AimdRateControl::TimeToReduceFurther on aiortc's rate control."""
        low, high = aiortc_glue.REDUCE_INTERVAL_MS
        interval = min(max(control.rtt, low), high)
        if control.last_change_ms is None or now_ms - control.last_change_ms >= interval:
            return True
        if control.current_bitrate_initialized:
            return incoming < 0.5 * control.current_bitrate
        return False

    aiortc_update = control.update
    held = []

    def update(usage, incoming, now_ms):
        last = theirs.last_update_ms
        overuse_only = last is not None and now_ms - last <= control.feedback_interval()
        if overuse_only and usage is BandwidthUsage.OVERUSING:
            if incoming is None or not time_to_reduce_further(control, now_ms, incoming):
                held.append(now_ms)
                return None
        return aiortc_update(usage, incoming, now_ms)

    control.update = update
    send_ms, arrival, queue = 0.0, 50_000, 0.0
    results = []
    resets = 0
    for frame in range(3000):
        # paced frames, bursts, stalls, and now and then a gap longer than the rate window
        send_ms += rng.choice((33.3, 33.3, 33.4, 5.0, 100.0) * 40 + (1500.0,))
        queue = max(0.0, queue + rng.choice((-8.0, -2.0, 0.0, 0.0, 3.0, 9.0)))
        ast = int(send_ms * 262.144) & 0xFFFFFF  # 6.18 fixed point seconds, 24 bits
        for _ in range(rng.choice((1, 2, 5, 9))):
            arrival = max(arrival, int(send_ms + queue) + 50_000 + rng.choice((0, 0, 1, 2)))
            size = rng.randint(200, 1200)
            ssrc = rng.choice((1, 1, 1, 2))
            a = theirs.add(arrival, ast, size, ssrc)
            b = ours.add(arrival, ast, size, ssrc)
            assert a == b, frame
            # the C filter and detector are aiortc's to the last bit
            c = ours._c
            assert c.offset == theirs.estimator.offset(), frame
            assert c.threshold == theirs.detector.threshold, frame
            assert c.num_of_deltas == theirs.estimator.num_of_deltas(), frame
            assert c.hypothesis == theirs.detector.hypothesis.value, frame
            resets += theirs.incoming_bitrate.rate(arrival) is None
            results.append(a)
    assert sum(r is not None for r in results) > 50  # estimates were produced and compared
    assert len({r[0] for r in results if r}) > 5
    assert len(held) > 50  # and overuse was seen, and cuts held back as libwebrtc does
    assert {r.value for r in BandwidthUsage} == {0, 1, 2}
    assert resets > 0  # the rate window emptied, and the counter started over


def test_remb_is_throttled_as_libwebrtc_does():
    receiver = aiortc_glue.ForwardingReceiver.__new__(aiortc_glue.ForwardingReceiver)
    sent: list[int] = []

    def _send(packet):
        sent.append(aiortc_glue.unpack_remb_fci(packet.fci)[0])
        return asyncio.sleep(0)

    receiver._send_rtcp = _send
    receiver._RTCRtpReceiver__rtcp_ssrc = 1
    receiver._remb_sent_ms, receiver._remb_sent_bps = -(10**12), 0

    async def run() -> None:
        for now, bitrate in ((0, 1_000_000), (50, 1_000_000), (100, 990_000), (150, 900_000)):
            receiver._maybe_send_remb((bitrate, [5]), now)
        receiver._maybe_send_remb((950_000, [5]), 360)  # 210 ms after the last one sent
        await asyncio.sleep(0)

    asyncio.run(run())
    assert sent == [1_000_000, 900_000, 950_000]


async def test_pathcost_replays_a_leg_through_the_real_relay_path():
    """bench.pathcost hands real SRTP datagrams to a real relay's media handler: in full
    every one is forwarded (none refused by SRTP, none gated), cut short none is."""
    from bench import pathcost

    full, receiver = [await pathcost.measure_stage(s, 60) for s in ("full", "receiver")]
    assert full["packets"] == receiver["packets"] > 200
    assert full["forwarded"] == full["packets"]
    assert receiver["forwarded"] == 0
    assert 0 < full["us_p10"] <= full["us_median"]


def test_the_c_receiver_duties_count_nack_and_hand_over():
    """protocol._rtpfast.ReceiverDuties, per packet: statistics into aiortc's dict, a gap to
    on_nack, RTX to on_rtx (after its own statistics), the rest to the sink; nothing while
    the receiver is disabled; a due estimate to on_estimate."""
    from protocol import _rtpfast

    streams: dict = {}
    seen: dict[str, list] = {"sink": [], "rtx": [], "nack": [], "estimate": []}
    nack = _rtpfast.NackGenerator()
    estimator = _rtpfast.BitrateEstimator()
    duties = _rtpfast.ReceiverDuties(
        {96: (90000, False), 97: (90000, True)},
        streams,
        estimator,
        nack,
        lambda view: seen["sink"].append(view.sequence_number),
        lambda incoming, now: seen["estimate"].append((incoming, now)),
        lambda view: seen["rtx"].append(view.sequence_number),
        lambda view: seen["nack"].append(sorted(nack.missing)),
    )

    def view(seq: int, pt: int = 96, ssrc: int = 5) -> aiortc_glue.RtpView:
        return aiortc_glue.RtpView(b"p" * 100, pt, 0, seq, seq * 3000, ssrc, seq, None, 1e9, 0.0)

    for seq in (1, 2, 3, 6):
        duties.handle(view(seq))
    assert seen["sink"] == [1, 2, 3, 6] and seen["nack"] == [[4, 5]]
    # the rate control is due until it gives an estimate (this one never does): no rate yet
    # at one arrival time, so -1
    assert seen["estimate"] == [(-1, view(1).arrival_ms)] * 4
    duties.handle(view(4, pt=97, ssrc=9))
    assert seen["rtx"] == [4] and seen["sink"] == [1, 2, 3, 6]
    assert set(streams) == {5, 9} and type(streams[5]) is _rtpfast.StreamStats
    assert (streams[5].packets_received, streams[5].max_seq, streams[5].packets_lost) == (4, 6, 2)
    duties.handle(view(7, pt=111))  # not negotiated: ignored
    duties.enabled = 0
    duties.handle(view(8))
    assert seen["sink"] == [1, 2, 3, 6] and streams[5].packets_received == 4
    duties.enabled, duties.sink = 1, None
    duties.handle(view(9))  # no sink (yet): counted only
    assert streams[5].packets_received == 5


def test_a_failing_packet_handler_drops_that_packet_only(caplog):
    """What the C duties let out (a sink's, a callback's error) is counted and dropped at the
    socket handler: the next packet goes through."""

    class Ids:
        abs_send_time = audio_level = None

    class Fast:  # the socket's fast path, as _install_fast_path builds it
        ids = Ids()
        routed: list[int] = []

        def receive(self, data: bytes, abs_id, level_id):
            return aiortc_glue.RtpView(data, 96, 0, len(self.routed), 0, 1, None, None, 1.0, 0.0)

        def route(self, view) -> None:
            if view.payload == b"bug":
                raise RuntimeError("a sink's bug")
            self.routed.append(view.sequence_number)

    fast, before = Fast(), aiortc_glue.sink_errors
    for data in (b"ok", b"bug", b"ok"):
        aiortc_glue._fast_receive(fast, None, data, ("127.0.0.1", 9))
    assert aiortc_glue.sink_errors == before + 1 and fast.routed == [0, 1]
