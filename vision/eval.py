"""Evaluate the face detector and the sampling + decisions on labelled, VP8-coded video.

    python -m vision.eval [--quick] [--json PATH]
    python -m vision.eval --clip clip.webm --labels labels.json [--json PATH]

The labelled set is built from images that ship inside scikit-image: faces cropped from
``astronaut`` and ``camera`` (boxes determined once, below), composited at known positions
and sizes, 0-4 per frame, over scenes and textures (``coffee``, ``chelsea`` - a cat, which
must not count -, ``brick``, ``grass``, ``gravel``...). Every frame goes through libvpx VP8
at about 1 Mbit/s and back, like a call.

Labels JSON for ``--clip``: ``{"frames": [[[x1, y1, x2, y2], ...], ...]}`` (one list of face
boxes per decoded frame, source pixels) or just the outer list.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from relay.config import Config
from vision import sampler as sampler_module
from vision.decisions import VisionEvent, counted_faces
from vision.detector import CenterFaceDetector, Detector, Face, letterbox_frame
from vision.model import ensure
from vision.service import DetectorService, percentile

WIDTH, HEIGHT, FPS = 640, 480, 30
Box = tuple[float, float, float, float]


# --- labelled material from scikit-image ----------------------------------------------------

@dataclass(frozen=True)
class FacePatch:
    image: np.ndarray  # RGB crop around the face
    box: Box  # the face inside the crop


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3])


@functools.cache
def face_patches() -> list[FacePatch]:
    """Faces from scikit-image, each with a margin around its box, and their mirror images.

    Face boxes (x1, y1, x2, y2 in the original images) were found once with CenterFace on the
    full-resolution images and checked by eye: astronaut (182, 59, 270, 177), camera
    (202, 119, 258, 197).
    """
    from skimage import data

    sources = [(data.astronaut(), (182, 59, 270, 177)), (data.camera(), (202, 119, 258, 197))]
    patches = []
    for image, (x1, y1, x2, y2) in sources:
        image = _rgb(image)
        mx, my = round(0.35 * (x2 - x1)), round(0.3 * (y2 - y1))
        cx1, cy1 = max(0, x1 - mx), max(0, y1 - my)
        cx2, cy2 = min(image.shape[1], x2 + mx), min(image.shape[0], y2 + my)
        crop = image[cy1:cy2, cx1:cx2]
        box = (x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1)
        patches.append(FacePatch(np.ascontiguousarray(crop), box))
        w = crop.shape[1]
        patches.append(FacePatch(np.ascontiguousarray(crop[:, ::-1]),
                                 (w - box[2], box[1], w - box[0], box[3])))
    return patches


@functools.cache
def backgrounds() -> dict[str, np.ndarray]:
    """Scenes and textures without faces, resized to the call's frame size (RGB)."""
    from skimage import data

    out = {}
    for name in ("coffee", "chelsea", "brick", "grass", "gravel", "coins", "horse", "page"):
        image = _rgb(getattr(data, name)())
        if image.dtype != np.uint8:
            image = (image > 0).astype(np.uint8) * 255 if image.dtype == bool else image.astype(np.uint8)
        out[name] = resize(image, WIDTH, HEIGHT)
    return out


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return frame.reformat(width=width, height=height, format="rgb24",
                          interpolation="AREA").to_ndarray()


def paste_face(canvas: np.ndarray, patch: FacePatch, x: int, y: int, face_h: int) -> Box:
    """Paste ``patch`` scaled so its face is ``face_h`` tall, with the face's top-left at
    (x, y); the face box in canvas pixels (clipped to the canvas)."""
    bx1, by1, bx2, by2 = patch.box
    s = face_h / (by2 - by1)
    ph, pw = patch.image.shape[:2]
    w, h = max(2, round(pw * s)), max(2, round(ph * s))
    scaled = resize(patch.image, w, h)
    ox, oy = round(x - bx1 * s), round(y - by1 * s)
    H, W = canvas.shape[:2]
    sx1, sy1 = max(0, -ox), max(0, -oy)
    dx1, dy1 = max(0, ox), max(0, oy)
    dx2, dy2 = min(W, ox + w), min(H, oy + h)
    canvas[dy1:dy2, dx1:dx2] = scaled[sy1:sy1 + dy2 - dy1, sx1:sx1 + dx2 - dx1]
    return (max(0.0, ox + bx1 * s), max(0.0, oy + by1 * s),
            min(float(W), ox + bx2 * s), min(float(H), oy + by2 * s))


