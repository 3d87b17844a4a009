"""Fault and bad-input scenarios, shared by the reliability tests and ``python -m bench.faults``.

Each scenario runs against a live product (``bench.product.Product``: the whole relay on
127.0.0.1), is bounded in time and returns an :class:`Outcome`: what was tried, how many times,
what happened, and whether anything was lost. The tests assert on the numbers; the report
command prints them as a table.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import socket
import sqlite3
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
from prometheus_client import REGISTRY

from bench.impair import Impairment, TcpCutProxy, ice_connections, impair_peer_connection
from bench.small_clips import tone_clip, video_clip
from protocol import messages as m
from protocol.client import CallClient
from protocol.media import EncodedTrack
from relay import keys

VIDEO_STEP = 3000  # 90 kHz clock at 30 fps


@dataclass
class Outcome:
    name: str
    tried: str
    count: int
    outcome: str
    data_lost: str
    ok: bool
    details: dict[str, Any] = field(default_factory=dict)


# --- measuring -------------------------------------------------------------------------------


def metric_total(name: str) -> float:
    """Sum of a Prometheus metric's samples over all label values (0 when absent)."""
    total = 0.0
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


class FlowMonitor:
    """Samples a client's received packet counter every ``interval``: did it ever stall?"""

    def __init__(self, client: CallClient, stream: str = "video0", interval: float = 0.5) -> None:
        self.client = client
        self.stream = stream
        self.interval = interval
        self.deltas: list[int] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> FlowMonitor:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def _run(self) -> None:
        last = self.client.packets[self.stream]
        while True:
            await asyncio.sleep(self.interval)
            now = self.client.packets[self.stream]
            self.deltas.append(now - last)
            last = now

    async def stop(self) -> FlowMonitor:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self

    @property
    def stalls(self) -> int:
        return sum(1 for d in self.deltas if d == 0)

    @property
    def packets(self) -> int:
        return sum(self.deltas)

    def summary(self) -> str:
        return (f"{self.packets} packets in {len(self.deltas)} x {self.interval}s samples, "
                f"{self.stalls} stalled")


async def flowing(client: CallClient, stream: str = "video0", seconds: float = 1.0) -> int:
    before = client.packets[stream]
    await asyncio.sleep(seconds)
    return client.packets[stream] - before


def frame_quality(frames: list[Any], mime: str = "video/VP8") -> dict[str, Any]:
    """How watchable a received video stream was.

    ``frames`` are complete encoded frames (``protocol.frames.EncodedFrame``; the assembler drops
    incomplete ones). Expected frames are counted from the timestamps (one every 3000 ticks
    between the first and last seen); a frame is decodable when it is a keyframe or its
    predecessor was decodable, and the decodable ones are then really decoded."""
    by_ts: dict[int, Any] = {}
    for f in frames:
        by_ts.setdefault(f.timestamp, f)
    if not by_ts:
        return {"expected": 0, "complete": 0, "decodable": 0, "decoded": 0,
                "complete_fraction": 0.0, "decodable_fraction": 0.0}
    first = min(by_ts)
    offsets = sorted(((ts - first) & 0xFFFFFFFF, ts) for ts in by_ts)
    expected = offsets[-1][0] // VIDEO_STEP + 1
    decodable: list[Any] = []
    prev_ok: int | None = None
    for off, ts in offsets:
        frame = by_ts[ts]
        ok = frame.keyframe or (prev_ok is not None and off - prev_ok == VIDEO_STEP)
        if ok:
            decodable.append(frame)
            prev_ok = off
        else:
            prev_ok = None
    decoder = av.CodecContext.create("vp8" if mime.lower() == "video/vp8" else "h264", "r")
    decoded = 0
    for frame in decodable:
        try:
            decoded += len(decoder.decode(av.Packet(frame.data)))
        except av.error.FFmpegError:
            pass
    return {
        "expected": expected,
        "complete": len(by_ts),
        "decodable": len(decodable),
        "decoded": decoded,
        "complete_fraction": round(len(by_ts) / expected, 3),
        "decodable_fraction": round(decoded / expected, 3),
    }


def rtx_received(receiver: Any) -> int:
    """Retransmitted (RTX) packets an aiortc receiver got: its RTX SSRCs' packet counts."""
    streams = receiver._RTCRtpReceiver__remote_streams
    rtx = receiver._RTCRtpReceiver__rtx_ssrc
    return sum(s.packets_received for ssrc, s in streams.items() if ssrc in rtx)


def relay_media_ports(pc: Any) -> list[int]:
    """The local UDP ports of a relay-side peer connection's ICE sockets."""
    ports = []
    for conn in ice_connections(pc):
        for protocol in conn._protocols:
            ports.append(protocol.transport.get_extra_info("sockname")[1])
    return ports


