"""Per-leg sampling of the encoded video the relay forwards.

The relay hands each leg's :class:`LegSampler` the complete encoded video frames it forwards
(:meth:`LegSampler.offer_frame`, on the event loop). The sampler never decodes on the loop:

- **every-frame mode** (the default, ``needs_all_frames = True``): ``offer_frame`` only keeps
  the encoded frames in a list. Every :data:`DECODE_GROUP` frames, or when a sample is due,
  the list goes to the service's decode thread in one hop, which decodes it in order (VP8/H.264
  inter frames need their predecessors) and converts only a sampled frame. The decoding is off
  the loop and costs a few thread hops a second, not one per frame. No keyframe requests are
  needed after the first.
- **keyframe mode** (``DetectorService(keyframes_only=True)``): ``keyframe_wanted`` asks for
  a keyframe shortly before a sample is due and, in the steady state, only that keyframe is
  decoded; the inter frames after it are kept, not decoded. When a sample's count differs
  (a burst), the kept frames are decoded in order from that keyframe and every frame is
  decoded until the burst is over, so the burst's samples need no further keyframes. Cheaper
  in relay CPU, dearer in bandwidth and picture quality for everyone on the call (a keyframe
  a sampling interval). See ``docs/vision.md`` for the measurements behind the default.
  Between steady samples the leg holds no decoder (its reference frames are 2.4 MB at VGA):
  a steady keyframe is decoded by a fresh one, which is dropped after it, and the sampler
  keeps that keyframe's bytes, so a burst decodes from it again.

Sampling: one sample every ``sample_interval_s``; a burst of ``burst_samples`` samples
``burst_interval_s`` apart when a sample's count differs from the leg's agreed count. In
every-frame mode a cheap frame difference (see :func:`changed_fraction`) takes a sample at once
between the regular ones when something changes away from the faces already known.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import numpy as np

from vision.convert import reformat, to_array
from vision.decisions import LegDecisions, VisionEvent, counted_faces
from vision.detector import Face, letterbox_frame
from vision.settings import VisionSettings

if TYPE_CHECKING:
    from vision.identity_check import IdentityEvent, LegIdentity
    from vision.service import DetectorService
    from vision.worker_client import RemoteFrame

log = logging.getLogger(__name__)

DECODERS = {"VP8": "vp8", "H264": "h264"}
"""FFmpeg's own decoders: as fast as libvpx here, and they honour ``skip_frame``."""

MAX_BUFFERED_FRAMES = 300
"""Encoded frames kept for the decode thread before giving up and waiting for a keyframe
(10 s at 30 fps: reached only when the decode thread is stuck)."""
DECODE_GROUP = 6
KEYFRAME_LEAD_S = 0.15
KEYFRAME_RETRY_S = 0.7
"""A keyframe is asked for once, and again only if none came within this long (more than
the relay's 0.5 s throttle, less than a sampling interval less the lead): asking on every
frame until it arrives would make the throttle send a second request, and the sender a
second keyframe, half a second later."""
"""Keyframe mode: a keyframe is asked for this long before a sample is due, and one arriving
this early counts as due (about the sender's round trip), so samples keep to the interval."""
"""Between samples, encoded frames go to the decode thread in groups of this many (0.2 s at
30 fps): a few thread hops a second per leg, and a fresh picture for the motion check."""

# The cheap frame difference: the luma of the newest decoded frame, one pixel in 8 each way,
# against the previous group's. Cells near the faces already known (a generous region around
# each face and down to the bottom of the frame, for the body) are left out, so the approved
# person moving does not count; a change elsewhere - someone coming in - samples at once.
THUMB_STEP = 8
MOTION_LUMA = 24
"""A cell has changed when its luma moved by more than this (VP8 noise is a few units)."""
MOTION_MIN_FRACTION = 0.004
"""At least this fraction of the cells must change (a 40x40 pixel patch of a VGA frame)..."""
MOTION_MAX_FRACTION = 0.4
"""...and at most this fraction: more is the camera moving or the light changing."""
MOTION_COOLDOWN_S = 1.0
"""At most one motion-triggered sample per leg per this many seconds (bounds the CPU)."""

