"""Pre-encoded media for clients: encode once, send the same bytes at the right pace.

The relay forwards bytes, so clients that send pre-encoded packets let tests compare what
arrives with what was sent, bit for bit, and let load clients cost almost nothing.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000


@dataclass(frozen=True)
class EncodedClipFrame:
    data: bytes
    keyframe: bool


def encode_video(
    images: Iterable[np.ndarray],
    fps: int = 30,
    bitrate: int = 1_000_000,
    keyframe_interval: int = 90,
    codec: str = "libvpx",
) -> list[EncodedClipFrame]:
    """Encode RGB uint8 images (H, W, 3) as VP8 (``libvpx``) or H.264 (``libx264``)."""
    frames = list(images)
    height, width = frames[0].shape[:2]
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = fractions.Fraction(1, fps)
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.bit_rate = bitrate
    ctx.gop_size = keyframe_interval
    opts = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    if codec == "libx264":
        opts = {"preset": "ultrafast", "tune": "zerolatency", "bf": "0"}
    ctx.options = opts
    out: list[EncodedClipFrame] = []
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        out += [EncodedClipFrame(bytes(p), bool(p.is_keyframe)) for p in ctx.encode(frame)]
    out += [EncodedClipFrame(bytes(p), bool(p.is_keyframe)) for p in ctx.encode(None)]
    return out


def encode_tone(seconds: float, frequency: float = 440.0) -> list[EncodedClipFrame]:
    """A sine tone as 20 ms Opus packets (48 kHz mono)."""
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate = AUDIO_CLOCK
    ctx.layout = "mono"
    ctx.format = "s16"
    ctx.bit_rate = 32000
    samples = 960
    out: list[EncodedClipFrame] = []
    for i in range(int(seconds * 50)):
        t = (np.arange(samples) + i * samples) / AUDIO_CLOCK
        pcm = (np.sin(2 * math.pi * frequency * t) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = AUDIO_CLOCK
        frame.pts = i * samples
        out += [EncodedClipFrame(bytes(p), True) for p in ctx.encode(frame)]
    return out


def moving_pattern(width: int = 320, height: int = 240, frames: int = 90, seed: int = 0) -> list[np.ndarray]:
    """A cheap synthetic picture with motion, for tests that need real encoded video."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    base = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))
    return [np.roll(base, shift=4 * i, axis=1) for i in range(frames)]


class EncodedTrack(MediaStreamTrack):
    """Sends a clip's packets in a loop at its frame rate, as aiortc sends pre-encoded data."""

    def __init__(self, kind: str, clip: Sequence[EncodedClipFrame], rate: float) -> None:
        super().__init__()
        self.kind = kind
        self.clip = clip
        self.rate = rate
        self.sent = 0
        self._clock = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK
        self._step = int(self._clock / rate)
        self._start: float | None = None

    def sent_frame(self, index: int) -> EncodedClipFrame:
        return self.clip[index % len(self.clip)]

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.sent / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        item = self.clip[self.sent % len(self.clip)]
        packet = av.Packet(item.data)
        packet.pts = self.sent * self._step
        packet.time_base = fractions.Fraction(1, self._clock)
        self.sent += 1
        return packet
