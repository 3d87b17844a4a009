"""The detector's trade-off table: recall per face-size band and CPU per inference, by input
size, precision (FP32, four INT8 variants) and onnxruntime setting.

    python -m bench.detector_sweep [--quick] [--json out.json]

Scored on the evaluation's own sets (bench/vision_clips.py ``build_set``: the 64-160 px set
and the 32-56 px set, VP8-coded, seeds 1 and 2), prepared as the sampler prepares frames
(``letterbox_frame``), counted as the decisions count them (``counted_faces``). CPU is thread
CPU time per image at batch 1, the configurations interleaved round by round so a shared
machine's load falls on all of them alike; the onnxruntime settings with more than one thread
are measured in process CPU time (their work runs on other threads) and wall time.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.detector_model import calibration_images, ensure_int8
from bench.vision_clips import SMALL_SIZES, build_set
from vision import quantise
from vision.detector import CenterFaceDetector
from vision.eval import detect_frames, score_frames
from vision.model import cached_model_path
from vision.settings import VisionSettings

SIZES = ((320, 256), (384, 288), (512, 384), (640, 480))
INT8_VARIANTS = (("QOperator", True), ("QOperator", False), ("QDQ", True), ("QDQ", False))


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def models(config: VisionSettings, tmp: Path) -> dict[str, Path]:
    """FP32, the pinned INT8 (QOperator per-channel) and the other INT8 variants (built here)."""
    out = {
        "fp32": cached_model_path(config, precision="fp32"),
        "int8 QOperator per-channel (pinned)": ensure_int8(config),
    }
    images = calibration_images()
    for fmt, per_channel in INT8_VARIANTS[1:]:
        name = f"int8 {fmt} {'per-channel' if per_channel else 'per-tensor'}"
        out[name] = quantise.quantise(
            out["fp32"], images, tmp / f"{fmt}-{per_channel}.onnx", fmt=fmt, per_channel=per_channel
        )
    return out


def accuracy(paths: dict[str, Path], config: VisionSettings, quick: bool) -> list[dict]:
    big = build_set(15 if quick else 150)
    small = build_set(8 if quick else 60, seed=2, sizes=SMALL_SIZES, max_faces=2)
    rows = []
    for name, path in paths.items():
        for w, h in SIZES:
            cfg = config.replace(detector_width=w, detector_height=h)
            det = CenterFaceDetector(path, (w, h))
            b = score_frames(
                detect_frames(det, [i.frame for i in big], cfg), [i.truth for i in big]
            )
            s = score_frames(
                detect_frames(det, [i.frame for i in small], cfg), [i.truth for i in small]
            )
            rows.append(
                {
                    "model": name,
                    "size": f"{w}x{h}",
                    "count_accuracy": b["count_accuracy"],
                    "precision": b["precision"],
                    "recall_64_160": b["recall"],
                    "precision_32_56": s["precision"],
                    "recall_32_56": s["recall"],
                    "recall_32_56_by_band": s["recall_by_face_height_px"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def timing(paths: dict[str, Path], rounds: int) -> list[dict]:
    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 255, (s[1], s[0], 3), dtype=np.uint8) for s in SIZES}
    dets = {(name, s): CenterFaceDetector(path, s) for name, path in paths.items() for s in SIZES}
    times: dict[tuple, list[float]] = {k: [] for k in dets}
    for (_, s), det in dets.items():
        det.detect_batch([images[s]])  # warm up
    for _ in range(rounds):
        for key, det in dets.items():
            t0 = time.thread_time()
            det.detect_batch([images[key[1]]])
            times[key].append(time.thread_time() - t0)
    return [
        {
            "model": name,
            "size": f"{s[0]}x{s[1]}",
            "ms_per_image": round(1000 * float(np.median(v)), 2),
        }
        for (name, s), v in times.items()
    ]


def runtime_settings(path: Path, rounds: int) -> list[dict]:
    """onnxruntime settings for the default model and size: threads, optimisation, mode."""
    image = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    rows = []
    for threads, optimization, parallel in (
        (1, "all", False),
        (2, "all", False),
        (1, "extended", False),
        (1, "basic", False),
        (1, "none", False),
        (1, "all", True),
    ):
        det = CenterFaceDetector(
            path, (640, 480), threads=threads, optimization=optimization, parallel=parallel
        )
        det.detect_batch([image])
        cpu0, wall0 = process_cpu(), time.perf_counter()
        for _ in range(rounds):
            det.detect_batch([image])
        rows.append(
            {
                "threads": threads,
                "optimization": optimization,
                "execution_mode": "parallel" if parallel else "sequential",
                "cpu_ms": round(1000 * (process_cpu() - cpu0) / rounds, 2),
                "wall_ms": round(1000 * (time.perf_counter() - wall0) / rounds, 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.detector_sweep", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sets, few rounds (tests)")
    parser.add_argument("--json", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    config = VisionSettings()
    rounds = 3 if args.quick else 20
    with tempfile.TemporaryDirectory(prefix="detector-sweep-") as tmp:
        paths = models(config, Path(tmp))
        result = {
            "accuracy": accuracy(paths, config, args.quick),
            "timing": timing(paths, rounds),
            "runtime_settings": runtime_settings(
                paths["int8 QOperator per-channel (pinned)"], rounds
            ),
        }
    for row in result["timing"]:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
