"""Per-leg sampling of the encoded video the relay forwards.

The relay hands each leg's :class:`LegSampler` the complete encoded video frames it forwards
(:meth:`LegSampler.offer_frame`, on the event loop). The sampler never decodes on the loop:

- **every-frame mode** (the default, ``needs_all_frames = True``): ``offer_frame`` only keeps
  the encoded frames since the last keyframe or the last sample in a list. When a sample is
  due, that list goes to the service's decode thread in one hop, which decodes it in order
  (VP8/H.264 inter frames need their predecessors) and converts only the last frame. The
  decoding cost is the same as decoding every frame, but it is off the loop and costs one
  thread hop per sample, not per frame. No keyframe requests are needed after the first.
- **keyframe-only mode** (``DetectorService(keyframes_only=True)``, ``needs_all_frames =
  False``): ``keyframe_wanted`` asks for a keyframe when a sample is due and only keyframes
  are decoded. Cheaper in relay CPU, dearer in bandwidth and picture quality for everyone on
  the call, and bursts are limited by the relay's keyframe-request throttle. See
  ``docs/vision.md`` for the measurements behind the default.

Sampling: one sample every ``sample_interval_s``; a burst of ``burst_samples`` samples
``burst_interval_s`` apart when a sample's count differs from the leg's agreed count. A cheap
frame-difference signal samples at once, between the regular samples: an inter frame much
bigger than usual (a person walking in makes the encoder spend more bits; no decoding needed
to see it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import numpy as np

from relay.config import Config
from vision.decisions import LegDecisions, VisionEvent, counted_faces
from vision.detector import Face, letterbox_frame

if TYPE_CHECKING:
    from vision.service import DetectorService

log = logging.getLogger(__name__)

DECODERS = {"VP8": "vp8", "H264": "h264"}
"""FFmpeg's own decoders: as fast as libvpx here, and they honour ``skip_frame``."""

MAX_BUFFERED_FRAMES = 300
"""Encoded frames kept for the next sample before giving up and waiting for a keyframe
(10 s at 30 fps: reached only when the decode thread is stuck)."""

MOTION_RATIO = 2.5
"""An inter frame this many times bigger than the running average is sampled at once..."""
MOTION_MIN_BYTES = 1500
"""...when it is at least this big..."""
MOTION_COOLDOWN_S = 0.2
"""...and no frame was sampled for motion within this many seconds. (VP8's periodic golden
frames also look like motion: an extra sample each costs one inference, nothing more; only a
sample whose count differs from the agreed count starts a burst.)"""
_MOTION_EWMA = 0.1


@dataclass
class Sample:
    """A sampled frame on its way to the detector."""

    sampler: LegSampler
    image: np.ndarray
    """BGR, letterboxed to the detector's input size."""
    scale: float
    """Detector pixels per source pixel."""
    frame: av.VideoFrame
    """The decoded frame, for the evidence JPEG of an event."""
    at: float
    """The relay's ``now`` when the frame was offered."""
    taken: float
    """``time.perf_counter()`` when it was taken, for the sample-to-decision latency."""


class _Decoder:
    """One leg's decoder. Used only from the service's decode thread."""

    def __init__(self) -> None:
        self._codec = ""
        self._ctx: av.CodecContext | None = None

    def decode(self, codec: str, frames: list[bytes], keyframes_only: bool,
               size: tuple[int, int]) -> tuple[av.VideoFrame, np.ndarray, float] | None:
        if self._ctx is None or codec != self._codec:
            self._ctx = av.CodecContext.create(DECODERS[codec], "r")
            self._ctx.thread_count = 1  # no per-leg decoder threads on a small machine
            if keyframes_only:
                self._ctx.skip_frame = "NONKEY"
            self._codec = codec
        last = None
        for data in frames:
            for frame in self._ctx.decode(av.Packet(data)):
                last = frame
        if last is None:
            return None
        image, scale = letterbox_frame(last, size)
        return last, image, scale


