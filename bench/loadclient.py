"""A load client process: many legs of the same side on one event loop, no decoding.

    python -m bench.loadclient --system relay|naive|janus --url URL --role family|prison
                               --first I --count N --video CLIP --audio CLIP

``--media lean`` (the default): each leg does its handshake through aiortc, then sends the
clip pre-packetised with its own SRTP sessions on the plain socket and counts what comes back
straight from the socket (``bench/leanleg.py``). ``--media aiortc``: the previous clients,
kept to validate against: the cached clips go through aiortc (``EncodedTrack``: packetize and
encrypt only) and arrivals are counted by aiortc's receive path (RTP packets, and video
frames by their marker bit), never reassembled or decoded. All legs share one loop either
way: no thread per leg, one pacer.

Control is JSON lines: the process prints ``{"event": "ready", ...}`` once its legs are up,
then answers ``snap`` on stdin with ``{"event": "snap", ...}`` (counters since start) and
exits on ``stop``, on end of stdin (its parent died) or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench import clips, leanleg
from protocol.client import CallClient
from protocol.media import EncodedTrack

log = logging.getLogger("bench.loadclient")

JOIN_PARALLEL = 4


@dataclass
class LegCounters:
    """What one leg received: counted here for aiortc legs (``sink``); a lean leg counts in
    C (``LeanMedia.received``) and appends only its frame delays here."""

    call: int
    rx_packets: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    rx_bytes: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    rx_frames: int = 0
    error: str = ""

    # video frame delay relative to the stream's own timeline: arrival time minus RTP time
    # (both in seconds), unwrapped; its spread shows queueing anywhere on the path
    frame_delays: list[float] = field(default_factory=list)
    _ts_last: int | None = None
    _ts_wraps: int = 0

    def sink(self, kind: str):
        packets, nbytes = self.rx_packets, self.rx_bytes
        delays = self.frame_delays
        now = time.monotonic

        async def on_packet(packet: Any, arrival_ms: int) -> None:
            packets[kind] += 1
            nbytes[kind] += len(packet.payload)
            if kind == "video" and packet.marker:
                self.rx_frames += 1
                ts = packet.timestamp
                if (
                    self._ts_last is not None
                    and ts < self._ts_last
                    and self._ts_last - ts > 1 << 31
                ):
                    self._ts_wraps += 1
                self._ts_last = ts
                delays.append(now() - (ts + (self._ts_wraps << 32)) / 90000)

        return on_packet


class PacedTrack(EncodedTrack):
    """EncodedTrack that also records how late each frame left against its schedule."""

    def __init__(self, kind: str, clip: Any, rate: float, lateness: list[float]) -> None:
        super().__init__(kind, clip, rate)
        self._lateness = lateness

    async def recv(self) -> Any:
        packet = await super().recv()
        assert self._start is not None
        self._lateness.append(time.monotonic() - (self._start + (self.sent - 1) / self.rate))
        return packet


class LoopLag:
    """How late this process's event loop runs a timer: the load generator's own health."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, loop.time() - start - self.interval))


def _drain_ms(values: list[float]) -> list[float]:
    out = [round(v * 1000, 2) for v in values]
    values.clear()
    return out


class CountingClient(CallClient):
    """The reference client in ``receive="count"`` mode, also counting video frames."""

    def __init__(self, *args: Any, counters: LegCounters, **kwargs: Any) -> None:
        super().__init__(*args, receive="count", reconnect=False, **kwargs)
        self.counters = counters

    def _packet_sink(self, name: str, kind: str):  # noqa: D401 - CallClient hook
        return self.counters.sink(kind)

    @property
    def pc(self) -> Any:
        return self._pc


class Leg:
    """One side of one call, whatever system it talks to."""

    def __init__(self, call: int, video: Any, audio: Any) -> None:
        self.counters = LegCounters(call)
        self.video = video
        self.audio = audio
        self.pc: Any = None
        self.lean: leanleg.LeanMedia | None = None

    async def snapshot(self) -> dict[str, Any]:
        rtp = {"video": 0, "audio": 0}
        state = "none"
        tx_frames = {"video": self.video.sent, "audio": self.audio.sent}
        c = self.counters
        rx_packets, rx_bytes, rx_frames = dict(c.rx_packets), dict(c.rx_bytes), c.rx_frames
        if self.lean is not None:
            state = self.pc.connectionState
            tx_frames, rtp = self.lean.sent()
            rx_packets, rx_bytes, rx_frames = self.lean.received()  # counted in C
        elif self.pc is not None:
            state = self.pc.connectionState
            for sender in self.pc.getSenders():
                if sender.track is None:
                    continue
                with contextlib.suppress(Exception):
                    for stats in (await sender.getStats()).values():
                        if getattr(stats, "type", "") == "outbound-rtp":
                            rtp[sender.track.kind] += stats.packetsSent
        return {
            "call": c.call,
            "state": state,
            "error": c.error,
            "tx_frames": tx_frames,
            "tx_packets": rtp,
            "rx_packets": rx_packets,
            "rx_bytes": rx_bytes,
            "rx_frames": rx_frames,
            # delays since the previous snapshot, relative to their minimum (ms); the absolute
            # offset is meaningless (RTP clocks start anywhere), the spread is not
            "frame_delays_ms": _relative_ms(c.frame_delays),
        }


