"""Whether vision keeps up: samples per leg against the configured rate, and decision latency.

Under load the detector falls behind without anyone noticing: media still flows, the call
looks healthy, but an unapproved person is seen late or not at all. This module turns each
sampler's record of finished checks into figures the relay exports, alerts staff on and
admits new calls by (relay/calls/vision_health.py).

A leg is judged only once it has had video for the whole window (a gap in the video restarts
its window: no frames is a media problem, reported by media health, not vision falling
behind). It is *behind* when it finished fewer than ``min_fraction`` of the configured
samples in the window (less one, for where the window's edges fall), or when the 95th percentile of its sampling-to-decision latency in
the window is over ``max_latency_s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vision.sampler import VIDEO_GAP_INTERVALS
from vision.settings import VisionSettings

if TYPE_CHECKING:
    from vision.sampler import LegSampler


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(0.95 * len(ordered)) - 1))]


@dataclass(frozen=True)
class LegHealth:
    leg_key: str
    rate: float
    """Checks finished per second over the window."""
    latency_p95_s: float | None
    behind: bool


@dataclass(frozen=True)
class VisionHealth:
    configured_rate: float
    """Samples per leg per second the settings ask for (1 / sample_interval_s)."""
    legs: int
    """Legs with a sampler."""
    judged: list[LegHealth] = field(default_factory=list)
    """Legs with video for the whole window."""
    latency_p95_s: float | None = None
    """Over every leg's checks finished in the window."""
    queue_depth: int = 0
    """Samples waiting for the detector."""
    in_flight: int = 0
    """Decodes, waiting samples and detections under way."""

    @property
    def behind(self) -> list[str]:
        return [leg.leg_key for leg in self.judged if leg.behind]

    @property
    def rate_min(self) -> float | None:
        return min((leg.rate for leg in self.judged), default=None)

    @property
    def rate_mean(self) -> float | None:
        return sum(leg.rate for leg in self.judged) / len(self.judged) if self.judged else None


def assess(
    samplers: Sequence[LegSampler],
    config: VisionSettings,
    window_s: float,
    min_fraction: float,
    max_latency_s: float,
    now: float,
    *,
    queue_depth: int = 0,
    in_flight: int = 0,
) -> VisionHealth:
    """The health of these samplers over the ``window_s`` before ``now`` (time.monotonic())."""
    configured = 1.0 / config.sample_interval_s
    stale_s = config.sample_interval_s * VIDEO_GAP_INTERVALS
    judged = []
    latencies: list[float] = []
    start = now - window_s
    for s in samplers:
        if s.closed:
            continue
        recent = [lat for at, lat in s.checked if at > start]
        latencies += recent
        if s.watched_since is None or s.watched_since > start or now - s.last_frame_at > stale_s:
            continue
        rate = len(recent) / window_s
        p95 = _p95(recent)
        # one sample of slack for where the window's edges fall between two samples
        short = len(recent) + 1 < min_fraction * configured * window_s
        behind = short or (p95 is not None and p95 > max_latency_s)
        judged.append(LegHealth(s.leg_key, rate, p95, behind))
    return VisionHealth(
        configured,
        sum(not s.closed for s in samplers),
        judged,
        _p95(latencies),
        queue_depth,
        in_flight,
    )
