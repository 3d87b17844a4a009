"""Evaluate the face detector and the sampling + decisions on labelled, VP8-coded video.

    python -m bench.vision_eval [--quick] [--json PATH]
    python -m bench.vision_eval --clip clip.webm --labels labels.json [--json PATH]

The labelled set is made by bench/vision_clips.py (faces from scikit-image's images
composited over scenes, VP8-coded like a call); scoring is vision/eval.py's. Settings are the
relay's own (``RELAY_*``, relay.config.Config.vision).

Labels JSON for ``--clip``: ``{"frames": [[[x1, y1, x2, y2], ...], ...]}`` (one list of face
boxes per decoded frame, source pixels) or just the outer list.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from bench.detector_model import ensure_model
from bench.vision_clips import (
    FPS,
    SMALL_SIZES,
    EncodedFrame,
    add_noise,
    backgrounds,
    build_set,
    decode_frames,
    encode_frames,
    face_patches,
    one_face_clip,
    one_face_images,
    paste_face,
    two_face_clip,
    two_face_images,
    vp8_encoder,
    write_clip,
)
from relay.config import Config
from vision import sampler as sampler_module
from vision.decisions import VisionEvent
from vision.detector import CenterFaceDetector, Detector
from vision.eval import detect_frames, score_frames
from vision.service import DetectorService, percentile
from vision.settings import VisionSettings


def time_batches(detector: Detector, config: VisionSettings, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    size = (config.detector_width, config.detector_height)
    images = [rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) for _ in range(8)]
    out = {}
    for b in (1, 4, 8):
        detector.detect_batch(images[:b])  # warm up
        t0 = time.thread_time()  # CPU time: onnxruntime with one thread runs on this one
        for _ in range(repeats):
            detector.detect_batch(images[:b])
        out[str(b)] = round((time.thread_time() - t0) / repeats / b * 1000, 2)
    return out



async def run_clip(frames: list[EncodedFrame], config: VisionSettings, detector: Detector,
                   approved: int = 1, repeat: int = 1) -> tuple[list[VisionEvent], dict]:
    """Drive a LegSampler through a DetectorService over the clip's timeline (30 fps), waiting
    for each sample's decision before the next frame, so clip time is what is measured."""
    service = DetectorService(config, detector)
    await service.start()
    events: list[VisionEvent] = []
    leg = service.open_leg("eval", approved, events.append)
    try:
        n = 0
        for _ in range(repeat):
            for f in frames:
                leg.offer_frame("VP8", f.data, f.keyframe, n / FPS)
                n += 1
                if service._busy:
                    await service.idle()
        stats = service.stats.summary()
        stats["inference_cpu_s"] = service.stats.inference_cpu_s
        stats["decode_cpu_s"] = service.stats.decode_cpu_s
        stats["motion_samples"] = service.stats.motion_samples
        stats["clip_s"] = n / FPS
    finally:
        await service.stop()
    return events, stats


async def run_clip_keyframes_only(images: list[np.ndarray], config: VisionSettings, detector: Detector,
                                  approved: int = 1, pli_delay_s: float = 0.1
                                  ) -> tuple[list[VisionEvent], dict]:
    """Keyframe-only sampling against a simulated sender: the relay forwards the sampler's
    keyframe requests (throttled to ``keyframe_throttle_s``), and the sender's encoder makes a
    keyframe ``pli_delay_s`` later (network round trip and encoder)."""
    service = DetectorService(config, detector, keyframes_only=True)
    await service.start()
    events: list[VisionEvent] = []
    leg = service.open_leg("eval", approved, events.append)
    enc = vp8_encoder()
    last_pli, key_at, sent, keys = float("-inf"), None, 0, 0
    try:
        for i, image in enumerate(images):
            now = i / FPS
            if leg.keyframe_wanted(now) and now - last_pli >= config.keyframe_throttle_s:
                last_pli, key_at = now, now + pli_delay_s
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            if key_at is not None and now >= key_at - 1e-9:
                frame.pict_type = av.video.frame.PictureType.I
                key_at = None
            for p in enc.encode(frame):
                sent += p.size
                keys += p.is_keyframe
                leg.offer_frame("VP8", bytes(p), bool(p.is_keyframe), now)
            if service._busy:
                await service.idle()
        stats = service.stats.summary()
        stats["kbps"] = sent * 8 / (len(images) / FPS) / 1000
        stats["keyframes"] = keys
        stats["decode_cpu_s"] = service.stats.decode_cpu_s
        stats["inference_cpu_s"] = service.stats.inference_cpu_s
        # the same pictures from an encoder nobody asks for keyframes: the bits they cost
        plain, plain_enc = 0, vp8_encoder()
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            plain += sum(p.size for p in plain_enc.encode(frame))
        stats["plain_kbps"] = plain * 8 / (len(images) / FPS) / 1000
    finally:
        await service.stop()
    return events, stats