def place_faces(rng: random.Random, n: int, sizes: list[int]) -> list[tuple[int, int, int]]:
    """Up to ``n`` non-overlapping (x, y, face_h) face placements inside the frame."""
    placed: list[tuple[int, int, int]] = []
    for _ in range(n):
        for _attempt in range(200):
            h = rng.choice(sizes)
            w = round(h * 0.8)
            mx, my = round(0.45 * w), round(0.35 * h)  # keep the patches' margins apart too
            x = rng.randint(mx, WIDTH - w - mx)
            y = rng.randint(my, HEIGHT - h - my)
            if all(x + w + mx < px - round(0.45 * ph * 0.8) or px + round(ph * 0.8) + round(0.45 * ph * 0.8) < x - mx
                   or y + h + my < py - round(0.35 * ph) or py + ph + round(0.35 * ph) < y - my
                   for px, py, ph in placed):
                placed.append((x, y, h))
                break
    return placed


def add_noise(image: np.ndarray, rng: np.random.Generator, amount: int = 3) -> np.ndarray:
    noise = rng.integers(-amount, amount + 1, image.shape, dtype=np.int16)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


# --- VP8 ---------------------------------------------------------------------------------------

def vp8_encoder(bitrate: int = 1_000_000, gop: int | None = None) -> av.CodecContext:
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    enc.time_base = Fraction(1, FPS)
    enc.framerate = FPS
    enc.bit_rate = bitrate
    if gop:
        enc.gop_size = gop
    # Like a browser's real-time encoder: no look-ahead, fast.
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                   "error-resilient": "1"}
    return enc


@dataclass
class EncodedFrame:
    data: bytes
    keyframe: bool


def encode_frames(images: Iterator[np.ndarray] | list[np.ndarray], bitrate: int = 1_000_000,
                  gop: int | None = None) -> list[EncodedFrame]:
    enc = vp8_encoder(bitrate, gop)
    out = []
    for i, image in enumerate(images):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i
        out.extend(EncodedFrame(bytes(p), bool(p.is_keyframe)) for p in enc.encode(frame))
    out.extend(EncodedFrame(bytes(p), bool(p.is_keyframe)) for p in enc.encode(None))
    return out


def decode_frames(frames: list[EncodedFrame]) -> list[av.VideoFrame]:
    dec = av.CodecContext.create("vp8", "r")
    out = []
    for f in frames:
        out.extend(dec.decode(av.Packet(f.data)))
    return out


def through_vp8(image: np.ndarray, rng: np.random.Generator, frames: int = 6) -> av.VideoFrame:
    """One still image as it looks after a few frames of a 1 Mbit/s VP8 call."""
    return decode_frames(encode_frames([add_noise(image, rng) for _ in range(frames)]))[-1]


# --- matching --------------------------------------------------------------------------------

def iou(a: Box, b: Box) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(pred: list[Box], truth: list[Box], threshold: float = 0.5) -> tuple[int, list[bool]]:
    """Greedy one-to-one matching at IoU >= threshold: true positives, and per truth box
    whether it was found."""
    pairs = sorted(((iou(p, t), i, j) for i, p in enumerate(pred) for j, t in enumerate(truth)),
                   reverse=True)
    used_p: set[int] = set()
    found = [False] * len(truth)
    for value, i, j in pairs:
        if value < threshold:
            break
        if i not in used_p and not found[j]:
            used_p.add(i)
            found[j] = True
    return sum(found), found


# --- the evaluation ----------------------------------------------------------------------------

SIZES = [64, 80, 96, 128, 160]
"""Face box heights (pixels of the 640x480 frame) in the headline set: a webcam's face of
someone within about 1.6 m. At the default detector size (320x256, half the frame) smaller
faces are not found reliably; :data:`SMALL_SIZES` measures them separately rather than
leaving them out or mixing them in."""
SMALL_SIZES = [32, 40, 48, 56]
BUCKETS = (36, 44, 52, 60, 72, 88, 112, 144)  # recall by face height: bucket upper bounds


@dataclass
class Item:
    frame: av.VideoFrame
    truth: list[Box]
    background: str