def store_integrity(db_path: Any) -> tuple[str, bool]:
    """(``PRAGMA integrity_check`` result, audit chain intact) for a store file."""
    from relay.records.audit import verify

    conn = sqlite3.connect(db_path)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return check, verify(conn).ok
    finally:
        conn.close()


def clients_for(url: str, family_token: str, prison_token: str, receive: str = "count",
                keep: bool = False, prison_url: str = "") -> tuple[CallClient, CallClient]:
    fam = CallClient(url, family_token, receive=receive, keep_frames=keep,
                     video=EncodedTrack("video", video_clip(seed=1), 30),
                     audio=EncodedTrack("audio", tone_clip(440), 50))
    pri = CallClient(prison_url or url, prison_token, receive=receive, keep_frames=keep,
                     video=EncodedTrack("video", video_clip(seed=2), 30),
                     audio=EncodedTrack("audio", tone_clip(660), 50))
    return fam, pri


async def close_all(*clients: CallClient | None) -> None:
    for c in clients:
        if c is not None:
            with contextlib.suppress(Exception):
                await c.close()


# --- bad datagrams at the relay's media ports ------------------------------------------------


def _rtp(rng: random.Random) -> bytes:
    first = 0x80 | rng.choice([0, 0x10, 0x20, 0x0F])  # padding, extension, CSRC count
    header = struct.pack("!BBHII", first, rng.randrange(256), rng.randrange(65536),
                         rng.randrange(2**32), rng.randrange(2**32))
    return header + rng.randbytes(rng.randrange(0, 1200))


def _rtcp(rng: random.Random) -> bytes:
    pt = rng.choice([192, 200, 201, 202, 203, 204, 205, 206, 207, 208])
    words = rng.randrange(0, 64)
    return struct.pack("!BBH", 0x80 | rng.randrange(32), pt, words) + rng.randbytes(
        rng.choice([words * 4, rng.randrange(0, 300)]))


def _stun(rng: random.Random) -> bytes:
    mtype = rng.choice([0x0001, 0x0101, 0x0111, 0x0011, rng.randrange(0x4000)])
    body = b""
    for _ in range(rng.randrange(0, 6)):
        attr = rng.choice([0x0006, 0x0008, 0x8028, 0x0024, 0x8029, 0x802A, 0x0025,
                           rng.randrange(65536)])
        value = rng.randbytes(rng.randrange(0, 40))
        body += struct.pack("!HH", attr, len(value)) + value + b"\x00" * (-len(value) % 4)
    length = rng.choice([len(body), rng.randrange(65536)])
    return struct.pack("!HHI", mtype, length, 0x2112A442) + rng.randbytes(12) + body


def _dtls(rng: random.Random) -> bytes:
    content = rng.choice([20, 21, 22, 23, rng.randrange(20, 64)])
    version = rng.choice([b"\xfe\xfd", b"\xfe\xff", rng.randbytes(2)])
    epoch = rng.choice([0, 1, rng.randrange(65536)])
    body = rng.randbytes(rng.randrange(0, 300))
    if content == 21 and rng.random() < 0.5:
        body = bytes([rng.choice([1, 2]), rng.choice([0, 10, 20, 40, 80])])  # an alert
    length = rng.choice([len(body), rng.randrange(65536)])
    return (bytes([content]) + version + struct.pack("!H", epoch) + rng.randbytes(6)
            + struct.pack("!H", length) + body)


DATAGRAM_KINDS = {
    "empty": lambda rng: b"",
    "random": lambda rng: rng.randbytes(rng.randrange(1, 1400)),
    "rtp": _rtp,
    "rtcp": _rtcp,
    "stun": _stun,
    "dtls": _dtls,
}