def first_event(events: list[VisionEvent], kind: str, after: float) -> VisionEvent | None:
    return next((e for e in events if e.kind == kind and e.at >= after), None)


async def clip_latencies(config: VisionSettings, detector: Detector, clips: int
                         ) -> dict[str, object]:
    confirm, clear, misses, kbps = [], [], 0, []
    no_motion_confirm = []
    processing = []
    for seed in range(clips):
        appear = 2.0 + seed * 0.37 % 1.0  # spread over the sampling phase
        leave = appear + 3.0
        frames, _ = two_face_clip(seed, appear, leave, leave + 2.5)
        kbps.append(sum(len(f.data) for f in frames) * 8 / (len(frames) / FPS) / 1000)
        for motion in (True, False):
            saved = sampler_module.MOTION_MIN_FRACTION
            if not motion:
                sampler_module.MOTION_MIN_FRACTION = float("inf")
            try:
                events, stats = await run_clip(frames, config, detector)
            finally:
                sampler_module.MOTION_MIN_FRACTION = saved
            p95 = (stats["decision_latency_ms_p95"] or 0) / 1000
            over = first_event(events, "over_limit", appear)
            if over is None:
                misses += motion
                continue
            latency = over.at - appear + p95
            if motion:
                confirm.append(latency)
                processing.append(p95)
                cleared = first_event(events, "cleared", leave)
                if cleared is not None:
                    clear.append(cleared.at - leave + p95)
            else:
                no_motion_confirm.append(latency)
    return {
        "clips": clips,
        "confirm_latency_s_p95": round(percentile(confirm, 0.95), 3) if confirm else None,
        "confirm_latency_s_max": round(max(confirm), 3) if confirm else None,
        "confirm_latency_s": [round(v, 3) for v in confirm],
        "confirm_missed": misses,
        "confirm_latency_s_p95_without_motion_trigger":
            round(percentile(no_motion_confirm, 0.95), 3) if no_motion_confirm else None,
        "clear_latency_s_p95": round(percentile(clear, 0.95), 3) if clear else None,
        "decision_processing_s_p95": round(max(processing), 3) if processing else None,
        "every_frame_sender_kbps_mean": round(statistics.fmean(kbps)),
    }


async def keyframe_only_latencies(config: VisionSettings, detector: Detector, clips: int
                                  ) -> dict[str, object]:
    """The same two-face clips with keyframe-only decoding and a simulated sender."""
    confirm, clear, kbps, plain, cpu, seconds, false_over = [], [], [], [], 0.0, 0.0, 0
    for seed in range(clips):
        appear = 2.0 + seed * 0.37 % 1.0
        leave = appear + 3.0
        images, _ = two_face_images(seed, appear, leave, appear + 5.5)
        events, stats = await run_clip_keyframes_only(images, config, detector)
        over = first_event(events, "over_limit", appear)
        false_over += sum(e.kind == "over_limit" and e.at < appear for e in events)
        p95 = (stats["decision_latency_ms_p95"] or 0) / 1000
        if over is not None:
            confirm.append(over.at - appear + p95)
            cleared = first_event(events, "cleared", leave)
            if cleared is not None:
                clear.append(cleared.at - leave + p95)
        kbps.append(stats["kbps"])
        plain.append(stats["plain_kbps"])
        cpu += stats["decode_cpu_s"]
        seconds += len(images) / FPS
    return {
        "keyframe_only_confirm_latency_s_p95":
            round(percentile(confirm, 0.95), 3) if confirm else None,
        "keyframe_only_confirm_latency_s": [round(v, 3) for v in confirm],
        "keyframe_only_confirm_missed": clips - len(confirm),
        "keyframe_only_false_over_limit": false_over,
        "keyframe_only_clear_latency_s_p95":
            round(percentile(clear, 0.95), 3) if clear else None,
        "keyframe_only_sender_kbps_mean": round(statistics.fmean(kbps)),
        "keyframe_only_plain_sender_kbps_mean": round(statistics.fmean(plain)),
        "keyframe_only_extra_bits_pct": round(100 * (sum(kbps) / sum(plain) - 1), 2),
        "keyframe_only_decode_cpu_pct_per_leg": round(100 * cpu / seconds, 3),
    }


