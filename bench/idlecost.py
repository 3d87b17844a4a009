"""Fixed cost per call: the relay's CPU with N calls connected and no media flowing.

    python -m bench.idlecost --calls 1,8 [--seconds 10]

For each N: a fresh relay (``bench.relay_proc``), its CPU over a few idle seconds, then N
calls of lean legs (``bench.loadclient --idle``: a real ICE + DTLS handshake, then silence)
and its CPU over ``--seconds`` with them connected. What remains per call is timers, RTCP
(aiortc's reports in both directions), ICE consent checks and signalling keep-alives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import clips, measure
from bench.procs import PYTHON, Child
from bench.systems import RelaySystem

SETTLE_S = 3.0
IDLE_S = 3.0


async def measure_point(n: int, seconds: float, log_dir: Path) -> dict[str, Any]:
    system = RelaySystem(log_dir, max_seconds=120 + seconds + 4 * n, features=set(), calls=n)
    clients: list[Child] = []
    video, audio = clips.ensure_video(clips.QUICK), clips.ensure_audio()
    try:
        await system.start()
        await asyncio.sleep(0.5)
        a, t = measure.proc_tree_sample(system.pid), time.monotonic()
        await asyncio.sleep(IDLE_S)
        idle = 100 * (measure.proc_tree_sample(system.pid).cpu_s - a.cpu_s) / (time.monotonic() - t)
        for role in ("prison", "family"):
            child = Child(
                f"idle-{n}-{role}",
                [
                    PYTHON,
                    "-m",
                    "bench.loadclient",
                    "--system",
                    "relay",
                    "--url",
                    system.url,
                    "--role",
                    role,
                    "--count",
                    str(n),
                    "--video",
                    str(video),
                    "--audio",
                    str(audio),
                    "--idle",
                    "--stagger",
                    "0",
                    "--max-seconds",
                    str(60 + seconds + 4 * n),
                ],
                log_dir,
                stdin=True,
            )
            clients.append(child)
            await child.start()
        for child in clients:
            ready = await child.read_json(60 + 3 * n, want="ready")
            if ready["errors"]:
                raise RuntimeError(f"legs failed: {ready['errors'][:3]}")
        await asyncio.sleep(SETTLE_S)
        a, t = measure.proc_tree_sample(system.pid), time.monotonic()
        await asyncio.sleep(seconds)
        connected = (
            100 * (measure.proc_tree_sample(system.pid).cpu_s - a.cpu_s) / (time.monotonic() - t)
        )
        return {
            "calls": n,
            "idle_cpu_pct": round(idle, 2),
            "connected_cpu_pct": round(connected, 2),
            "per_call_cpu_pct": round((connected - idle) / n, 3),
        }
    finally:
        for child in clients:
            if child.alive():
                try:
                    await child.send("stop")
                except (ConnectionError, RuntimeError):
                    pass
        await asyncio.gather(*(c.stop(grace=5.0) for c in clients), return_exceptions=True)
        await system.stop()


async def run(calls: list[int], seconds: float) -> list[dict[str, Any]]:
    log_dir = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    return [await measure_point(n, seconds, log_dir) for n in calls]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.idlecost")
    p.add_argument("--calls", default="1,8", help="comma list of call counts")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per point")
    args = p.parse_args(argv)
    calls = [int(x) for x in args.calls.split(",") if x.strip()]
    import uvloop

    for point in uvloop.run(run(calls, args.seconds)):
        print(json.dumps(point), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