VIDEO_GAP_INTERVALS = 3
"""No frame for this many sampling intervals is a gap in the video, not vision falling behind."""
HEALTH_HISTORY = 256
"""Checks remembered per leg for the health figures (a minute at the highest burst rate)."""

Box = tuple[float, float, float, float]


@dataclass
class Sample:
    """A sampled frame on its way to the detector."""

    sampler: LegSampler
    image: np.ndarray | None
    """BGR, letterboxed to the detector's input size (None: it stays in the detector process)."""
    scale: float
    """Detector pixels per source pixel."""
    frame: av.VideoFrame | RemoteFrame
    """The decoded frame, for the evidence JPEG of an event (or its handle in the process)."""
    at: float
    """The relay's ``now`` when the frame was offered."""
    taken: float
    """``time.perf_counter()`` when it was taken, for the sample-to-decision latency."""
    motion: bool = False
    """Taken because the frame difference fired, not on schedule."""
    looks: list[np.ndarray] | None = None
    """Worker mode: ``face_look`` of each face the detector found, computed in the process."""


@dataclass
class Decoded:
    frame: av.VideoFrame | RemoteFrame
    image: np.ndarray | None
    scale: float
    motion: bool


def luma_thumbnail(frame: av.VideoFrame) -> np.ndarray:
    plane = frame.planes[0]
    y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height, : frame.width]
    return y[::THUMB_STEP, ::THUMB_STEP].astype(np.int16)


def changed_fraction(now: np.ndarray, before: np.ndarray, known: list[Box]) -> float:
    changed = np.abs(now - before) > MOTION_LUMA
    rows, cols = changed.shape
    for x1, y1, x2, y2 in known:
        w, h = x2 - x1, y2 - y1
        c1, c2 = int((x1 - w) / THUMB_STEP), int((x2 + w) / THUMB_STEP) + 1
        r1 = int((y1 - h / 2) / THUMB_STEP)
        changed[max(0, r1):, max(0, c1):min(cols, c2)] = False
    return float(changed.mean())


class _Decoder:
    """One leg's decoder and last thumbnail. Used only from the service's decode thread."""

    def __init__(self) -> None:
        self._codec = ""
        self._ctx: av.CodecContext | None = None
        self._thumb: np.ndarray | None = None

    def decode(self, codec: str, frames: list[bytes], keyframes_only: bool,
               size: tuple[int, int], want_sample: bool, motion_allowed: bool,
               known: list[Box], release: bool = False) -> Decoded | None:
        """Decode ``frames`` in order; the sample's frame and image if one is wanted.

        ``release``: ``frames`` start at a keyframe and nothing follows from this decoder's
        state (keyframe mode's steady state): drop the decoder afterwards. The frame returned
        keeps its own picture buffer.
        """
        try:
            return self._decode(codec, frames, keyframes_only, size, want_sample,
                                motion_allowed, known)
        finally:
            if release:
                self._ctx = None

    def _decode(self, codec: str, frames: list[bytes], keyframes_only: bool,
                size: tuple[int, int], want_sample: bool, motion_allowed: bool,
                known: list[Box]) -> Decoded | None:
        if self._ctx is None or codec != self._codec:
            self._ctx = av.CodecContext.create(DECODERS[codec], "r")
            self._ctx.thread_count = 1  # no per-leg decoder threads on a small machine
            self._codec = codec
            self._thumb = None
        last = None
        try:
            for data in frames:
                for frame in self._ctx.decode(av.Packet(data)):
                    last = frame
        except Exception:
            self._ctx, self._thumb = None, None  # start clean from the next keyframe
            raise
        if last is None:
            return None
        motion = False
        if not keyframes_only:
            thumb = luma_thumbnail(last)
            before, self._thumb = self._thumb, thumb
            if (motion_allowed and not want_sample and before is not None
                    and before.shape == thumb.shape):
                fraction = changed_fraction(thumb, before, known)
                motion = MOTION_MIN_FRACTION <= fraction <= MOTION_MAX_FRACTION
        if not (want_sample or motion):
            return None
        image, scale = letterbox_frame(last, size)
        return Decoded(last, image, scale, motion)


