"""Pre-encoded load media: VGA VP8 clips with real faces on a moving background, and Opus.

The clips are built once and cached under ``.cache/bench/`` in a plain length-prefixed file
named after their parameters, so a load client only reads bytes and never encodes.

Faces come from scikit-image's bundled pictures (``astronaut()`` and ``camera()``), pasted
onto a textured background that scrolls, and they drift a little from frame to frame, so a
detector has real faces to find and the encoder real motion to spend its bitrate on.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from protocol.media import EncodedClipFrame, encode_tone, encode_video

CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache" / "bench"
MAGIC = b"BENCHCLIP1\n"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ClipSpec:
    width: int = 640
    height: int = 480
    fps: int = 30
    frames: int = 180
    bitrate: int = 1_000_000
    keyframe_interval: int = 90
    seed: int = 0

    @property
    def key(self) -> str:
        blob = json.dumps({**asdict(self), "v": FORMAT_VERSION}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


FULL = ClipSpec()
QUICK = ClipSpec(frames=60, keyframe_interval=30)
"""The CI smoke test's clip: same picture, two seconds, a keyframe every second."""


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from skimage.transform import resize

    out = resize(image, (height, width), anti_aliasing=True, preserve_range=True)
    return out.astype(np.uint8)


def _faces() -> list[np.ndarray]:
    from skimage import data

    astronaut = data.astronaut()[20:220, 150:330]  # her face and hair, 200 x 180
    camera = data.camera()[40:200, 170:310]  # the cameraman's head, 160 x 140
    camera = np.repeat(camera[:, :, None], 3, axis=2)
    return [_resize(astronaut, 180, 162), _resize(camera, 150, 132)]


def face_frames(spec: ClipSpec) -> list[np.ndarray]:
    """RGB frames: two faces moving slowly over a scrolling textured background."""
    rng = np.random.default_rng(spec.seed)
    w, h = spec.width, spec.height
    # background: coarse random blocks plus a gradient, twice as wide so it can scroll
    blocks = rng.integers(40, 215, (h // 16, (2 * w) // 16, 3), dtype=np.uint8)
    background = np.kron(blocks, np.ones((16, 16, 1), dtype=np.uint8)).astype(np.int16)
    background += (np.arange(2 * w) // 20).astype(np.int16)[None, :, None] % 24
    fine = rng.integers(-12, 12, background.shape, dtype=np.int16)
    background = np.clip(background + fine, 0, 255).astype(np.uint8)
    faces = _faces()
    out: list[np.ndarray] = []
    for i in range(spec.frames):
        phase = 2 * np.pi * i / spec.frames
        shift = (3 * i) % w
        frame = background[:, shift : shift + w].copy()
        positions = [
            (int(h * 0.15 + 30 * np.sin(phase)), int(w * 0.12 + 40 * np.cos(phase))),
            (int(h * 0.45 + 25 * np.cos(phase)), int(w * 0.60 + 35 * np.sin(phase))),
        ]
        for face, (y, x) in zip(faces, positions, strict=True):
            fh, fw = face.shape[:2]
            frame[y : y + fh, x : x + fw] = face
        out.append(frame)
    return out


def _path(kind: str, key: str) -> Path:
    return CACHE_DIR / f"{kind}-{key}.clip"


def save(path: Path, frames: Sequence[EncodedClipFrame], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        header = json.dumps(meta).encode()
        f.write(MAGIC + struct.pack(">I", len(header)) + header)
        for frame in frames:
            f.write(struct.pack(">IB", len(frame.data), 1 if frame.keyframe else 0))
            f.write(frame.data)
    tmp.replace(path)


def load(path: Path) -> tuple[list[EncodedClipFrame], dict]:
    raw = Path(path).read_bytes()
    if not raw.startswith(MAGIC):
        raise ValueError(f"{path} is not a bench clip")
    pos = len(MAGIC)
    (hlen,) = struct.unpack_from(">I", raw, pos)
    pos += 4
    meta = json.loads(raw[pos : pos + hlen])
    pos += hlen
    frames: list[EncodedClipFrame] = []
    while pos < len(raw):
        size, key = struct.unpack_from(">IB", raw, pos)
        pos += 5
        frames.append(EncodedClipFrame(raw[pos : pos + size], bool(key)))
        pos += size
    return frames, meta


def ensure_video(spec: ClipSpec) -> Path:
    """Build (once) and return the cached clip file for ``spec``."""
    path = _path("vp8", spec.key)
    if path.exists():
        return path
    encoded = encode_video(
        face_frames(spec),
        fps=spec.fps,
        bitrate=spec.bitrate,
        keyframe_interval=spec.keyframe_interval,
    )
    total = sum(len(f.data) for f in encoded)
    meta = {
        **asdict(spec),
        "codec": "VP8",
        "encoded_frames": len(encoded),
        "keyframes": sum(f.keyframe for f in encoded),
        "measured_bitrate": round(total * 8 * spec.fps / max(1, len(encoded))),
    }
    save(path, encoded, meta)
    return path


def ensure_audio(seconds: float = 2.0) -> Path:
    path = _path("opus", f"tone-{seconds:g}s")
    if path.exists():
        return path
    encoded = encode_tone(seconds)
    save(path, encoded, {"codec": "opus", "ptime_ms": 20, "packets": len(encoded)})
    return path


def describe(path: Path) -> dict:
    return load(path)[1]