async def media_garbage(product: Any, per_kind: int = 300, rate: float = 1000.0,
                        seed: int = 7) -> Outcome:
    """Bad datagrams of every kind at a live call's relay media ports (the sockets its real
    media arrives on) while it and another call keep flowing."""
    rng = random.Random(seed)
    b1, b2 = product.booking_now(), product.booking_now()
    fam, pri = await product.pair(b1)
    other_fam, other_pri = await product.pair(b2)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for c in (fam, pri, other_fam, other_pri):
            await c.wait_frames("video0", 10)
        live = product.app[keys.REGISTRY].get(b1)
        ports = [p for leg in live.call.legs.values() for p in relay_media_ports(leg.pc)]
        monitors = [FlowMonitor(c).start() for c in (fam, pri, other_pri)]
        sent: dict[str, int] = {}
        plan = [kind for kind in DATAGRAM_KINDS for _ in range(per_kind)]
        rng.shuffle(plan)
        for i, kind in enumerate(plan):
            data = DATAGRAM_KINDS[kind](rng)
            for port in ports:
                sock.sendto(data, ("127.0.0.1", port))
            sent[kind] = sent.get(kind, 0) + len(ports)
            if i % 20 == 19:
                await asyncio.sleep(20 / rate)
        await asyncio.sleep(1.0)
        for mon in monitors:
            await mon.stop()
        after = [await flowing(c, "video0", 1.0) for c in (fam, pri, other_pri)]
        stalls = sum(mon.stalls for mon in monitors)
        ok = stalls == 0 and all(a > 10 for a in after) and fam.state == "live"
        return Outcome(
            "bad datagrams at a live leg's media port",
            "empty, random, RTP, RTCP, STUN, DTLS datagrams at both relay ports of call 1",
            sum(sent.values()),
            f"call 1 both ways and call 2: {stalls} stalled 0.5 s samples; "
            f"video packets/s after: {after}",
            "none" if ok else "media stopped",
            ok,
            {"sent": sent, "ports": ports, "monitors": [mon.summary() for mon in monitors]},
        )
    finally:
        sock.close()
        await close_all(fam, pri, other_fam, other_pri)


# --- network faults --------------------------------------------------------------------------


async def lossy_leg(product: Any, loss: float = 0.05, delay_ms: float = 100.0,
                    seconds: float = 10.0, jitter_ms: float = 0.0) -> Outcome:
    """The family leg's network loses ``loss`` of datagrams each way and delays them: does the
    picture stay watchable both ways (NACK/RTX, keyframe requests)?"""
    b = product.booking_now()
    fam, pri = await product.pair(b, receive="encoded", keep=True)
    imp = Impairment(loss=loss, delay_ms=delay_ms, jitter_ms=jitter_ms, seed=3)
    try:
        wrapped = impair_peer_connection(fam._pc, imp)
        nacks0 = metric_total("relay_nacks_received_total")
        kf0 = metric_total("relay_keyframe_requests_total")
        await fam.wait_frames("video0", 10, timeout=20)
        await pri.wait_frames("video0", 10, timeout=20)
        await asyncio.sleep(1.0)
        start = {c: len(c.encoded["video0"]) for c in (fam, pri)}
        await asyncio.sleep(seconds)
        # frames still in flight (a retransmission is ~2 x delay away) get a moment to land
        end = {c: len(c.encoded["video0"]) for c in (fam, pri)}
        down = frame_quality(fam.encoded["video0"][start[fam]:end[fam]])
        up = frame_quality(pri.encoded["video0"][start[pri]:end[pri]])
        live = product.app[keys.REGISTRY].get(b)
        relay_rtx = sum(rtx_received(p.receiver) for p in live.call.legs["family"].producers.values())
        client_rtx = sum(rtx_received(t.receiver) for t in fam._pc.getTransceivers())
        nacks = metric_total("relay_nacks_received_total") - nacks0
        keyframes = metric_total("relay_keyframe_requests_total") - kf0
        ok = (wrapped > 0 and imp.dropped > 0 and fam.state == "live"
              and min(down["decodable_fraction"], up["decodable_fraction"]) >= 0.8)
        return Outcome(
            f"{loss:.0%} loss + {delay_ms:.0f} ms delay"
            + (f" ± {jitter_ms:.0f} ms jitter" if jitter_ms else "") + " on one leg",
            f"family leg's datagrams both ways for {seconds:.0f} s",
            imp.dropped,
            f"decodable frames: family->prison {up['decodable_fraction']:.0%}, "
            f"prison->family {down['decodable_fraction']:.0%}; "
            f"NACKed packets at relay {nacks:.0f}, RTX in {relay_rtx}+{client_rtx}, "
            f"keyframe requests {keyframes:.0f}",
            "frames not recovered by RTX are skipped to the next keyframe" if ok
            else "picture not watchable",
            ok,
            {"up": up, "down": down, "nacks": nacks, "relay_rtx": relay_rtx,
             "client_rtx": client_rtx, "keyframe_requests": keyframes,
             "dropped": imp.dropped, "passed": imp.passed},
        )
    finally:
        await close_all(fam, pri)