class LegSampler:
    needs_all_frames: bool

    def __init__(self, service: DetectorService, leg_key: str, approved: int,
                 on_event: Callable[[VisionEvent], None], config: VisionSettings,
                 keyframes_only: bool = False, enabled: bool = True) -> None:
        self.leg_key = leg_key
        self.on_event = on_event
        self.identity: LegIdentity | None = None
        """Set once the booking's enrolled faces for this side are loaded (in-call re-checks)."""
        self.on_identity: Callable[[IdentityEvent], None] | None = None
        self.decisions = LegDecisions(leg_key, approved, config)
        self.needs_all_frames = enabled
        """Both modes keep the inter frames (keyframe mode decodes them only in a burst)."""
        self._service = service
        self._config = config
        self._keyframes_only = keyframes_only
        self._enabled = enabled
        self._decoder = _Decoder()
        self._codec = ""
        self._buffer: list[bytes] = []
        self._replay: bytes | None = None
        """Keyframe mode: the keyframe a steady sample decoded (and released the decoder
        after); ``_buffer`` holds the frames after it, so a burst decodes it again first."""
        self._synced = False  # a keyframe has been seen since the start / the last error
        self._following = False  # keyframe mode: decoding every frame for a burst
        self._asked_at = float("-inf")  # when keyframe_wanted last said yes
        self._decoding = False
        self._next_at = float("-inf")
        self._burst_left = 0
        self._last_motion_at = float("-inf")
        self._known: list[Box] = []  # the faces counted in the last sample
        self.closed = False
        # health (vision/health.py), on time.monotonic(): when video first and last came,
        # and each finished check as (when, seconds from sampling to decision)
        self.watched_since: float | None = None
        self.last_frame_at = float("-inf")
        self.checked: deque[tuple[float, float]] = deque(maxlen=HEALTH_HISTORY)

    # --- called by the relay, on the event loop ------------------------------------------
    def keyframe_wanted(self, now: float) -> bool:
        """Whether to ask the sender for a keyframe now; a yes counts as asked."""
        if self.closed or not self._enabled:
            return False
        wanted = not self._synced or (
            self._keyframes_only and not self._following and not self._decoding
            and now >= self._next_at - KEYFRAME_LEAD_S)
        if not wanted or now - self._asked_at < KEYFRAME_RETRY_S:
            return False
        self._asked_at = now  # the caller asks now (see KEYFRAME_RETRY_S)
        return True

    def offer_frame(self, codec: str, data: bytes, keyframe: bool, now: float) -> None:
        if self.closed or not self._enabled:
            return
        mono = time.monotonic()
        if mono - self.last_frame_at > self._config.sample_interval_s * VIDEO_GAP_INTERVALS:
            self.watched_since = mono  # video (re)started: the health window starts again
        self.last_frame_at = mono
        if codec != self._codec:
            if codec not in DECODERS:
                return
            self._codec = codec
            self._buffer = []
            self._replay = None
            self._synced = False
        if keyframe:
            self._buffer = [data]
            self._replay = None
            self._synced = True
        elif not self._synced:
            return
        else:
            self._buffer.append(data)
            if len(self._buffer) > MAX_BUFFERED_FRAMES:
                self._buffer, self._replay = [], None
                self._synced = self._following = False
                self._service.stats.resyncs += 1
                return
        if self._decoding:
            return
        if self._keyframes_only and not self._following:
            # steady state: decode only a keyframe that falls due; keep what follows it
            if keyframe and now >= self._next_at - KEYFRAME_LEAD_S:
                frames, self._buffer = self._buffer, []
                self._replay = data
                self._submit(frames, now, want_sample=True, release=True)
            return
        due = now >= self._next_at
        if due or len(self._buffer) >= DECODE_GROUP:
            frames, self._buffer = self._buffer, []
            if self._replay is not None:  # the decoder was released after that keyframe
                frames.insert(0, self._replay)
                self._replay = None
            self._submit(frames, now, want_sample=due)

    def set_approved(self, n: int) -> None:
        self.decisions.approved = n

    def resume_over_limit(self) -> None:
        """Start as if over the limit were already confirmed (a pause for this side is in
        force from an earlier stream), so a clear picture emits "cleared"."""
        self.decisions.over_limit = True

    def resync(self) -> None:
        """Forget the decoder's state (its process was lost): start again from a keyframe."""
        self._buffer, self._replay = [], None
        self._synced = self._following = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._buffer, self._replay = [], None
            self._service._leg_closed(self)

    # --- internals -----------------------------------------------------------------------
    def _start_burst(self, first_at: float) -> None:
        if self._burst_left <= 0:
            self._burst_left = self._config.burst_samples
        self._next_at = min(self._next_at, first_at)
        self._following = self._keyframes_only

    def _schedule_after_sample(self, at: float) -> None:
        cfg = self._config
        if self._burst_left > 0:
            self._burst_left -= 1
            self._next_at = at + cfg.burst_interval_s
        else:
            self._next_at = at + cfg.sample_interval_s
            self._following = False  # keyframe mode: back to decoding keyframes only

    def _submit(self, frames: list[bytes], now: float, want_sample: bool,
                release: bool = False) -> None:
        if want_sample:
            self._schedule_after_sample(now)
        self._decoding = True
        try:
            self._service._decode(
                self, self._decoder, self._codec, frames, self._keyframes_only, now,
                time.perf_counter(), want_sample,
                motion_allowed=now - self._last_motion_at >= MOTION_COOLDOWN_S,
                known=self._known, release=release)
        except Exception:  # never let vision break the relay's forwarding path
            log.exception("vision: leg %s: cannot hand frames over", self.leg_key)
            self._decoding = False

    def _decoded(self, result: Decoded | None, error: BaseException | None, at: float,
                 taken: float) -> Sample | None:
        """Back on the loop after decoding: the sample to detect on, if any."""
        self._decoding = False
        if error is not None:
            log.info("vision: leg %s: cannot decode (%s); waiting for a keyframe",
                     self.leg_key, error)
            self._synced = False
            self._following = False
            self._buffer, self._replay = [], None
            return None
        if result is None or self.closed:
            return None
        if result.motion:
            self._last_motion_at = at
            self._service.stats.motion_samples += 1
            if self._burst_left <= 0:
                self._next_at = at + self._config.sample_interval_s
        return Sample(self, result.image, result.scale, result.frame, at, taken, result.motion)

    def _detected(self, sample: Sample, faces: list[Face]) -> list[VisionEvent]:
        """Back on the loop after detection: update the decisions and the sampling pace."""
        counted = counted_faces([f.scaled(1.0 / sample.scale) for f in faces], self._config)
        self._known = [f.box for f in counted]
        events = self.decisions.update(counted, sample.at)
        if len(counted) != self.decisions.stable_count or (
                self.decisions.over_limit and len(counted) <= self.decisions.approved):
            self._start_burst(sample.at + self._config.burst_interval_s)
        return events


def evidence_jpeg(frame: av.VideoFrame | RemoteFrame,
                  boxes: list[tuple[float, float, float, float]], quality: int = 5) -> bytes:
    """The frame as JPEG with ``boxes`` drawn in red (runs in a worker thread)."""
    if not isinstance(frame, av.VideoFrame):  # encoded where the frame is, the detector process
        return frame.evidence_jpeg(boxes, quality)
    rgb = to_array(frame, "rgb24")
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
    out = reformat(av.VideoFrame.from_ndarray(rgb[:enc.height, :enc.width], format="rgb24"),
                   "yuvj420p")
    out.pts = 0
    return b"".join(bytes(p) for p in enc.encode(out)) + b"".join(bytes(p) for p in enc.encode(None))
