"""CPU of the identity work: per descriptor, and per leg at the default sampling.

    python -m bench.identity_cost [--repeats 20] [--json]

A real face (scikit-image's astronaut) is placed in 640x480 VP8-coded frames at several
sizes (vision/identity_eval.py's camera views); for each, the 5-point landmarks + ResNet
descriptor are timed in CPU seconds of the calling thread (dlib and onnxruntime, with one
intra-op thread, both run on it), after one warm-up. "Per leg" is that cost times the
descriptors a leg needs per second: one face per sample at
``VisionSettings.sample_interval_s`` when every sample is re-identified, and at the slower
steady rates the re-check policy uses between count changes and new tracks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from vision.decisions import counted_faces
from vision.detector import load_detector
from vision.identity import load_encoder
from vision.identity_eval import camera_variants
from vision.settings import VisionSettings

STEADY_INTERVALS_S = (1.0, 2.0, 5.0, 10.0)


def measure(repeats: int) -> dict[str, object]:
    from skimage import data

    settings = VisionSettings()
    detector = load_detector(settings)
    encoder = load_encoder()
    photo = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    face = max(detector.detect_batch([photo])[0], key=lambda f: f.height)
    by_size: dict[str, float] = {}
    for view in camera_variants(photo, face, seed=0):
        if view.light != "as_is":
            continue
        found = counted_faces(detector.detect_batch([view.image])[0], settings)
        if not found:
            continue
        seen = max(found, key=lambda f: f.height)
        encoder.descriptor(view.image, seen)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.thread_time()
            encoder.descriptor(view.image, seen)
            times.append(time.thread_time() - t0)
        by_size[f"{view.face_px}px"] = round(1000 * statistics.median(times), 2)
    per_descriptor_ms = statistics.fmean(by_size.values())
    per_leg = {
        f"every_{interval:g}s": round(100 * per_descriptor_ms / 1000 / interval, 2)
        for interval in (settings.sample_interval_s, *STEADY_INTERVALS_S)
    }
    return {
        "descriptor_cpu_ms_median_by_face_height": by_size,
        "descriptor_cpu_ms_mean": round(per_descriptor_ms, 2),
        "per_leg_one_face_percent_of_a_core": per_leg,
        "sample_interval_s": settings.sample_interval_s,
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.identity_cost", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = measure(args.repeats)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"descriptor CPU (median, ms) by face height: "
            f"{report['descriptor_cpu_ms_median_by_face_height']}"
        )
        print(f"per leg, one face, % of a core: {report['per_leg_one_face_percent_of_a_core']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
