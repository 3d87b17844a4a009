"""Labelled evaluation material for vision: faces composited into scenes, VP8-coded clips.

The faces are cropped from images that ship inside scikit-image (``astronaut`` and
``camera``, boxes determined once, below), composited at known positions and sizes, 0-4 per
frame, over scenes and textures (``coffee``, ``chelsea`` - a cat, which must not count -,
``brick``, ``grass``, ``gravel``...). Every frame goes through libvpx VP8 at about 1 Mbit/s
and back, like a call. Used by ``python -m bench.vision_eval`` and the vision tests.
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vision.eval import Box

WIDTH, HEIGHT, FPS = 640, 480, 30


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


SIZES = [64, 80, 96, 128, 160]
"""Face box heights (pixels of the 640x480 frame) in the headline set: a webcam's face of
someone within about 1.6 m. At the default detector size (320x256, half the frame) smaller
faces are not found reliably; :data:`SMALL_SIZES` measures them separately rather than
leaving them out or mixing them in."""
SMALL_SIZES = [32, 40, 48, 56]


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
    return encode_frames(one_face_images(seed, length))


def one_face_images(seed: int, length: float) -> list[np.ndarray]:
    """The pictures of :func:`one_face_clip`, before coding."""
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
    return images



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