async def cut_and_rejoin(product: Any, cut_s: float = 20.0) -> Outcome:
    """The family's whole network (signalling TCP and media UDP) goes dead for ``cut_s``,
    inside the reconnect grace: the call comes back with its original end time."""
    assert product.config.reconnect_grace_s >= cut_s + 5, "needs a longer reconnect grace"
    b = product.booking_now(seconds=600)
    imp = Impairment()
    proxy = await TcpCutProxy(("127.0.0.1", product.server.port), imp).start()
    fam, pri = clients_for(f"http://127.0.0.1:{proxy.port}", await product.family_token(b),
                           await product.prison_token(b), prison_url=product.url)
    try:
        await fam.join()
        await pri.join()
        await fam.wait_state("live")
        await pri.wait_frames("video0", 10)
        await fam.wait_frames("video0", 10)
        ends_at = fam.joined["call"]["ends_at"]
        impair_peer_connection(fam._pc, imp)
        t0 = time.monotonic()
        imp.cut(cut_s)
        await asyncio.sleep(cut_s)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if (await flowing(fam, "video0", 0.5) > 5 and await flowing(pri, "video0", 0.5) > 5
                    and pri.state == "live"):
                break
        recovered_s = time.monotonic() - t0
        back = [await flowing(c, "video0", 1.0) for c in (fam, pri)]
        kinds = [r["kind"] for r in product.app[keys.AUDIT_LOG].for_booking(b)]
        same_end = fam.joined["call"]["ends_at"] == ends_at
        ok = all(x > 10 for x in back) and same_end and pri.state == "live"
        how = "rejoined (auto-rejoin)" if fam.joins > 1 else "ICE/DTLS kept (no rejoin)"
        return Outcome(
            f"{cut_s:.0f} s network cut on one leg",
            "family's signalling and media dead, inside a "
            f"{product.config.reconnect_grace_s:.0f} s grace",
            1,
            f"{how}; media both ways {recovered_s:.1f} s after the cut began; end time "
            f"{'unchanged' if same_end else 'CHANGED'}; audit: {', '.join(sorted(set(kinds)))}",
            "the cut's media only (nothing to recover live)" if ok else "call lost",
            ok,
            {"joins": fam.joins, "back": back, "kinds": kinds, "same_end": same_end,
             "cut_dropped": imp.cut_dropped, "tcp_connections": proxy.connections},
        )
    finally:
        await close_all(fam, pri)
        await proxy.close()


# --- bad signalling over a live WebSocket ----------------------------------------------------