def build_set(n: int, seed: int = 1, sizes: list[int] = SIZES, max_faces: int = 4
              ) -> list[Item]:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    patches = face_patches()
    scenes = backgrounds()
    names = sorted(scenes)
    items = []
    for i in range(n):
        name = names[i % len(names)]
        canvas = scenes[name].copy()
        k = i % (max_faces + 1)  # 0..max_faces faces, evenly
        truth = [paste_face(canvas, rng.choice(patches), x, y, h)
                 for x, y, h in place_faces(rng, k, sizes)]
        items.append(Item(through_vp8(canvas, nrng), truth, name))
    return items


def detect_frames(detector: Detector, frames: list[av.VideoFrame], config: Config,
                  batch: int = 8) -> list[list[Face]]:
    """Counted faces per frame, in source pixels, through the sampler's own preparation."""
    size = (config.detector_width, config.detector_height)
    out: list[list[Face]] = []
    for i in range(0, len(frames), batch):
        prepared = [letterbox_frame(f, size) for f in frames[i:i + batch]]
        results = detector.detect_batch([img for img, _ in prepared])
        out.extend(counted_faces([f.scaled(1 / s) for f in faces], config)
                   for faces, (_, s) in zip(results, prepared, strict=True))
    return out


def score_frames(preds: list[list[Face]], truths: list[list[Box]]) -> dict[str, object]:
    tp = n_pred = n_truth = correct = 0
    negatives = fp_on_negatives = 0
    by_size: dict[str, list[int]] = {}
    for faces, truth in zip(preds, truths, strict=True):
        boxes = [f.box for f in faces]
        hits, found = match(boxes, truth)
        tp += hits
        n_pred += len(boxes)
        n_truth += len(truth)
        correct += len(boxes) == len(truth)
        if not truth:
            negatives += 1
            fp_on_negatives += len(boxes)
        for t, ok in zip(truth, found, strict=True):
            h = t[3] - t[1]
            bucket = next((f"<{s}" for s in BUCKETS if h < s), f">={BUCKETS[-1]}")
            by_size.setdefault(bucket, [0, 0])
            by_size[bucket][0] += ok
            by_size[bucket][1] += 1
    order = [f"<{s}" for s in BUCKETS] + [f">={BUCKETS[-1]}"]
    return {
        "frames": len(truths),
        "faces": n_truth,
        "count_accuracy": correct / len(truths) if truths else None,
        "precision": tp / n_pred if n_pred else 1.0,
        "recall": tp / n_truth if n_truth else 1.0,
        "false_positives_per_frame": fp_on_negatives / negatives if negatives else None,
        "negative_frames": negatives,
        "recall_by_face_height_px": {k: round(by_size[k][0] / by_size[k][1], 4)
                                     for k in order if k in by_size},
        "faces_by_face_height_px": {k: by_size[k][1] for k in order if k in by_size},
    }


def time_batches(detector: Detector, config: Config, repeats: int) -> dict[str, float]:
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


# --- clips through the real sampler and service ---------------------------------------------

def two_face_clip(seed: int, appear_at: float, leave_at: float, length: float
                  ) -> tuple[list[EncodedFrame], list[list[Box]]]:
    """One person on screen (moving a little); a second appears at ``appear_at`` seconds
    and leaves at ``leave_at``. VP8-coded, with its labels."""
    images, labels = two_face_images(seed, appear_at, leave_at, length)
    return encode_frames(images), labels


def two_face_images(seed: int, appear_at: float, leave_at: float, length: float
                    ) -> tuple[list[np.ndarray], list[list[Box]]]:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    patches = face_patches()
    scenes = backgrounds()
    scene = scenes[rng.choice(["coffee", "brick", "grass", "gravel", "horse"])]
    first, second = rng.sample(patches, 2)
    h1, h2 = rng.choice([96, 112, 128]), rng.choice([64, 80, 96, 112])
    x2, y2 = rng.randint(400, 520), rng.randint(80, 300)
    images, labels = [], []
    for i in range(round(length * FPS)):
        t = i / FPS
        canvas = scene.copy()
        boxes = [paste_face(canvas, first, 120 + round(20 * math.sin(t * 1.3)),
                            110 + round(8 * math.sin(t * 0.7)), h1)]
        if appear_at <= t < leave_at:
            boxes.append(paste_face(canvas, second, x2, y2, h2))
        images.append(add_noise(canvas, nrng))
        labels.append(boxes)
    return images, labels


