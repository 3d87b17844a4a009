"""Per-leg face-count decisions over several samples. Emits events; decides nothing about a call.

A sample's count is the number of faces with score >= ``face_score_min`` whose box is at
least ``face_min_px`` on its shorter side (source pixels). One sample never decides:

- ``over_limit``: at least ``confirm_m`` of the last ``confirm_n`` samples counted more faces
  than approved. Emitted once; nothing more is emitted for it until ``cleared``.
- ``cleared``: after ``over_limit``, at least ``clear_m`` of the last ``clear_n`` samples
  counted no more than approved.
- ``count_changed``: a count seen in at least ``confirm_m`` of the last ``confirm_n``
  samples that differs from the previous such count (the leg starts at 0).

Samples older than the window (``max(confirm_n, clear_n) + 1`` sampling intervals) are
forgotten, so evidence from before a gap in the video never combines with a new sample.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from vision.detector import Face
from vision.settings import VisionSettings

EventKind = Literal["count_changed", "over_limit", "cleared"]


@dataclass
class VisionEvent:
    kind: EventKind
    leg_key: str
    count: int
    """The count the decision rests on (seen in at least M of the last N samples)."""
    approved: int
    at: float
    """The ``now`` of the sample that completed the decision."""
    boxes: list[tuple[float, float, float, float]]
    """Faces counted in that sample, x1, y1, x2, y2 in source pixels."""
    scores: list[float]
    evidence_jpeg: bytes | None = None
    """That sample's frame as JPEG with the counted boxes drawn, for the audit trail."""
    raw_counts: list[int] = field(default_factory=list)
    """The per-sample counts in the window the decision looked at, oldest first."""


def counted_faces(faces: list[Face], config: VisionSettings) -> list[Face]:
    """The faces that count: confident enough and big enough."""
    return [f for f in faces
            if f.score >= config.face_score_min
            and min(f.width, f.height) >= config.face_min_px]


class LegDecisions:
    def __init__(self, leg_key: str, approved: int, config: VisionSettings) -> None:
        self.leg_key = leg_key
        self.approved = approved
        self._config = config
        self._window: deque[tuple[float, int]] = deque(maxlen=max(config.confirm_n, config.clear_n))
        self._max_age = (self._window.maxlen + 1) * config.sample_interval_s  # type: ignore[operator]
        self.stable_count = 0
        self.over_limit = False

    def counts(self, last: int) -> list[int]:
        return [c for _, c in list(self._window)[-last:]]

    def update(self, faces: list[Face], at: float) -> list[VisionEvent]:
        """Add one sample's (already counted) faces; the events it completes, in order."""
        cfg = self._config
        while self._window and at - self._window[0][0] > self._max_age:
            self._window.popleft()
        self._window.append((at, len(faces)))
        events: list[EventKind] = []
        confirm = self.counts(cfg.confirm_n)

        # A count agreed on by M of the last N samples; keep the old one when none is.
        agreed = [v for v in set(confirm) if confirm.count(v) >= cfg.confirm_m]
        if agreed and max(agreed) != self.stable_count:
            self.stable_count = max(agreed)
            events.append("count_changed")

        over_count = sorted(confirm, reverse=True)[cfg.confirm_m - 1] if len(confirm) >= cfg.confirm_m else 0
        clear = self.counts(cfg.clear_n)
        if not self.over_limit:
            if sum(c > self.approved for c in confirm) >= cfg.confirm_m:
                self.over_limit = True
                events.append("over_limit")
        elif sum(c <= self.approved for c in clear) >= cfg.clear_m:
            self.over_limit = False
            events.append("cleared")

        def count_for(kind: EventKind) -> int:
            if kind == "over_limit":
                return over_count  # at least M samples saw this many faces or more
            if kind == "cleared":
                return sorted(clear)[cfg.clear_m - 1]  # at least M saw this many or fewer
            return self.stable_count

        return [
            VisionEvent(kind=k, leg_key=self.leg_key, count=count_for(k), approved=self.approved,
                        at=at, boxes=[f.box for f in faces], scores=[f.score for f in faces],
                        raw_counts=self.counts(len(self._window)))
            for k in events
        ]