def generated(strategy: Any, n: int, seed: int = 0) -> list[Any]:
    """``n`` examples from a hypothesis strategy, reproducibly, to replay against a live relay
    (hypothesis cannot drive an async fixture's server directly; a failing example is printed
    whole instead of shrunk)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    out: list[Any] = []

    @hseed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(x: Any) -> None:
        out.append(x)

    collect()
    return out


def _strategies() -> dict[str, Any]:
    from hypothesis import strategies as st

    text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=64)
    scalar = st.none() | st.booleans() | st.integers() | st.floats() | text
    value = st.recursive(scalar, lambda c: st.lists(c, max_size=4)
                         | st.dictionaries(text, c, max_size=4), max_leaves=12)
    odd_str = (text | st.sampled_from(["", "\x00", "\u202e\u0000", "🙂" * 3000, "A" * 5000,
                                       "x" * 70_000, "{{}}", "null"]))
    mtype = st.sampled_from(["join", "leave", "ping", "joined", "error", "JOIN", ""]) | text
    obj = st.fixed_dictionaries(
        {"type": mtype | value},
        optional={"v": st.sampled_from([1, 0, 2, "1", 1.0, True, None]) | value,
                  "token": odd_str | value, "sdp": odd_str | value,
                  "id": st.integers() | value, "extra": value},
    )
    join = st.fixed_dictionaries({"type": st.just("join"), "token": odd_str, "sdp": odd_str},
                                 optional={"v": st.just(1)})
    return {
        "join": join.map(json.dumps),
        "object": obj.map(lambda o: json.dumps(o, allow_nan=True)),
        "json": value.map(lambda o: json.dumps(o, allow_nan=True)),
        "text": text,
    }


FIXED_BAD_FRAMES = [
    "[" * 100_000 + "]" * 100_000,  # deep nesting: within 4x the limit, refused as too large
    "[" * 5000 + "]" * 5000,  # deep nesting under the size limit
    '{"type": "join", "token": "' + "t" * 4097 + '", "sdp": "v=0"}',
    '{"type": "ping", "id": 1e400}',
    '{"type": "ping", "id": 123456789012345678901234567890}',
    '{"type": "ping", "id": NaN}',
    '{"type": "ping", "type": "join"}',
    '{"\\ud800": 1, "type": "ping"}',
    "\ufeff{}",
]


async def _read_reply(ws: Any, timeout: float = 5.0) -> Any:
    return await asyncio.wait_for(ws.receive(), timeout)


def bad_reply(raw: Any, msg: Any) -> str | None:
    """Why a relay reply to a bad frame is wrong (None when it is a proper answer)."""
    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
        return None  # refused and closed with a reason
    if msg.type != aiohttp.WSMsgType.TEXT:
        return f"reply of type {msg.type}"
    try:
        data = json.loads(msg.data)
    except ValueError:
        return "reply is not JSON"
    if data.get("type") == "pong":
        return None
    if data.get("type") != "error":
        return f"unexpected reply {data.get('type')!r}"
    code, text = data.get("code", ""), data.get("message", "")
    if not code or code == m.E_INTERNAL or not code.replace("_", "").isalpha():
        return f"error code {code!r}"
    if "Traceback" in text or 'File "' in text:
        return "a traceback reached the client"
    return None


async def ws_fuzz(product: Any, per_kind: int = 60, seed: int = 1) -> Outcome:
    """Generated frames of every shape over live WebSockets, while a call flows."""
    frames: list[tuple[str, Any]] = [("fixed", f) for f in FIXED_BAD_FRAMES]
    for kind, strategy in _strategies().items():
        frames += [(kind, f) for f in generated(strategy, per_kind, seed)]
    frames += [("binary", bytes([i]) * i) for i in range(1, 6)]
    b = product.booking_now()
    fam, pri = await product.pair(b)
    problems: list[str] = []
    counts: dict[str, int] = {}
    replies: dict[str, int] = {}
    session = aiohttp.ClientSession()
    ws = None
    try:
        await pri.wait_frames("video0", 10)
        monitor = FlowMonitor(pri).start()
        for kind, raw in frames:
            if ws is None or ws.closed:
                ws = await session.ws_connect(product.url + "/ws", max_msg_size=0)
            counts[kind] = counts.get(kind, 0) + 1
            if isinstance(raw, bytes):
                await ws.send_bytes(raw)
            else:
                await ws.send_str(raw)
            try:
                msg = await _read_reply(ws)
            except TimeoutError:
                problems.append(f"no reply to {raw[:80]!r}")
                await ws.close()
                continue
            why = bad_reply(raw, msg)
            label = "closed" if msg.type != aiohttp.WSMsgType.TEXT else json.loads(msg.data).get(
                "code", json.loads(msg.data).get("type"))
            replies[label] = replies.get(label, 0) + 1
            if why:
                problems.append(f"{why}: {str(raw)[:80]!r}")
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("code") in (
                    m.E_RATE_LIMITED,):
                await ws.close()
        await asyncio.sleep(1.0)  # the other call is watched a little beyond the last frame
        await monitor.stop()
        async with session.get(product.url + "/healthz") as r:
            alive = r.status == 200
        ok = (not problems and alive and monitor.stalls == 0 and monitor.packets > 0
              and fam.state == "live")
        return Outcome(
            "bad signalling frames (generated)",
            "hypothesis-generated JSON objects, JSON values, unicode text; deep nesting, "
            "huge/odd fields, binary",
            sum(counts.values()),
            f"answers: {', '.join(f'{k} {v}' for k, v in sorted(replies.items()))}; "
            f"{len(problems)} bad answers; other call {monitor.summary()}",
            "none" if ok else "; ".join(problems[:3]) or "call stalled",
            ok,
            {"counts": counts, "replies": replies, "problems": problems},
        )
    finally:
        if ws is not None:
            await ws.close()
        await session.close()
        await close_all(fam, pri)


def _sdp_mutations() -> Any:
    from hypothesis import strategies as st

    junk = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                   max_size=40) | st.sampled_from(
        ["a=rtpmap:96 VP8/0", "m=video 0 UDP/TLS/RTP/SAVPF 300", "a=fingerprint:sha-256 ZZ",
         "a=candidate:1 1 UDP 1 127.0.0.1 0 typ host", "a=setup:holdconn", "a=mid:",
         "a=ssrc:-1 cname:x", "a=rtcp-fb:* nack", "c=IN IP4 999.1.1.1", "a=group:BUNDLE 7 8",
         "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "a=ice-ufrag:", "a=ice-pwd:",
         "a=extmap:99999 urn:x", "a=fmtp:96 apt=96", "a=sctp-port:-5", "v=1", "x" * 3000])
    op = st.tuples(st.sampled_from(["delete", "duplicate", "replace", "insert", "swap",
                                    "truncate", "tamper"]),
                   st.integers(0, 10_000), st.integers(0, 10_000), junk)
    return st.lists(op, min_size=1, max_size=4)


def mutate_sdp(sdp: str, ops: list[tuple[str, int, int, str]]) -> str:
    lines = sdp.split("\r\n")
    for op, i, j, junk in ops:
        if not lines:
            lines = [junk]
        i, j = i % len(lines), j % len(lines)
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "replace":
            lines[i] = junk
        elif op == "insert":
            lines.insert(i, junk)
        elif op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "truncate":
            lines[i] = lines[i][: j % (len(lines[i]) + 1)]
        elif op == "tamper":
            key, _, rest = lines[i].partition("=")
            words = rest.split(" ")
            words[j % len(words)] = junk
            lines[i] = key + "=" + " ".join(words)
    return "\r\n".join(lines)


async def real_offer() -> str:
    from protocol.aiortc_glue import new_peer_connection

    pc = new_peer_connection()
    try:
        pc.addTransceiver(EncodedTrack("audio", tone_clip(440), 50), direction="sendrecv")
        pc.addTransceiver(EncodedTrack("video", video_clip(seed=1), 30), direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


async def sdp_fuzz(product: Any, n: int = 40, seed: int = 2) -> Outcome:
    """Mutations of a real offer, joined with a valid token, while another call flows."""
    offer = await real_offer()
    mutations = generated(_sdp_mutations(), n, seed)
    b = product.booking_now()
    fam, pri = await product.pair(b)
    target = product.booking_now(seconds=600)
    token = await product.family_token(target)
    problems: list[str] = []
    replies: dict[str, int] = {}
    try:
        await pri.wait_frames("video0", 10)
        monitor = FlowMonitor(pri).start()
        async with aiohttp.ClientSession() as session:
            for ops in mutations:
                sdp = mutate_sdp(offer, ops)
                async with session.ws_connect(product.url + "/ws", max_msg_size=0) as ws:
                    await ws.send_str(m.make("join", token=token, sdp=sdp))
                    try:
                        msg = await _read_reply(ws, 15.0)
                        while (msg.type == aiohttp.WSMsgType.TEXT
                               and json.loads(msg.data)["type"] in ("state", "warning")):
                            msg = await _read_reply(ws, 15.0)
                    except TimeoutError:
                        problems.append(f"no reply to {ops!r}")
                        continue
                    why = None
                    if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "joined":
                        label = "joined"
                    else:
                        why = bad_reply(sdp, msg)
                        label = (str(json.loads(msg.data).get("code"))
                                 if msg.type == aiohttp.WSMsgType.TEXT else "closed")
                    replies[label] = replies.get(label, 0) + 1
                    if why:
                        problems.append(f"{why}: {ops!r}")
                # leaving by dropping the socket keeps the call in its grace for the next try
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        await monitor.stop()
        ok = (not problems and monitor.stalls == 0 and monitor.packets > 0
              and fam.state == "live")
        return Outcome(
            "mutated SDP offers (valid token)",
            "hypothesis-chosen line deletions, duplicates, swaps, truncations, junk fields",
            len(mutations),
            f"answers: {', '.join(f'{k} {v}' for k, v in sorted(replies.items()))}; "
            f"{len(problems)} bad answers; other call {monitor.summary()}",
            "none" if ok else "; ".join(problems[:3]) or "call stalled",
            ok,
            {"replies": replies, "problems": problems},
        )
    finally:
        await close_all(fam, pri)


# --- abusive clients -------------------------------------------------------------------------


async def _healthz_ms(url: str) -> float:
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as s, s.get(url + "/healthz") as r:
        assert r.status == 200
    return (time.monotonic() - t0) * 1000


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _raw_ws(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    return reader, writer


async def slow_clients(product: Any, slowloris: int = 20, seconds: float = 6.0,
                       pings: int = 20_000) -> Outcome:
    """Slowloris (a header byte a second), a WebSocket client that never reads while it sends
    thousands of pings, while a call flows; the relay keeps answering and forwarding."""
    b = product.booking_now()
    fam, pri = await product.pair(b)
    port = product.server.port
    writers: list[asyncio.StreamWriter] = []
    try:
        await pri.wait_frames("video0", 10)
        monitor = FlowMonitor(pri).start()
        baseline = await _healthz_ms(product.url)
        for _ in range(slowloris):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            writers.append(w)
        # the never-reading client: handshake, then pings, never a read
        _, deaf = await _raw_ws(port)
        writers.append(deaf)
        ping = _ws_frame(0x1, m.make("ping", id=2**31).encode())
        sent = 0
        header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        worst = 0.0
        t_end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < t_end:
            for w in writers[:slowloris]:
                w.write(header[i % len(header):i % len(header) + 1])
            i += 1
            burst = min(pings - sent, pings // int(seconds))
            if burst > 0:
                deaf.write(ping * burst)
                sent += burst
            worst = max(worst, await _healthz_ms(product.url))
            await asyncio.sleep(1.0)
        sessions = len(product.app[keys.SESSIONS])
        outbox = max((s._outbox.qsize() for s in product.app[keys.SESSIONS]), default=0)
        await asyncio.sleep(0.5)
        await monitor.stop()
        ok = monitor.stalls == 0 and worst < 1000 and monitor.packets > 0
        return Outcome(
            "slow and deaf clients",
            f"{slowloris} slowloris connections (a header byte a second) + one WebSocket "
            f"sending {sent} pings and never reading, for {seconds:.0f} s",
            slowloris + 1,
            f"/healthz {baseline:.0f} ms before, worst {worst:.0f} ms during; "
            f"deaf socket's queued replies at most {outbox}; other call {monitor.summary()}",
            "none" if ok else "relay slowed or media stalled",
            ok,
            {"worst_ms": worst, "sessions": sessions, "outbox": outbox, "pings": sent},
        )
    finally:
        for w in writers:
            w.close()
        await close_all(fam, pri)


async def oversized_input(product: Any) -> Outcome:
    """Oversized bodies, headers and frames: refused with a status or close code."""
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession() as s:
        async with s.post(product.url + "/api/v1/staff/login", data=b"x" * (5 * 1024 * 1024),
                          headers={"Content-Type": "application/json"}) as r:
            results["5 MB API body"] = r.status
        reader, writer = await asyncio.open_connection("127.0.0.1", product.server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        results["100 kB header"] = int(line.split()[1]) if line else "closed"
        writer.close()
        async with s.ws_connect(product.url + "/ws") as ws:
            await ws.send_str("x" * (100 * 1024))
            msg = await _read_reply(ws)
            results["100 kB frame"] = json.loads(msg.data)["code"] if msg.type == aiohttp.WSMsgType.TEXT else msg.type
            await ws.send_str("y" * (1024 * 1024))
            msg = await _read_reply(ws)
            results["1 MB frame"] = ws.close_code
    expect = {"5 MB API body": 413, "100 kB header": 400, "100 kB frame": m.E_TOO_LARGE,
              "1 MB frame": aiohttp.WSCloseCode.MESSAGE_TOO_BIG}
    ok = results == expect
    return Outcome(
        "oversized input", "5 MB API body, 100 kB HTTP header, 100 kB and 1 MB WebSocket frames",
        4, "; ".join(f"{k}: {v}" for k, v in results.items()), "none" if ok else "unexpected",
        ok, {"results": results},
    )


async def bad_token_flood(product: Any, tries: int = 40) -> Outcome:
    """Forged join tokens and visitor keys from one address: it is slowed down (rate_limited,
    429), another address is not, and the limited address's good token waits its minute."""
    limit = product.config.bad_token_limit_per_min
    b = product.booking_now()
    good = await product.family_token(b)
    codes: dict[str, int] = {}
    async with aiohttp.ClientSession() as s:
        for i in range(tries):
            async with s.ws_connect(product.url + "/ws") as ws:
                await ws.send_str(m.make("join", token=f"v1.forged{i}.sig", sdp="v=0"))
                msg = await _read_reply(ws)
                code = json.loads(msg.data)["code"]
                codes[code] = codes.get(code, 0) + 1
    http: dict[int, int] = {}
    retry_after = None
    # the booking API counts the same way (its own address here: 127.0.0.3)
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))) as s:
        for i in range(tries):
            async with s.get(product.url + "/api/v1/bookings",
                             headers={"Authorization": f"Bearer 1.wrong{i}"}) as r:
                http[r.status] = http.get(r.status, 0) + 1
                retry_after = r.headers.get("Retry-After", retry_after)
    # the limited address: even a good token waits
    same = CallClient(product.url, good, receive="count")
    try:
        await same.join()
        same_code = "joined"
    except Exception as exc:  # JoinError
        same_code = getattr(exc, "code", repr(exc))
    finally:
        await same.close(leave=False)
    # another address (127.0.0.2 -> 127.0.0.1, still loopback) is not limited
    other = CallClient(product.url, good, receive="count",
                       video=EncodedTrack("video", video_clip(seed=1), 30))
    other._session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
    try:
        await other.join()
        other_code = "joined"
    except Exception as exc:
        other_code = getattr(exc, "code", repr(exc))
    finally:
        await other.close()
    ok = (codes.get(m.E_RATE_LIMITED, 0) == tries - limit and http.get(429, 0) == tries - limit
          and http.get(401, 0) == limit
          and retry_after is not None and same_code == m.E_RATE_LIMITED and other_code == "joined")
    return Outcome(
        "bad token flood",
        f"{tries} forged join tokens from 127.0.0.1, {tries} wrong visitor keys from "
        f"127.0.0.3 (limit {limit}/min per address)",
        2 * tries,
        f"WebSocket: {codes}; API: {http} (Retry-After {retry_after} s); good token from "
        f"127.0.0.1: {same_code}; good token from 127.0.0.2: {other_code}",
        "none" if ok else "limiter not as designed",
        ok,
        {"ws": codes, "http": http, "same": same_code, "other": other_code},
    )