async def long_one_face(config: VisionSettings, detector: Detector, seconds: float,
                        clip_s: float) -> dict[str, object]:
    frames = one_face_clip(7, clip_s)
    repeat = max(1, round(seconds / clip_s))
    events, stats = await run_clip(frames, config, detector, repeat=repeat)
    wall = stats["clip_s"]
    return {
        "one_face_video_s": round(wall, 1),
        "one_face_false_over_limit": sum(e.kind == "over_limit" for e in events),
        "one_face_samples": stats["samples_taken"],
        "one_face_motion_samples": stats["motion_samples"],
        "detector_cpu_pct_per_leg": round(100 * stats["inference_cpu_s"] / wall, 3),
        "decode_cpu_pct_per_leg_every_frame": round(100 * stats["decode_cpu_s"] / wall, 3),
    }


async def keyframe_one_face(config: VisionSettings, detector: Detector, seconds: float,
                            clip_s: float) -> dict[str, object]:
    """Keyframe mode over the one-face video against the simulated sender: false
    over-limits, samples per second, the relay's CPU and the sender's extra bits."""
    images = one_face_images(7, clip_s)
    repeat = max(1, round(seconds / clip_s))
    events, stats = await run_clip_keyframes_only(images * repeat, config, detector)
    wall = len(images) * repeat / FPS
    return {
        "keyframe_one_face_video_s": round(wall, 1),
        "keyframe_one_face_false_over_limit": sum(e.kind == "over_limit" for e in events),
        "keyframe_one_face_samples_per_s": round(stats["samples_taken"] / wall, 3),
        "keyframe_one_face_decode_cpu_pct_per_leg": round(100 * stats["decode_cpu_s"] / wall, 3),
        "keyframe_one_face_detect_cpu_pct_per_leg": round(
            100 * stats["inference_cpu_s"] / wall, 3),
        "keyframe_one_face_keyframes_per_s": round(stats["keyframes"] / wall, 3),
        "keyframe_one_face_extra_bits_pct": round(
            100 * (stats["kbps"] / stats["plain_kbps"] - 1), 2),
    }


def decode_costs(seconds: float = 10.0) -> dict[str, float]:
    """Every-frame decoding against keyframe-only decoding (with forced keyframes every second,
    what sampling once a second would ask of the sender)."""
    frames_img = []
    rng = random.Random(3)
    nrng = np.random.default_rng(3)
    scene = backgrounds()["coffee"]
    patch = rng.choice(face_patches())
    for i in range(round(seconds * FPS)):
        canvas = scene.copy()
        paste_face(canvas, patch, 200 + round(40 * math.sin(i / 12)), 120, 120)
        frames_img.append(add_noise(canvas, nrng))
    plain = encode_frames(frames_img)
    keyed = encode_frames(frames_img, gop=FPS)

    def timed(frames: list[EncodedFrame], skip: bool) -> float:
        dec = av.CodecContext.create("vp8", "r")
        dec.thread_count = 1
        if skip:
            dec.skip_frame = "NONKEY"
        t0 = time.thread_time()
        for f in frames:
            dec.decode(av.Packet(f.data))
        return time.thread_time() - t0

    def psnr(frames: list[EncodedFrame]) -> float:
        """Mean PSNR (RGB) of the decoded frames against the source images."""
        values = []
        for decoded, source in zip(decode_frames(frames), frames_img, strict=False):
            err = np.mean((decoded.to_ndarray(format="rgb24").astype(np.float32) - source) ** 2)
            values.append(10 * math.log10(255 ** 2 / max(float(err), 1e-9)))
        return statistics.fmean(values)

    every = timed(plain, False)
    keyonly = timed(keyed, True)
    keys = [len(f.data) for f in keyed if f.keyframe][1:]
    inter_plain = [len(f.data) for f in plain if not f.keyframe]
    bytes_plain = sum(len(f.data) for f in plain[1:])
    bytes_keyed = sum(len(f.data) for f in keyed[1:])
    return {
        "decode_every_frame_ms_per_frame": round(every / len(plain) * 1000, 3),
        "decode_every_frame_cpu_pct_per_leg": round(100 * every / seconds, 2),
        "decode_keyframe_only_cpu_pct_per_leg_1_per_s": round(100 * keyonly / seconds, 2),
        "keyframe_bytes_mean": round(statistics.fmean(keys)),
        "inter_frame_bytes_mean": round(statistics.fmean(inter_plain)),
        "forced_keyframe_bitrate_change_pct": round(100 * (bytes_keyed / bytes_plain - 1), 1),
        "bitrate_plain_kbps": round(bytes_plain * 8 / seconds / 1000),
        "bitrate_keyframe_per_s_kbps": round(bytes_keyed * 8 / seconds / 1000),
        "psnr_plain_db": round(psnr(plain), 2),
        "psnr_keyframe_per_s_db": round(psnr(keyed), 2),
    }