class LegSampler:
    needs_all_frames: bool

    def __init__(self, service: DetectorService, leg_key: str, approved: int,
                 on_event: Callable[[VisionEvent], None], config: Config,
                 keyframes_only: bool = False, enabled: bool = True) -> None:
        self.leg_key = leg_key
        self.on_event = on_event
        self.decisions = LegDecisions(leg_key, approved, config)
        self.needs_all_frames = enabled and not keyframes_only
        self._service = service
        self._config = config
        self._keyframes_only = keyframes_only
        self._enabled = enabled
        self._decoder = _Decoder()
        self._codec = ""
        self._buffer: list[bytes] = []
        self._synced = False  # a keyframe has been seen since the start / the last error
        self._decoding = False
        self._next_at = float("-inf")
        self._burst_left = 0
        self._avg_size = 0.0
        self._inter_frames_seen = 0
        self._last_motion_at = float("-inf")
        self.closed = False

    # --- called by the relay, on the event loop ------------------------------------------
    def keyframe_wanted(self, now: float) -> bool:
        if self.closed or not self._enabled:
            return False
        if self._keyframes_only:
            return now >= self._next_at and not self._decoding
        return not self._synced

    def offer_frame(self, codec: str, data: bytes, keyframe: bool, now: float) -> None:
        if self.closed or not self._enabled:
            return
        if codec != self._codec:
            if codec not in DECODERS:
                return
            self._codec = codec
            self._buffer = []
            self._synced = False
        if self._keyframes_only:
            if keyframe and now >= self._next_at and not self._decoding:
                self._take([data], now)
            return
        if keyframe:
            self._buffer = [data]
            self._synced = True
        elif not self._synced:
            return
        else:
            self._buffer.append(data)
            if len(self._buffer) > MAX_BUFFERED_FRAMES:
                self._buffer = []
                self._synced = False
                self._service.stats.resyncs += 1
                return
            self._watch_motion(len(data), now)
        if now >= self._next_at and not self._decoding:
            frames, self._buffer = self._buffer, []
            self._take(frames, now)

    def set_approved(self, n: int) -> None:
        self.decisions.approved = n

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._buffer = []
            self._service._leg_closed(self)

    # --- internals -----------------------------------------------------------------------
    def _watch_motion(self, size: int, now: float) -> None:
        self._inter_frames_seen += 1
        if (self._inter_frames_seen > 10 and size >= MOTION_MIN_BYTES
                and size > MOTION_RATIO * self._avg_size
                and now - self._last_motion_at >= MOTION_COOLDOWN_S):
            self._last_motion_at = now
            self._service.stats.motion_samples += 1
            self._next_at = min(self._next_at, now)
        self._avg_size += _MOTION_EWMA * (size - self._avg_size) if self._avg_size else size

    def _start_burst(self, first_at: float) -> None:
        if self._burst_left <= 0:
            self._burst_left = self._config.burst_samples
        self._next_at = min(self._next_at, first_at)

    def _take(self, frames: list[bytes], now: float) -> None:
        cfg = self._config
        if self._burst_left > 0:
            self._burst_left -= 1
            self._next_at = now + cfg.burst_interval_s
        else:
            self._next_at = now + cfg.sample_interval_s
        self._decoding = True
        self._service._decode(self, self._decoder, self._codec, frames, self._keyframes_only,
                              now, time.perf_counter())

    def _decoded(self, result: tuple[av.VideoFrame, np.ndarray, float] | None,
                 error: BaseException | None, at: float, taken: float) -> Sample | None:
        """Back on the loop after decoding: the sample to detect on, if any."""
        self._decoding = False
        if error is not None:
            log.info("vision: leg %s: cannot decode (%s); waiting for a keyframe",
                     self.leg_key, error)
            self._synced = False
            self._buffer = []
            return None
        return None if result is None or self.closed else Sample(self, result[1], result[2], result[0], at, taken)

    def _detected(self, sample: Sample, faces: list[Face]) -> list[VisionEvent]:
        """Back on the loop after detection: update the decisions and the sampling pace."""
        counted = counted_faces([f.scaled(1.0 / sample.scale) for f in faces], self._config)
        events = self.decisions.update(counted, sample.at)
        if len(counted) != self.decisions.stable_count or (
                self.decisions.over_limit and len(counted) <= self.decisions.approved):
            self._start_burst(sample.at + self._config.burst_interval_s)
        return events


def evidence_jpeg(frame: av.VideoFrame, boxes: list[tuple[float, float, float, float]],
                  quality: int = 5) -> bytes:
    """The frame as JPEG with ``boxes`` drawn in red (runs in a worker thread)."""
    rgb = frame.to_ndarray(format="rgb24")
    h, w = rgb.shape[:2]
    t = max(2, round(min(w, h) / 240))
    for x1, y1, x2, y2 in boxes:
        a, b = int(max(0, x1)), int(max(0, y1))
        c, d = int(min(w, x2)), int(min(h, y2))
        if c <= a or d <= b:
            continue
        for ys, xs in ((slice(b, min(b + t, d)), slice(a, c)), (slice(max(d - t, b), d), slice(a, c)),
                       (slice(b, d), slice(a, min(a + t, c))), (slice(b, d), slice(max(c - t, a), c))):
            rgb[ys, xs] = (255, 0, 0)
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height = w - w % 2, h - h % 2
    enc.pix_fmt = "yuvj420p"
    enc.time_base = Fraction(1, 1)
    enc.options = {"qscale": str(quality)}
    enc.flags |= av.codec.context.Flags.qscale
    out = av.VideoFrame.from_ndarray(rgb[:enc.height, :enc.width], format="rgb24").reformat(
        format="yuvj420p")
    out.pts = 0
    return b"".join(bytes(p) for p in enc.encode(out)) + b"".join(bytes(p) for p in enc.encode(None))