async def kill_and_restart(product: Any, live_s: float = 3.0) -> Outcome:
    """kill -9 the real relay process mid-call, start it again on the same port and data dir.

    Uses its own ``python -m relay`` (the in-process ``product`` cannot be killed), with the
    seeded demo call; the clients rejoin by themselves with their tokens."""
    import signal
    import tempfile
    from pathlib import Path

    from bench.relay_spawn import start_relay

    data = Path(tempfile.mkdtemp(prefix="restart-"))
    env = {"RELAY_VISION_ENABLED": "0", "RELAY_RECONNECT_GRACE_S": "30"}
    first = await start_relay(data, env=env)
    fam = pri = None
    second = None
    try:
        fam, pri = clients_for(first.url, first.family_token, await first.prison_token())
        await fam.join()
        await pri.join()
        await fam.wait_state("live")
        await pri.wait_frames("video0", 10)
        await asyncio.sleep(live_s)
        ends_at = fam.joined["call"]["ends_at"]
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        killed = time.monotonic()
        port = int(first.url.rsplit(":", 1)[1])
        second = await start_relay(data, port=port, env={**env, "RELAY_SEED_DEMO": "0"})
        deadline = time.monotonic() + 30
        while (fam.joins < 2 or pri.joins < 2) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        rejoined = fam.joins >= 2 and pri.joins >= 2
        back_s = round(time.monotonic() - killed, 1)
        both_ways = rejoined and await flowing(fam) > 10 and await flowing(pri) > 10
        same_end = rejoined and fam.joined["call"]["ends_at"] == ends_at
    finally:
        await close_all(fam, pri)
        for relay in (first, second):
            if relay is not None:
                relay.stop()
    db = data / "relay.sqlite"
    check, chain_ok = store_integrity(db)
    conn = sqlite3.connect(db)
    try:
        kinds = [k for (k,) in conn.execute("SELECT kind FROM audit ORDER BY id")]
        segments = conn.execute("SELECT status FROM recordings ORDER BY id").fetchall()
    finally:
        conn.close()
    restart_audited = "relay_restart" in kinds
    ok = bool(rejoined and both_ways and same_end and restart_audited and check == "ok" and chain_ok)
    return Outcome(
        "kill -9 and restart mid-call",
        "SIGKILL to python -m relay during a live call, restart on the same port and data dir",
        1,
        f"both legs rejoined by themselves {back_s} s after the kill; media both ways: "
        f"{both_ways}; end time unchanged: {same_end}; audit shows relay_restart: "
        f"{restart_audited}; recording segments: {[s for (s,) in segments]}",
        f"the seconds between the last recording flush and the kill; restarted store integrity "
        f"{check}, audit chain {'intact' if chain_ok else 'BROKEN'}",
        ok,
    )


async def endpoint_shapes(product: Any) -> Outcome:
    """Issue 21's shapes (bench/shapes.py) at every operation of the route table and at the
    signalling socket: only 4xx and error frames, no server error, nothing in the log."""
    from bench import shapes
    from relay.web.routes import OPERATIONS

    found = await shapes.fire(product)
    count = sum(found["statuses"].values()) + len(found["ws_codes"]) + 1
    ok = not found["wrong"] and not found["logged_errors"] and found["server_errors"] == 0
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(found["statuses"].items()))
    return Outcome(
        "endpoint shapes",
        f"every operation ({len(OPERATIONS)}): a lone surrogate in each path, query and body "
        "field and as a key, JSON 1000 deep, a 2 MB body, a 10 kB header, broken bytes in "
        "Authorization, Cookie, Origin and Host; the same at /ws",
        count,
        f"{found['server_errors']} server errors, {len(found['logged_errors'])} errors logged;"
        f" statuses {statuses}; /ws codes {sorted(set(found['ws_codes']))}"
        + (f"; WRONG: {found['wrong'][:3]}" if found["wrong"] else ""),
        "none" if ok else "unexpected",
        ok,
        found,
    )
