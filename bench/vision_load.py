"""Vision alone under the load of many legs: the relay process's share against the detector
processes', memory per leg, and whether the checks keep up.

    python -m bench.vision_load [--legs 32] [--seconds 20] [--processes 1] [--json out.json]

One :class:`vision.service.DetectorService` as the relay builds it (keyframe mode, the
shipped settings) on one event loop, offered the bench's own load clip (VGA VP8 at 1 Mbit/s,
bench/clips.py) on every leg at 30 fps in real time. A keyframe request is answered as the
bench's lean load legs answer it: the next frame is the clip's last keyframe. Reported: CPU
seconds per second (% of a core) per leg of this process and of the detector processes
(``/proc``: all threads), the growth in resident memory per leg of each, the checks per leg
per second and the decision latency, and vision/health.py's verdict over the last window.
Without the media path, so the figures are vision's own: the full relay is ``python -m bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import clips, measure
from vision.service import DetectorService, percentile
from vision.settings import VisionSettings

FPS = 30
HEALTH_WINDOW_S = 10.0


async def run(legs: int, seconds: float, processes: int, approved: int) -> dict[str, Any]:
    clip, meta = clips.load(clips.ensure_video(clips.FULL))
    last_key = [0] * len(clip)
    for i, f in enumerate(clip):
        last_key[i] = i if f.keyframe else last_key[i - 1]
    config = VisionSettings(vision_worker_processes=processes)
    service = DetectorService(config, keyframes_only=config.keyframes_only)
    await service.start()
    me = os.getpid()
    try:
        await asyncio.sleep(1.0)
        pids = [w.pid for w in service.workers if w.pid is not None]
        rss0 = {p: measure.proc_sample(p).rss_bytes for p in [me, *pids]}
        samplers = [
            service.open_leg(
                f"call{i // 2}/{('family', 'prison')[i % 2]}", approved, lambda e: None
            )
            for i in range(legs)
        ]
        warm = min(5.0, seconds / 3)
        start = time.monotonic()
        cpu0: dict[int, float] = {}
        n = 0
        while (elapsed := time.monotonic() - start) < seconds + warm:
            if not cpu0 and elapsed >= warm:
                cpu0 = {p: measure.proc_sample(p).cpu_s for p in [me, *pids]}
                t_cpu0 = time.monotonic()
                detected0 = service.stats.samples_detected
                latencies0 = len(service.stats.decision_latency_ms)
            now = elapsed
            for k, s in enumerate(samplers):
                i = (n + 7 * k) % len(clip)  # the legs' keyframes fall at different times
                frame = clip[i]
                if s.keyframe_wanted(now):
                    frame = clip[last_key[i]]
                    s.offer_frame("VP8", frame.data, True, now)
                else:
                    s.offer_frame("VP8", frame.data, frame.keyframe, now)
            n += 1
            await asyncio.sleep(max(0.0, start + n / FPS - time.monotonic()))
        span = time.monotonic() - t_cpu0
        cpu = {p: measure.proc_sample(p).cpu_s - cpu0[p] for p in cpu0}
        rss = {p: measure.proc_sample(p).rss_bytes for p in rss0}
        health = service.health(HEALTH_WINDOW_S, 0.9, 1.5)
        lat = list(service.stats.decision_latency_ms)[latencies0:]
        detected = service.stats.samples_detected - detected0
    finally:
        await service.stop()
    per_leg = 100 / span / legs
    workers_cpu = sum(v for p, v in cpu.items() if p != me)
    return {
        "legs": legs,
        "processes": processes,
        "approved": approved,
        "seconds": round(span, 1),
        "clip": {k: meta[k] for k in ("width", "height", "keyframe_interval", "measured_bitrate")},
        "load_average": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "relay_process_cpu_pct_per_leg": round(cpu[me] * per_leg, 3),
        "detector_processes_cpu_pct_per_leg": round(workers_cpu * per_leg, 3),
        "total_cpu_pct_per_leg": round((cpu[me] + workers_cpu) * per_leg, 3),
        "relay_process_mb_per_leg": round((rss[me] - rss0[me]) / legs / 2**20, 2),
        "detector_processes_mb_per_leg": round(
            sum(rss[p] - rss0[p] for p in rss if p != me) / legs / 2**20, 2
        ),
        "detector_processes_rss_mb": round(sum(rss[p] for p in rss if p != me) / 2**20, 1),
        "checks_per_leg_per_s": round(detected / span / legs, 3),
        "decision_latency_ms_p95": round(percentile(lat, 0.95), 1) if lat else None,
        "legs_behind": len(health.behind),
        "legs_judged": len(health.judged),
        "healthy": bool(health.judged) and not health.behind,
        "samples_dropped": service.stats.samples_dropped,
        "decode_errors": service.stats.decode_errors,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.vision_load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--legs", type=int, default=32)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument(
        "--processes",
        type=int,
        default=VisionSettings().vision_worker_processes,
        help="detector processes (0: threads of this process, as before)",
    )
    p.add_argument(
        "--approved",
        type=int,
        default=2,
        help="approved faces per leg (the clip shows two: 2 is the steady state, "
        "1 keeps every leg over the limit, bursting)",
    )
    p.add_argument("--json", dest="json_path")
    args = p.parse_args(argv)
    result = asyncio.run(run(args.legs, args.seconds, args.processes, args.approved))
    for k, v in result.items():
        print(f"{k:<40} {json.dumps(v)}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
