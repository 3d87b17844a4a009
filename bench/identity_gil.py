"""Does a descriptor stall the relay's event loop? (dlib's descriptor holds the GIL.)

    python -m bench.identity_gil [--descriptors 10] [--json]

Runs ``--descriptors`` descriptors of scikit-image's astronaut on :class:`IdentityWorker`'s
thread, as the in-call re-checks do, while the event loop wakes every millisecond; reports
the descriptors' CPU and wall time and the loop's longest late wake-up and how many wakes it
got; then the same with a C function that releases the GIL (sha256 of 64 MiB), for
comparison on the same machine at the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from collections.abc import Callable

import numpy as np

from vision.detector import load_detector
from vision.identity import FaceEncoder, IdentityWorker
from vision.settings import VisionSettings


async def measure(n: int) -> dict[str, float]:
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    face = max(load_detector(VisionSettings()).detect_batch([photo])[0], key=lambda f: f.height)
    worker = IdentityWorker()
    cpu = 0.0

    def describe(encoder: FaceEncoder) -> None:
        nonlocal cpu
        c0 = time.thread_time()
        encoder.descriptor(photo, face)
        cpu += time.thread_time() - c0

    blob = bytes(64 << 20)

    def control(encoder: FaceEncoder) -> None:
        hashlib.sha256(blob)  # C work that releases the GIL, for comparison

    try:
        await worker.run(describe)  # loads the models; not measured
        cpu = 0.0
        wall, wakes, worst = await _watch_loop(worker, describe, n)
        c_wall, c_wakes, c_worst = await _watch_loop(worker, control, n)
    finally:
        worker.close()
    return {
        "descriptors": n,
        "descriptor_cpu_ms": round(1000 * cpu / n, 1),
        "descriptor_wall_ms": round(1000 * wall / n, 1),
        "loop_wakes_per_s": round(wakes / wall, 1),
        "loop_worst_late_ms": round(1000 * worst, 1),
        "control_sha256_wall_ms": round(1000 * c_wall / n, 1),
        "control_loop_wakes_per_s": round(c_wakes / c_wall, 1),
        "control_loop_worst_late_ms": round(1000 * c_worst, 1),
    }


async def _watch_loop(
    worker: IdentityWorker, fn: Callable[[FaceEncoder], None], n: int
) -> tuple[float, int, float]:
    """Run ``fn`` n times on the worker while the loop wakes every ms: (wall, wakes, worst)."""
    wakes, worst = 0, 0.0
    t0 = time.perf_counter()
    job = asyncio.ensure_future(asyncio.gather(*(worker.run(fn) for _ in range(n))))
    while not job.done():
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        worst = max(worst, time.perf_counter() - before - 0.001)
        wakes += 1
    await job
    return time.perf_counter() - t0, wakes, worst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.identity_gil")
    ap.add_argument("--descriptors", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = asyncio.run(measure(args.descriptors))
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
