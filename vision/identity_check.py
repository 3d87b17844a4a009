"""In-call re-identification of one leg's faces: when to check, and M-of-N decisions.

A check computes every counted face's descriptor (vision.identity, on the identity thread)
and matches it against the booking's enrolled people for that side. A check is *due* when
the face count changed since the last sample, when a face does not overlap any face of the
previous sample (a new track), when a face's appearance jumped (:func:`face_look`), while the
latest check disagrees with the leg's state (a suspicion is confirmed or dropped at once), on
every sample while the leg is unmatched, and otherwise every ``identity_interval_s``: a
descriptor costs far more than a detection (docs/identity.md).

A check is run one at a time per leg (:attr:`LegIdentity.running`); a sample due meanwhile is
held, the newest replacing an older one, never queued without bound (a backlog of checks
delayed the one that mattered by seconds: docs/identity.md).

Decisions, like the count rule's, never rest on one check:

- ``unmatched``: at least ``identity_confirm_m`` of the last ``identity_confirm_n`` checks
  saw a face that matches nobody enrolled for the side. Emitted once, until ``matched``.
- ``matched``: after ``unmatched``, ``identity_clear_m`` of the last ``identity_clear_n``
  checks saw every face matched (or no face).

Checks older than the window (``identity_confirm_n + 1`` intervals) are forgotten.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vision.detector import Face
from vision.eval import iou
from vision.identity import Match, best_match
from vision.settings import VisionSettings

IdentityKind = Literal["unmatched", "matched"]
Reason = Literal["", "count", "new_face", "look", "confirm", "unmatched", "steady"]
"""Why a check is due ("" when it is not); count, new_face and look are :data:`CHANGES`."""
CHANGES: frozenset[str] = frozenset({"count", "new_face", "look"})
"""The reasons that are changes in the picture (what the swap test expects to catch a swap)."""
HISTORY = 64
"""Finished checks remembered per leg (:attr:`LegIdentity.history`)."""
NEW_TRACK_IOU = 0.3
LOOK_PX = 16
LOOK_INNER = 0.15
"""Margin left out of each side of the box: the background behind a face (a scrolling one
in the bench's clip) must not count as a change of face."""


def face_look(image_bgr: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """A face's appearance, cheaply: the inside of its box as 16x16 grey, normalised for brightness and
    contrast. Someone else sitting down in the same place changes it far more than moving
    or talking does (about 1.0 against 0.1-0.4 on the swap test clip; but 0.2-0.9 on the bench clip, whose faces scale and drift over a scrolling background at 45-60 px), so a
    jump triggers a check at once instead of at the next steady one (the swap latency)."""
    h, w = image_bgr.shape[:2]
    mx, my = LOOK_INNER * (box[2] - box[0]), LOOK_INNER * (box[3] - box[1])
    x1, y1 = max(0, int(box[0] + mx)), max(0, int(box[1] + my))
    x2, y2 = min(w, max(x1 + 1, int(box[2] - mx))), min(h, max(y1 + 1, int(box[3] - my)))
    crop = image_bgr[y1:y2, x1:x2].mean(axis=2)
    ys = np.linspace(0, crop.shape[0] - 1, LOOK_PX).astype(int)
    xs = np.linspace(0, crop.shape[1] - 1, LOOK_PX).astype(int)
    grey = crop[np.ix_(ys, xs)].astype(np.float32)
    return (grey - grey.mean()) / (grey.std() + 1e-3)


@dataclass(frozen=True)
class CheckRecord:
    """One finished check, for the bench and tests: why it ran and what it saw."""

    at: float
    """The sample's time (the relay's monotonic ``now`` when its frame was offered)."""
    done: float
    """``time.monotonic()`` when its descriptors were matched."""
    reason: Reason
    stranger: bool
    """Whether it saw a face that matches nobody enrolled."""


@dataclass
class IdentityEvent:
    kind: IdentityKind
    leg_key: str
    at: float
    boxes: list[tuple[float, float, float, float]]
    """The faces of the check that completed the decision, source pixels."""
    matches: list[tuple[str | None, float]]
    """Per box: the enrolled person it matched (None: nobody) and the distance."""
    evidence_jpeg: bytes | None = None
    window: list[bool] = field(default_factory=list)
    """Per check in the window, oldest first: whether it saw an unmatched face."""


class LegIdentity:
    """The identity side of one leg: its gallery, when to check, and the decisions."""

    def __init__(
        self,
        leg_key: str,
        gallery: dict[str, list[np.ndarray]],
        config: VisionSettings,
        *,
        start_unmatched: bool = False,
    ) -> None:
        self.leg_key = leg_key
        self.gallery = gallery
        self.config = config
        self.unmatched = start_unmatched
        self._window: deque[tuple[float, bool]] = deque(
            maxlen=max(config.identity_confirm_n, config.identity_clear_n)
        )
        self._previous: list[Face] = []
        self._looks: list[np.ndarray] = []
        self._last_check = float("-inf")
        self.checks = 0
        self.reason: Reason = ""
        """Why the latest sample given to :meth:`due` was (or was not) due."""
        self.running: Reason | None = None
        """The reason of the check in flight; None when none is (set by the service)."""
        self.held: tuple[object, list[Face], Reason] | None = None
        """The newest sample due while a check runs: (sample, faces, why it is due)."""
        self.history: deque[CheckRecord] = deque(maxlen=HISTORY)
        self.by_reason: Counter[str] = Counter()
        """Checks run, by why they ran (the soak bench reports it)."""
        self.stranger_checks = 0
        """Checks that saw a face matching nobody enrolled (a pause needs M of N of them)."""
        self.last: list[tuple[tuple[float, float, float, float], str | None, float]] = []
        """The latest check's faces: (box, enrolled person or None, distance), for staff."""

    def due(self, faces: list[Face], now: float, looks: list[np.ndarray] | None = None) -> bool:
        """Whether this sample's ``faces`` (counted, source pixels) should be checked; also
        remembers them as the previous sample's and sets :attr:`reason`. ``looks``
        (:func:`face_look`, per face): a face whose appearance jumped since the previous
        sample is checked at once."""
        self.reason = self._reason(faces, now, looks)
        return bool(self.reason)

    def _reason(self, faces: list[Face], now: float, looks: list[np.ndarray] | None) -> Reason:
        previous, self._previous = self._previous, faces
        before, self._looks = self._looks, looks or []
        if not faces or not self.gallery:
            return ""
        if len(faces) != len(previous):
            return "count"
        overlaps = [
            max(range(len(previous)), key=lambda i: iou(f.box, previous[i].box)) for f in faces
        ]
        if any(
            iou(f.box, previous[i].box) < NEW_TRACK_IOU
            for f, i in zip(faces, overlaps, strict=True)
        ):
            return "new_face"
        if (
            looks
            and len(before) == len(previous)
            and any(
                float(np.abs(look - before[i]).mean()) > self.config.identity_look_change
                for look, i in zip(looks, overlaps, strict=True)
            )
        ):
            return "look"
        if self.pending():
            return "confirm"
        if self.unmatched:
            return "unmatched"
        if now - self._last_check >= self.config.identity_interval_s:
            return "steady"
        return ""

    def pending(self) -> bool:
        """The latest check disagrees with the leg's state (a stranger while matched, all
        matched while unmatched): sample and check quickly to confirm or drop it. Agreeing
        checks are not hurried, so a pause does not keep the identity thread busy."""
        return bool(self._window) and self._window[-1][1] != self.unmatched

    def checked(
        self, faces: list[Face], vectors: list[np.ndarray], now: float
    ) -> IdentityEvent | None:
        """Record one check; the event it completes, if any."""
        cfg = self.config
        self.checks += 1
        self._last_check = now
        matches: list[Match] = [
            best_match(v, self.gallery, cfg.identity_threshold) for v in vectors
        ]
        bad = any(m.person is None for m in matches)
        self.last = [
            (f.box, m.person, round(m.distance, 4)) for f, m in zip(faces, matches, strict=True)
        ]
        max_age = (self._window.maxlen + 1) * cfg.identity_interval_s  # type: ignore[operator]
        while self._window and now - self._window[0][0] > max_age:
            self._window.popleft()
        self._window.append((now, bad))
        self.history.append(CheckRecord(now, time.monotonic(), self.running or "", bad))
        self.by_reason[self.running or ""] += 1
        self.stranger_checks += bad
        recent = [b for _, b in self._window]
        kind: IdentityKind | None = None
        if not self.unmatched and sum(recent[-cfg.identity_confirm_n :]) >= cfg.identity_confirm_m:
            self.unmatched, kind = True, "unmatched"
        elif (
            self.unmatched
            and sum(not b for b in recent[-cfg.identity_clear_n :]) >= cfg.identity_clear_m
        ):
            self.unmatched, kind = False, "matched"
        if kind is None:
            return None
        return IdentityEvent(
            kind,
            self.leg_key,
            now,
            [f.box for f in faces],
            [(m.person, round(m.distance, 4)) for m in matches],
            window=recent,
        )