def _relative_ms(delays: list[float]) -> list[float]:
    if not delays:
        return []
    values = delays[:]
    delays.clear()
    low = min(values)
    return [round((d - low) * 1000, 2) for d in values]


async def run(args: argparse.Namespace) -> None:
    video_clip, video_meta = clips.load(args.video)
    audio_clip, _ = clips.load(args.audio)
    legs: list[Leg] = []
    closers: list[Any] = []
    lateness: list[float] = []
    lag = LoopLag()
    lean = args.media == "lean"
    pacer = leanleg.Pacer(lateness) if lean else None
    plan = leanleg.VideoPlan(video_clip) if lean else None
    audio_payloads = [f.data for f in audio_clip]
    emit("started", pid=os.getpid(), media=args.media)

    sem = asyncio.Semaphore(JOIN_PARALLEL)
    # Spread the legs' start over one keyframe period, so that their keyframes (bursts of
    # packets) fall at independent times, as real calls' do, rather than all at once.
    period = video_meta.get("keyframe_interval", 90) / video_meta.get("fps", args.fps)
    stagger = period if args.stagger is None else args.stagger

    starts: list[asyncio.Future[None]] = []

    async def start_lean(leg: Leg, pacer: leanleg.Pacer, plan: leanleg.VideoPlan) -> None:
        try:
            deadline = time.monotonic() + 120
            while leg.pc is None:
                if time.monotonic() > deadline or leg.counters.error:
                    raise ConnectionError("no peer connection")
                await asyncio.sleep(0.05)
            media = leanleg.LeanMedia(leg.pc, leg.counters, plan, audio_payloads)
            await media.start()
            leg.lean = media
            pacer.legs.append(media)
        except Exception as exc:
            leg.counters.error = (
                leg.counters.error or f"lean start: {type(exc).__name__}: {exc}"[:300]
            )

    async def start_leg(i: int) -> None:
        await asyncio.sleep(stagger * (i - args.first) / max(1, args.count))
        if lean:
            leg = Leg(i, leanleg.SilentTrack("video"), leanleg.SilentTrack("audio"))
        else:
            leg = Leg(
                i,
                PacedTrack("video", video_clip, args.fps, lateness),
                EncodedTrack("audio", audio_clip, 50),
            )
        legs.append(leg)
        async with sem:
            try:
                if args.system in ("relay", "naive"):
                    client = CountingClient(
                        args.url,
                        f"bench-{i}-{args.role}",
                        video=leg.video,
                        audio=leg.audio,
                        counters=leg.counters,
                    )
                    closers.append(client.close)
                    await client.join(timeout=30)
                    leg.pc = client.pc
                elif args.system == "janus":
                    from bench.janus import JanusLeg

                    jl = JanusLeg(args.url, i, args.role, leg)
                    closers.append(jl.close)
                    await jl.start()
                else:
                    raise SystemExit(f"unknown system {args.system}")
                if pacer is not None and plan is not None and not args.idle:
                    # in the background: a Janus callee has no connection until it is called
                    starts.append(asyncio.ensure_future(start_lean(leg, pacer, plan)))
            except Exception as exc:  # a failed leg is reported, not fatal to the others
                leg.counters.error = f"{type(exc).__name__}: {exc}"[:300]

    await asyncio.gather(*(start_leg(i) for i in range(args.first, args.first + args.count)))
    errors = [leg.counters.error for leg in legs if leg.counters.error]
    emit("ready", legs=len(legs), errors=errors)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    deadline = time.monotonic() + args.max_seconds
    try:
        while True:
            try:
                line = await asyncio.wait_for(
                    reader.readline(), max(0.1, deadline - time.monotonic())
                )
            except TimeoutError:
                log.warning("max seconds reached")
                break
            if not line:
                break
            cmd = line.decode().strip()
            if cmd == "snap":
                snaps = [await leg.snapshot() for leg in legs]
                emit(
                    "snap",
                    t=time.monotonic(),
                    wall=time.time(),
                    legs=snaps,
                    send_lateness_ms=_drain_ms(lateness),
                    loop_lag_ms=_drain_ms(lag.lags),
                )
            elif cmd == "stop":
                break
    finally:
        lag.task.cancel()
        for task in starts:
            task.cancel()
        if pacer is not None:
            pacer.task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(c() for c in closers), return_exceptions=True), 5
            )
        emit("stopped")


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.loadclient")
    p.add_argument("--system", required=True, choices=("relay", "naive", "janus"))
    p.add_argument("--url", required=True)
    p.add_argument("--role", required=True, choices=("family", "prison"))
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--video", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument(
        "--media",
        choices=("lean", "aiortc"),
        default="lean",
        help="lean: own RTP/SRTP after an aiortc handshake; aiortc: aiortc's stack",
    )
    p.add_argument(
        "--idle",
        action="store_true",
        help="lean legs connect and send no media (bench.idlecost: fixed costs)",
    )
    p.add_argument(
        "--stagger",
        type=float,
        default=None,
        help="spread leg starts over this many seconds (default: one keyframe period)",
    )
    p.add_argument("--max-seconds", type=float, default=900.0)
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="loadclient %(levelname)s %(name)s: %(message)s"
    )
    import uvloop

    uvloop.run(run(args))


if __name__ == "__main__":
    main()
