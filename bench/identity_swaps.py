"""How soon does the call pause when someone else takes the enrolled visitor's place?

    python -m bench.identity_swaps [--swaps 6] [--json]

Real relay, real aiortc clients, real VP8: the family side's clip shows the enrolled
astronaut for ``HOLD_S`` seconds, then the cameraman in the same place (same count, so the
count rule sees nothing) for ``HOLD_S`` seconds, and loops. For every swap to the stranger it
measures the time from the first stranger frame leaving the client to the family client
receiving the ``identity:family`` pause; the enrolled face's return lifts it (after
``resume_after_clear_s``). Prints each latency, the p50 and p95 (the issue's target: 2 s p95)
and each swap's trigger path: the checks that led to the pause (see :func:`trigger_path`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.identity_set import jpeg
from bench.product import start_product
from bench.vision_clips import (
    FPS,
    HEIGHT,
    WIDTH,
    add_noise,
    encode_frames,
    face_patches,
    paste_face,
)
from protocol.media import EncodedClipFrame, EncodedTrack
from relay import keys
from vision.service import DetectorService

HOLD_S = 8.0


def swap_clip() -> list[EncodedClipFrame]:
    patches = face_patches()  # astronaut, astronaut mirrored, cameraman, cameraman mirrored
    rng = np.random.default_rng(5)
    images = []
    for i in range(round(2 * HOLD_S * FPS)):
        t = i / FPS
        canvas = np.full((HEIGHT, WIDTH, 3), 120, np.uint8)
        patch = patches[0] if t < HOLD_S else patches[2]
        paste_face(canvas, patch, 250 + round(8 * np.sin(t)), 140, 130)
        images.append(add_noise(canvas, rng))
    return [EncodedClipFrame(f.data, f.keyframe) for f in encode_frames(images, gop=30)]


def trigger_path(service: DetectorService, swapped: float, paused: float) -> str:
    """The family leg's checks from the swap to the pause: why each ran, what it saw, when
    its sample was taken and when it finished (seconds after the swap), e.g.
    ``look:X@0.08-0.45 confirm:X@0.46-0.90``."""
    steps = []
    for key, sampler in service.legs.items():
        if key.endswith(":family") and sampler.identity is not None:
            for r in sampler.identity.history:
                if swapped - 0.05 <= r.done <= paused:
                    seen = "X" if r.stranger else "ok"
                    steps.append(
                        f"{r.reason or '?'}:{seen}@{r.at - swapped:.2f}-{r.done - swapped:.2f}"
                    )
    return " ".join(steps)


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def measure(swaps: int) -> dict[str, object]:
    from skimage import data

    with tempfile.TemporaryDirectory() as tmp:
        product = await start_product(Path(tmp), vision_enabled=True, resume_after_clear_s=1.0)
        try:
            w = product.world
            photo = jpeg(np.ascontiguousarray(data.astronaut()[:, :, ::-1]))
            await product.app[keys.FACE_ENROLMENTS].enrol_face(
                "visitor", w.vid("mum"), photo, actor="bench"
            )
            b = product.booking_now(seconds=3600)
            track = EncodedTrack("video", swap_clip(), FPS)
            period = round(2 * HOLD_S * FPS)
            fam, pri = await product.pair(b, family_video=track)
            latencies: list[float] = []
            paths: list[str] = []
            missed = 0
            service = product.app[keys.DETECTOR]
            try:
                await fam.wait_state("live", timeout=60)
                seen = len(fam.messages)
                loop = track.sent // period
                while len(latencies) + missed < swaps:
                    swap_at = (loop * period) + period // 2
                    if track.sent > swap_at:  # this cycle's swap already went out
                        loop += 1
                        continue
                    while track.sent < swap_at:
                        await asyncio.sleep(0.005)
                    swapped = time.monotonic()
                    seen = len(fam.messages)
                    deadline = swapped + HOLD_S
                    paused = None
                    while paused is None and time.monotonic() < deadline:
                        for msg in fam.messages[seen:]:
                            if msg["type"] == "state" and "identity:family" in msg.get(
                                "pause_reasons", ()
                            ):
                                paused = time.monotonic()
                                break
                        await asyncio.sleep(0.01)
                    if paused is None:
                        missed += 1
                    else:
                        latencies.append(round(paused - swapped, 2))
                        paths.append(trigger_path(service, swapped, paused))
                    # the enrolled face comes back HOLD_S after the swap and lifts the pause
                    # well before the next swap (one cycle later)
                    loop += 1
            finally:
                await fam.close()
                await pri.close()
            return {
                "swaps": swaps,
                "latencies_s": latencies,
                "trigger_paths": paths,
                "missed": missed,
                "p50_s": p(latencies, 0.5) if latencies else None,
                "p95_s": p(latencies, 0.95) if latencies else None,
                "identity_checks": service.identity_checks,
                "identity_cpu_s": round(service.identity_cpu_s, 2),
            }
        finally:
            await product.server.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.identity_swaps")
    ap.add_argument("--swaps", type=int, default=6)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = asyncio.run(measure(args.swaps))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
