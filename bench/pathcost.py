"""The relay's CPU per packet on its lean path, warm and stage by stage, in one process.

    python -m bench.pathcost [--frames 3000] [--stages socket,srtp,parse,receiver,consumer,full]

A real relay application (``relay.app.build_app``, bench admissions, no vision, no recording)
and one call of lean legs (``bench.leanleg``: a real ICE + DTLS handshake on loopback). Then
the family leg's pacer stops, the leg protects a clip's worth of packets (video and audio, in
order, its own SRTP context) without sending them, and they are handed straight to the relay's
media-socket handler (what uvloop calls per datagram), a few at a time, timed with the thread's
CPU clock; between batches the loop runs, so the prison leg reads what was forwarded.

Each stage cuts the path short after one more step, so the differences are what each step
costs warm (``bench`` measures the relay cold, one wake-up per packet or burst, on a machine
shared with the load; this is the floor under that figure):

* ``socket``: the handler call alone; ``srtp``: + unprotect and header fields (one C call,
  protocol/_rtpfast.c); ``parse``: + routing; ``receiver``: + aiortc's receiver duties (REMB
  estimate, RR statistics, NACK bookkeeping); ``consumer``: + producer and consumer (rewrite,
  keyframe gate, counters) without the sender; ``full``: + header pack, SRTP protect, ``sendto``.

Thread CPU per batch is summed (``mean``) and its distribution over batches kept: ``p10`` is
the least disturbed figure on a busy machine, the one to compare between versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import clips, leanleg
from bench.loadclient import CountingClient, LegCounters
from bench.relay_proc import BenchAdmit, token

STAGES = ("socket", "srtp", "parse", "receiver", "consumer", "full")
BATCH = 4
"""Datagrams handed over between two turns of the loop (about one video frame)."""
SETTLE_S = 2.5


def _cut(stage: str, live: Any) -> None:
    """Short-circuit the relay's path after ``stage`` (instance attributes: this call only)."""
    family = live.call.legs["family"]
    if stage == "srtp":
        for producer in family.producers.values():
            producer.receiver.transport._relay_fast_path.route = lambda view: None
    elif stage == "parse":
        for producer in family.producers.values():
            producer.receiver._handle_view = lambda view: None
    elif stage == "receiver":
        for producer in family.producers.values():
            producer.receiver._view_sink = lambda view: None
    elif stage == "consumer":
        for sender in live.call.legs["prison"].senders.values():
            sender.forward_view = lambda view, seq, ts: len(view.payload)


async def measure_stage(stage: str, frames: int) -> dict[str, Any]:
    """One fresh relay and call, one stage: CPU per replayed packet in µs."""
    from aiohttp.test_utils import TestServer

    from relay import keys
    from relay.app import build_app
    from relay.config import Config

    tmp = Path(tempfile.mkdtemp(prefix="pathcost-"))
    config = Config(
        data_dir=tmp,
        recordings_dir=tmp / "recordings",
        seed_demo=False,
        vision_enabled=False,
        recording_enabled=False,
    )
    server = TestServer(build_app(config, admit=BenchAdmit(1)), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    video_frames, _ = clips.load(clips.ensure_video(clips.QUICK))
    audio_frames, _ = clips.load(clips.ensure_audio())
    plan = leanleg.VideoPlan(video_frames)
    audio = [f.data for f in audio_frames]
    pacer = leanleg.Pacer([])
    legs: dict[str, tuple[CountingClient, leanleg.LeanMedia]] = {}
    try:
        for role in ("prison", "family"):
            client = CountingClient(
                url,
                token(0, role),
                video=leanleg.SilentTrack("video"),
                audio=leanleg.SilentTrack("audio"),
                counters=LegCounters(0),
            )
            await client.join()
            media = leanleg.LeanMedia(client.pc, client.counters, plan, audio)
            await media.start()
            pacer.legs.append(media)
            legs[role] = (client, media)
        await asyncio.sleep(SETTLE_S)  # keyframe gate passed, consumers anchored
        pacer.task.cancel()
        await asyncio.sleep(0.2)
        _, media = legs["family"]
        raw = media.raw
        assert raw is not None and media.video is not None and media.audio is not None
        datagrams: list[bytes] = []
        raw._send = datagrams.append  # type: ignore[method-assign]
        wall = time.time()
        for f in range(frames):
            wall += 1 / 30
            media._send_video_frame(raw, media.video, wall)
            if f % 3 != 2:  # 50 audio packets a second against 30 frames
                media._send(raw, media.audio, audio[f % len(audio)], False, wall)
        live = server.app[keys.REGISTRY].get(1)
        dtls = live.call.legs["family"].producers["video"].receiver.transport
        pair = dtls.transport._connection._nominated[1]
        handle = pair.protocol.datagram_received
        addr = pair.remote_addr
        consumers = live.call.legs["prison"].consumers
        sent_before = sum(c.packets_sent for c in consumers)
        _cut(stage, live)
        if stage == "socket":
            handle = _ignore
        clock = time.thread_time_ns
        per_packet: list[float] = []
        total = 0
        for i in range(0, len(datagrams), BATCH):
            batch = datagrams[i : i + BATCH]
            t = clock()
            for data in batch:
                handle(data, addr)
            spent = clock() - t
            total += spent
            per_packet.append(spent / len(batch) / 1000)
            await asyncio.sleep(0)
        per_packet.sort()
        forwarded = sum(c.packets_sent for c in consumers) - sent_before
        return {
            "stage": stage,
            "packets": len(datagrams),
            "forwarded": forwarded,
            "us_mean": round(total / len(datagrams) / 1000, 2),
            "us_p10": round(per_packet[len(per_packet) // 10], 2),
            "us_median": round(per_packet[len(per_packet) // 2], 2),
        }
    finally:
        pacer.task.cancel()
        for client, _ in legs.values():
            await client.close()
        await server.close()


def _ignore(data: bytes, addr: tuple) -> None:
    return None


async def run(stages: list[str], frames: int) -> list[dict[str, Any]]:
    return [await measure_stage(stage, frames) for stage in stages]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.pathcost", description=__doc__)
    p.add_argument("--frames", type=int, default=3000, help="video frames replayed per stage")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--json", help="write the rows here too")
    args = p.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    for s in stages:
        if s not in STAGES:
            p.error(f"unknown stage {s!r} (one of {', '.join(STAGES)})")
    import uvloop

    uvloop.install()
    rows = asyncio.run(run(stages, args.frames))
    print("stage      packets  forwarded  us/pkt mean  p10  median")
    for r in rows:
        print(
            f"{r['stage']:9s} {r['packets']:8d} {r['forwarded']:10d} {r['us_mean']:12.2f}"
            f" {r['us_p10']:6.2f} {r['us_median']:7.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