def one_face_clip(seed: int, length: float) -> list[EncodedFrame]:
    """One person moving about, nearer and further, with lighting changes."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    patch = rng.choice(face_patches())
    scenes = backgrounds()
    images = []
    for i in range(round(length * FPS)):
        t = i / FPS
        scene = scenes[["coffee", "brick", "chelsea", "grass"][int(t // 15) % 4]]
        canvas = scene.copy()
        h = round(110 + 40 * math.sin(t * 0.21))
        paste_face(canvas, patch, round(260 + 150 * math.sin(t * 0.37)),
                   round(150 + 60 * math.sin(t * 0.53)), h)
        gain = 0.8 + 0.25 * math.sin(t * 0.11)
        images.append(add_noise(np.clip(canvas * gain, 0, 255).astype(np.uint8), nrng))
    return encode_frames(images)


async def run_clip(frames: list[EncodedFrame], config: Config, detector: Detector,
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


async def run_clip_keyframes_only(images: list[np.ndarray], config: Config, detector: Detector,
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
    last_pli, key_at, sent = float("-inf"), None, 0
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
                leg.offer_frame("VP8", bytes(p), bool(p.is_keyframe), now)
            if service._busy:
                await service.idle()
        stats = service.stats.summary()
        stats["kbps"] = sent * 8 / (len(images) / FPS) / 1000
    finally:
        await service.stop()
    return events, stats


def first_event(events: list[VisionEvent], kind: str, after: float) -> VisionEvent | None:
    return next((e for e in events if e.kind == kind and e.at >= after), None)


async def clip_latencies(config: Config, detector: Detector, clips: int
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


async def keyframe_only_latencies(config: Config, detector: Detector, clips: int
                                  ) -> dict[str, object]:
    """The same two-face clips with keyframe-only decoding and a simulated sender."""
    confirm, kbps = [], []
    for seed in range(clips):
        appear = 2.0 + seed * 0.37 % 1.0
        images, _ = two_face_images(seed, appear, appear + 3.0, appear + 5.5)
        events, stats = await run_clip_keyframes_only(images, config, detector)
        over = first_event(events, "over_limit", appear)
        p95 = (stats["decision_latency_ms_p95"] or 0) / 1000
        if over is not None:
            confirm.append(over.at - appear + p95)
        kbps.append(stats["kbps"])
    return {
        "keyframe_only_confirm_latency_s_p95":
            round(percentile(confirm, 0.95), 3) if confirm else None,
        "keyframe_only_confirm_missed": clips - len(confirm),
        "keyframe_only_sender_kbps_mean": round(statistics.fmean(kbps)),
    }


async def long_one_face(config: Config, detector: Detector, seconds: float,
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


# --- external clips ----------------------------------------------------------------------------

def write_clip(path: Path, seconds: float = 8.0, seed: int = 0) -> Path:
    """Write a labelled two-face clip (``.webm``/``.ivf``: VP8; ``.y4m``: raw, for Chromium's
    ``--use-file-for-fake-video-capture``) and its labels next to it; the labels' path."""
    images, labels = two_face_images(seed, seconds * 0.3, seconds * 0.7, seconds)
    raw = path.suffix == ".y4m"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("rawvideo" if raw else "libvpx", rate=FPS)
        stream.width, stream.height = WIDTH, HEIGHT
        stream.pix_fmt = "yuv420p"
        if not raw:
            stream.bit_rate = 1_000_000
            stream.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    labels_path = path.with_suffix(".json")
    labels_path.write_text(json.dumps({"fps": FPS, "frames": labels}))
    return labels_path


def evaluate_clip(path: Path, labels_path: Path, detector: Detector, config: Config,
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

def run(quick: bool, config: Config, clip: Path | None = None, labels: Path | None = None,
        stride: int = 1, detection_only: bool = False) -> dict[str, object]:
    t0 = time.perf_counter()
    detector = CenterFaceDetector(ensure(config), (config.detector_width, config.detector_height),
                                  threads=config.detector_threads)
    if clip is not None:
        if labels is None:
            raise SystemExit("--clip needs --labels")
        return evaluate_clip(clip, labels, detector, config, stride)
    result: dict[str, object] = {"quick": quick}
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
        with step("one_face_long"):
            result.update(asyncio.run(long_one_face(config, detector, 8.0 if quick else 600.0,
                                                    8.0 if quick else 60.0)))
        with step("decode_costs"):
            result.update(decode_costs(2.0 if quick else 10.0))
    result["timings_s"] = timings
    result["eval_seconds"] = round(time.perf_counter() - t0, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vision.eval", description=__doc__.split("\n")[0])
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
    config = Config.from_env()
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
