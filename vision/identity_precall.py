"""The check before the call: is a face on this leg's camera one of the side's enrolled people?

Until it is, the relay holds the leg's media (relay/calls/identity_gate.py). Each sample the
detector sees while the check is open is assessed here, on the identity thread: the counted
faces' descriptors are matched against the side's gallery, and what stands in the way of a
match becomes a *finding* the joining page turns into guidance:

- ``look_at_camera``: no face, or a face that matches nobody (turned away, or not them);
- ``come_closer``: the largest face is under ``identity_precall_min_face_px`` high;
- ``more_light`` / ``less_light``: the face's mean luma is outside the photo check's range;
- ``only_booked_people``: someone matched, but another face matches nobody;
- ``main_person_missing``: faces matched, but not the person who must be there (the main
  visitor, when enrolled).

A check *passes* when every counted face matches someone enrolled (and the required person is
among them); the leg is admitted after ``identity_precall_matches`` passing checks in a row,
so one lucky frame of a stranger does not open the call (per-frame FAR 0.3 % at the default
threshold, docs/identity.md). Nothing here imports from ``relay``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vision.detector import Face
from vision.identity import best_match
from vision.settings import VisionSettings

Finding = Literal[
    "look_at_camera",
    "come_closer",
    "more_light",
    "less_light",
    "only_booked_people",
    "main_person_missing",
]
FINDINGS: tuple[str, ...] = Finding.__args__  # type: ignore[attr-defined]


@dataclass
class SeenFace:
    box: tuple[float, float, float, float]
    person: str | None
    """The enrolled person it matched (gallery key), None: nobody."""
    distance: float


@dataclass
class PrecallResult:
    passed: bool
    """This check passed (every face matched, the required person among them)."""
    admitted: bool
    """Enough passing checks in a row: the leg may be admitted."""
    finding: str | None
    faces: list[SeenFace]
    checks: int
    failures: int
    """Checks with a face that did not pass (staff are alerted after enough of them)."""
    vectors: list[np.ndarray] = field(default_factory=list, repr=False)
    """This check's descriptors (a staff admission adds them to the leg's gallery)."""
    evidence_jpeg: bytes | None = None


def face_luma(image_bgr: np.ndarray, face: Face) -> float:
    """Mean luma (BT.601) of the face box: the "more light" guidance."""
    h, w = image_bgr.shape[:2]
    x1, y1 = max(0, int(face.x1)), max(0, int(face.y1))
    x2, y2 = min(w, int(face.x2) + 1), min(h, int(face.y2) + 1)
    crop = image_bgr[y1:y2, x1:x2].astype(np.float32)
    if crop.size == 0:
        return 128.0
    b, g, r = crop[..., 0].mean(), crop[..., 1].mean(), crop[..., 2].mean()
    return float(0.114 * b + 0.587 * g + 0.299 * r)


class PrecallCheck:
    """One leg's open check before the call: its gallery and the run of passing checks."""

    def __init__(
        self,
        leg_key: str,
        gallery: dict[str, list[np.ndarray]],
        config: VisionSettings,
        *,
        required: str | None = None,
    ) -> None:
        self.leg_key = leg_key
        self.gallery = gallery
        self.config = config
        self.required = required if required in gallery else None
        self.checks = 0
        self.failures = 0
        self._passed_in_row = 0
        self.in_flight = False
        self.done = False
        self.last: PrecallResult | None = None

    def due(self) -> bool:
        """Every sample is checked while the check is open, one at a time."""
        return not self.done and not self.in_flight

    def checked(
        self, faces: list[Face], vectors: list[np.ndarray], lumas: list[float]
    ) -> PrecallResult:
        """Record one check of ``faces`` (counted, source pixels) and what it found."""
        cfg = self.config
        self.checks += 1
        seen = []
        for face, vector in zip(faces, vectors, strict=True):
            match = best_match(vector, self.gallery, cfg.identity_threshold)
            seen.append(SeenFace(face.box, match.person, round(match.distance, 4)))
        matched = {s.person for s in seen if s.person is not None}
        unmatched = [i for i, s in enumerate(seen) if s.person is None]
        passed = (
            bool(seen) and not unmatched and (self.required is None or self.required in matched)
        )
        finding: str | None = None
        if not passed:
            finding = self._finding(faces, seen, unmatched, lumas)
        self._passed_in_row = self._passed_in_row + 1 if passed else 0
        if not passed and faces:  # an empty picture is guidance, not a failed attempt
            self.failures += 1
        admitted = self._passed_in_row >= cfg.identity_precall_matches
        if admitted:
            self.done = True
        result = PrecallResult(
            passed, admitted, finding, seen, self.checks, self.failures, vectors=list(vectors)
        )
        self.last = result
        return result

    def _finding(
        self, faces: list[Face], seen: list[SeenFace], unmatched: list[int], lumas: list[float]
    ) -> str:
        cfg = self.config
        if not faces:
            return "look_at_camera"
        if len(unmatched) < len(seen):
            return "only_booked_people" if unmatched else "main_person_missing"
        largest = max(range(len(faces)), key=lambda i: faces[i].height)
        if faces[largest].height < cfg.identity_precall_min_face_px:
            return "come_closer"
        if lumas[largest] < cfg.identity_photo_min_brightness:
            return "more_light"
        if lumas[largest] > cfg.identity_photo_max_brightness:
            return "less_light"
        return "look_at_camera"