def evaluate_clip(path: Path, labels_path: Path, detector: Detector, config: VisionSettings,
                  stride: int = 1) -> dict[str, object]:
    labels = json.loads(labels_path.read_text())
    if isinstance(labels, dict):
        labels = labels["frames"]
    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % stride == 0 and i < len(labels):
                frames.append((frame, [tuple(map(float, b)) for b in labels[i]]))
    preds = detect_frames(detector, [f for f, _ in frames], config)
    return score_frames(preds, [t for _, t in frames])  # type: ignore[misc]


# --- main ---------------------------------------------------------------------------------------

def run(quick: bool, config: VisionSettings, clip: Path | None = None, labels: Path | None = None,
        stride: int = 1, detection_only: bool = False) -> dict[str, object]:
    t0 = time.perf_counter()
    detector = CenterFaceDetector(ensure_model(config),
                                  (config.detector_width, config.detector_height),
                                  threads=config.detector_threads)
    if clip is not None:
        if labels is None:
            raise SystemExit("--clip needs --labels")
        return evaluate_clip(clip, labels, detector, config, stride)
    result: dict[str, object] = {
        "quick": quick,
        "detector": f"{config.detector_width}x{config.detector_height} "
                    f"{config.detector_precision}"}
    timings: dict[str, float] = {}

    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - t, 1)

    with step("image_set"):
        items = build_set(15 if quick else 150)
        preds = detect_frames(detector, [it.frame for it in items], config)
        result.update(score_frames(preds, [it.truth for it in items]))
        small = build_set(8 if quick else 60, seed=2, sizes=SMALL_SIZES, max_faces=2)
        small_scores = score_frames(detect_frames(detector, [it.frame for it in small], config),
                                    [it.truth for it in small])
    result["small_faces_recall"] = small_scores["recall"]
    result["small_faces_recall_by_face_height_px"] = small_scores["recall_by_face_height_px"]
    result["false_positives_by_background"] = {
        name: sum(len(p) for p, it in zip(preds, items, strict=True)
                  if it.background == name and not it.truth)
        for name in sorted({it.background for it in items})}
    with step("timing"):
        result["ms_per_image"] = time_batches(detector, config, 2 if quick else 10)
    result["detector_cpu_pct_per_leg_at_default_rate"] = round(
        result["ms_per_image"]["1"] / 1000 / config.sample_interval_s * 100, 3)  # type: ignore[index]
    if not detection_only:
        with step("two_face_clips"):
            result.update(asyncio.run(clip_latencies(config, detector, 1 if quick else 10)))
        with step("keyframe_only_clips"):
            result.update(asyncio.run(keyframe_only_latencies(config, detector,
                                                              1 if quick else 5)))
        with step("keyframe_one_face"):
            # the default mode gets the 10-minute false over-limit check
            result.update(asyncio.run(keyframe_one_face(config, detector,
                                                        8.0 if quick else 600.0,
                                                        8.0 if quick else 10.0)))
        with step("one_face_long"):
            result.update(asyncio.run(long_one_face(config, detector, 8.0 if quick else 120.0,
                                                    8.0 if quick else 60.0)))
        with step("decode_costs"):
            result.update(decode_costs(2.0 if quick else 10.0))
    result["timings_s"] = timings
    result["eval_seconds"] = round(time.perf_counter() - t0, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vision_eval", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small set, for tests")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--detection-only", action="store_true",
                        help="only the labelled image set and the timings (for sweeps)")
    parser.add_argument("--clip", type=Path, help="evaluate this labelled clip instead")
    parser.add_argument("--labels", type=Path, help="labels JSON for --clip")
    parser.add_argument("--stride", type=int, default=1,
                        help="with --clip: evaluate every STRIDE-th frame")
    parser.add_argument("--write-clip", type=Path, metavar="PATH",
                        help="write a labelled two-face clip (.webm, .ivf or .y4m) and exit")
    args = parser.parse_args(argv)
    config = Config.from_env().vision
    if args.write_clip:
        print(write_clip(args.write_clip))
        return 0
    result = run(args.quick, config, args.clip, args.labels, args.stride, args.detection_only)
    for key, value in result.items():
        print(f"{key:48s} {json.dumps(value)}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
