"""Evaluate face identity on a labelled folder: FAR, FRR, EER and the distance distributions.

    python -m vision.eval identity --set DIR [--camera] [--json]

``DIR/<person>/<n>.jpg``: the first photo (by name) of each person is enrolled; every photo
is then matched against every enrolled person: a photo other than the enrolment against its
own person is a *genuine* attempt, any photo against another person an *impostor* attempt.
A genuine attempt is rejected when its distance is over the threshold or no face is found:
the FRR is the failures to acquire (FTA, no face) plus the non-matches of the acquired
(FNMR), as ISO/IEC 19795-1 counts them; the report gives all three, and which view, person
and source each rejection comes from. An impostor attempt is accepted when under it.

``--camera`` matches the photos as a camera would show them instead: each face is placed in
a 640x480 frame at several heights (60-200 px) and lighting (darker, as is, brighter), the
frames are VP8-coded and decoded with PyAV, then detected and described like a call's
samples. Enrolment stays on the original photos, as vetting would do it. The enrolment
photo's own camera views are scored beside the headline (``enrolment_photo_views``), not in
it: the same picture re-coded is an easier match than another photo.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vision.decisions import counted_faces
from vision.detector import Detector, Face
from vision.identity import FaceEncoder, PhotoRefusal, check_photo, distance
from vision.settings import VisionSettings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
FRAME_SIZE = (640, 480)
CAMERA_FACE_PX = (60, 90, 130, 200)
CAMERA_LIGHT = {"darker": 0.45, "as_is": 1.0, "brighter": 1.6}
FRAMES_PER_VIEW = 15
"""Each view is held for half a second at 30 fps and its last frame is used: a person stays
in front of a camera, and the sampler looks once a second. Right after a jump cut (the face
moved, the light changed) VP8's realtime rate control has not caught up: with 3 frames the
60 px views were mostly blurred enough to be rejected (docs/identity.md)."""
VP8_BITRATE = 500_000
HIST_STEP = 0.05
HIST_MAX = 1.2
CLOSEST_PAIRS = 8
SWEEP = (0.35, 0.4, 0.425, 0.45, 0.475, 0.5, 0.525, 0.55, 0.6)
FAR_TARGET = 0.001
"""The issue's target impostor acceptance (0.1 %): the report gives the largest threshold
that keeps to it on the probes evaluated, and the FRR paid there."""


def load_set(folder: Path) -> dict[str, list[Path]]:
    """person -> photo paths, both sorted by name; people without photos are left out."""
    people: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if photos:
            people[sub.name] = photos
    return people


SPLITS = ("tune", "report")


def split_half(person: str, name: str) -> str:
    """The half a probe photo belongs to: fixed by its name, about half of each person's."""
    return SPLITS[zlib.crc32(f"{person}/{name}".encode()) % 2]


def unverified_groups(folder: Path) -> dict[str, str]:
    """person -> group, for people whose labels are not known to be distinct within a group.

    ``DIR/manifest.json`` (as ``bench.identity_set`` writes it) may mark a source whose
    portraits are of "different people" only by its own word (``"labels_distinct": false``,
    ``"label_group"``): two of its people may be one person, so attempts between them are
    neither genuine nor impostor and are left out. Without a manifest every label counts.
    """
    path = folder / "manifest.json"
    if not path.is_file():
        return {}
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    groups: dict[str, str] = {}
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("labels_distinct") is False:
            groups[str(row.get("person"))] = str(row.get("label_group") or "")
    return groups


def read_bgr(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="bgr24")


def largest_face(faces: list[Face]) -> Face | None:
    return max(faces, key=lambda f: f.height) if faces else None


# --- camera simulation -------------------------------------------------------------------


@dataclass(frozen=True)
class CameraFrame:
    image: np.ndarray
    """Decoded BGR frame, 640x480."""
    face_px: int
    light: str


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
    return frame.reformat(
        width=width, height=height, format="bgr24", interpolation="AREA"
    ).to_ndarray()


def camera_variants(image: np.ndarray, face: Face, seed: int) -> list[CameraFrame]:
    """``face`` of ``image`` placed in 640x480 frames at each height and light, VP8-coded."""
    rng = np.random.default_rng(seed)
    fw, fh = FRAME_SIZE
    h, w = image.shape[:2]
    # Crop the head with a margin of one face height around it, as a webcam frames a person.
    cx, cy = (face.x1 + face.x2) / 2, (face.y1 + face.y2) / 2
    half = face.height * 1.2
    x1, y1 = max(0, int(cx - half)), max(0, int(cy - half))
    x2, y2 = min(w, int(cx + half)), min(h, int(cy + half))
    crop = image[y1:y2, x1:x2]
    raw: list[tuple[np.ndarray, int, str]] = []
    # a plain wall, lit from one side
    base = np.linspace(60, 160, fw, dtype=np.float32)[None, :, None]
    for px in CAMERA_FACE_PX:
        scale = px / face.height
        cw = max(2, min(fw, round(crop.shape[1] * scale)))
        ch = max(2, min(fh, round(crop.shape[0] * scale)))
        patch = _resize(crop, cw, ch)
        for light, gain in CAMERA_LIGHT.items():
            frame = np.broadcast_to(base, (fh, fw, 3)).copy()
            ox = int(rng.integers(0, fw - cw + 1))
            oy = int(rng.integers(0, fh - ch + 1))
            frame[oy : oy + ch, ox : ox + cw] = patch
            frame = np.clip(frame * gain + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
            raw.append((frame, px, light))
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height = fw, fh
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.bit_rate = VP8_BITRATE
    # A negative cpu-used is a fixed speed: with a positive one, libvpx's realtime mode picks
    # its speed from how long the last frames took to encode, so the views changed with the
    # machine's load (two runs of one photo differed by up to 25 grey levels).
    encoder.options = {"deadline": "realtime", "cpu-used": "-8", "lag-in-frames": "0"}
    decoder = av.CodecContext.create("vp8", "r")
    decoded: list[np.ndarray] = []
    pts = 0

    def drain(packets: list[av.Packet]) -> None:
        for packet in packets:
            for out in decoder.decode(packet):
                decoded.append(out.to_ndarray(format="bgr24"))

    for frame, _, _ in raw:
        for _ in range(FRAMES_PER_VIEW):
            vf = av.VideoFrame.from_ndarray(frame, format="bgr24").reformat(format="yuv420p")
            vf.pts = pts
            pts += 1
            drain(encoder.encode(vf))
    drain(encoder.encode(None))
    out = []
    for i, (_, px, light) in enumerate(raw):
        index = (i + 1) * FRAMES_PER_VIEW - 1  # the last, settled frame of the variant
        if index < len(decoded):
            out.append(CameraFrame(decoded[index], px, light))
    return out


# --- scoring -----------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, object]:
    if not values:
        return {"n": 0}
    arr = np.sort(np.asarray(values))

    def q(p: float) -> float:
        return round(float(arr[min(len(arr) - 1, max(0, math.ceil(p * len(arr)) - 1))]), 4)

    edges = np.arange(0.0, HIST_MAX + HIST_STEP / 2, HIST_STEP)
    counts, _ = np.histogram(np.clip(arr, 0, HIST_MAX - 1e-9), bins=edges)
    return {
        "n": len(arr),
        "min": round(float(arr[0]), 4),
        "p1": q(0.01),
        "p5": q(0.05),
        "p50": q(0.5),
        "p95": q(0.95),
        "p99": q(0.99),
        "max": round(float(arr[-1]), 4),
        "histogram": {f"{lo:.2f}": int(c) for lo, c in zip(edges[:-1], counts, strict=True)},
    }


def rates(genuine: list[float], impostor: list[float], threshold: float) -> tuple[float, float]:
    """(FAR, FRR) at ``threshold``; a missing face (inf) is a rejection."""
    far = sum(d <= threshold for d in impostor) / len(impostor) if impostor else 0.0
    frr = sum(d > threshold for d in genuine) / len(genuine) if genuine else 0.0
    return far, frr


def equal_error(genuine: list[float], impostor: list[float]) -> tuple[float, float]:
    """(EER, the threshold where FAR and FRR are closest), over every observed distance;
    sorted counts: a camera run has ~10^5 attempts, and a count per distance took minutes."""
    finite = np.unique([d for d in genuine + impostor if math.isfinite(d)])
    if not finite.size:
        return 1.0, 0.0
    g, i = np.sort(np.asarray(genuine, float)), np.sort(np.asarray(impostor, float))
    far = np.searchsorted(i, finite, side="right") / len(i) if len(i) else np.zeros(finite.size)
    frr = (
        (len(g) - np.searchsorted(g, finite, side="right")) / len(g)
        if len(g)
        else np.zeros(finite.size)
    )
    best = int(np.argmin(np.abs(far - frr)))  # the first (smallest) threshold of a tie
    return round(float(far[best] + frr[best]) / 2, 4), round(float(finite[best]), 4)


def sweep_rates(genuine: list[float], impostor: list[float]) -> dict[str, dict[str, float]]:
    out = {}
    for t in SWEEP:
        far, frr = rates(genuine, impostor, t)
        out[f"{t:.3f}"] = {"far": round(far, 5), "frr": round(frr, 5)}
    return out


def threshold_for_far(
    genuine: list[float], impostor: list[float], target: float
) -> dict[str, float] | None:
    """The largest distance threshold with FAR <= ``target`` (None without impostors)."""
    finite = sorted(d for d in impostor if math.isfinite(d))
    if not finite:
        return None
    allowed = math.floor(target * len(impostor))  # impostors that may be accepted
    # accepting d <= t: the threshold sits just under the (allowed+1)-th closest impostor,
    # rounded down to the 4 decimals it is reported with
    if allowed < len(finite):
        t = math.ceil(finite[allowed] * 10_000 - 1) / 10_000
    else:
        t = math.floor(finite[-1] * 10_000) / 10_000
    far, frr = rates(genuine, impostor, t)
    return {"threshold": t, "far": round(far, 5), "frr": round(frr, 5)}


@dataclass(frozen=True)
class Probe:
    """One attempt's probe: a photo, or one camera view of it, and what the model made of it."""

    person: str
    photo: str
    vector: np.ndarray | None
    """None: no face was found (failure to acquire)."""
    is_enrolment: bool
    """The person's enrolment photo (or one of its camera views)."""
    view: str = "photo"
    """``photo``, or ``<px>px/<light>`` for a camera view."""


def photo_sources(folder: Path) -> dict[str, str]:
    """person -> the package their photos come from (``DIR/manifest.json``), else ``unknown``."""
    try:
        rows = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return {
        str(r.get("person")): str(r.get("package") or "unknown")
        for r in (rows if isinstance(rows, list) else [])
        if isinstance(r, dict)
    }


def collect_probes(
    folder: Path,
    detector: Detector,
    encoder: FaceEncoder,
    settings: VisionSettings,
    camera: bool = False,
    split: str | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str], list[Probe], list[float]]:
    """(gallery, enrolment photos the quality check refused, probes, descriptor CPU seconds).

    The slow half of :func:`evaluate` (camera views: VP8 coding, detection, descriptors);
    :func:`score_probes` is the fast one."""
    if split not in (None, *SPLITS):
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    gallery: dict[str, np.ndarray] = {}
    refused: dict[str, str] = {}
    probes: list[Probe] = []
    describe_cpu: list[float] = []
    for person, photos in load_set(folder).items():
        for index, path in enumerate(photos):
            image = read_bgr(path)
            faces = detector.detect_batch([image])[0]
            face = largest_face(counted_faces(faces, settings))
            enrolment = index == 0
            if enrolment:
                checked = check_photo(image, faces, settings)
                if isinstance(checked, PhotoRefusal):
                    refused[f"{person}/{path.name}"] = checked.code
                if face is not None:  # enrolled anyway: the evaluation measures matching
                    gallery[person] = encoder.descriptor(image, face)
            if split is not None and split_half(person, path.name) != split:
                continue
            if face is None:
                probes.append(Probe(person, path.name, None, enrolment))
                continue
            if not camera:
                t0 = time.thread_time()
                vector = encoder.descriptor(image, face)
                describe_cpu.append(time.thread_time() - t0)
                probes.append(Probe(person, path.name, vector, enrolment))
                continue
            seed = zlib.crc32(f"{person}/{path.name}".encode())
            for view in camera_variants(image, face, seed):
                seen = largest_face(counted_faces(detector.detect_batch([view.image])[0], settings))
                vector = None
                if seen is not None:
                    t0 = time.thread_time()
                    vector = encoder.descriptor(view.image, seen)
                    describe_cpu.append(time.thread_time() - t0)
                probes.append(
                    Probe(person, path.name, vector, enrolment, f"{view.face_px}px/{view.light}")
                )
    return gallery, refused, probes, describe_cpu


@dataclass
class Tally:
    """Genuine attempts of one kind, split the ISO/IEC 19795-1 way: failures to acquire (no
    face found) and, of the acquired, non-matches (distance over the threshold)."""

    attempts: int = 0
    no_face: int = 0
    over_threshold: int = 0

    def add(self, d: float, threshold: float) -> None:
        self.attempts += 1
        if not math.isfinite(d):
            self.no_face += 1
        elif d > threshold:
            self.over_threshold += 1

    def as_dict(self) -> dict[str, object]:
        acquired = self.attempts - self.no_face
        rejected = self.no_face + self.over_threshold
        return {
            "attempts": self.attempts,
            "rejected": rejected,
            "no_face": self.no_face,
            "over_threshold": self.over_threshold,
            "frr": round(rejected / self.attempts, 5) if self.attempts else 0.0,
            "fta": round(self.no_face / self.attempts, 5) if self.attempts else 0.0,
            "fnmr": round(self.over_threshold / acquired, 5) if acquired else 0.0,
        }


def _tallies(rows: list[tuple[str, float]], threshold: float) -> dict[str, dict[str, object]]:
    out: dict[str, Tally] = {}
    for key, d in rows:
        out.setdefault(key, Tally()).add(d, threshold)
    return {k: t.as_dict() for k, t in sorted(out.items())}


def score_probes(
    folder: Path,
    gallery: dict[str, np.ndarray],
    probes: list[Probe],
    threshold: float,
    camera: bool = False,
) -> dict[str, object]:
    """FAR/FRR and the breakdowns of :func:`evaluate` from collected probes.

    The headline genuine attempts are the photos *other* than the enrolment one (the issue's
    definition: enrol the first photo of each person, match every other photo of everyone).
    Camera views of the enrolment photo itself are scored beside it
    (``enrolment_photo_views``), never in it: they are the same picture re-coded."""
    groups = unverified_groups(folder)
    sources = photo_sources(folder)
    genuine: list[float] = []
    own_views: list[float] = []
    impostor: list[float] = []
    impostor_acquired: list[float] = []
    closest: dict[tuple[str, str], tuple[float, str]] = {}
    """(probe's person, enrolled person) -> the smallest impostor distance and its probe: a
    very close "impostor" is more often a labelling mistake (one person under two names)."""
    by_variant: dict[str, dict[str, list[float]]] = {}
    halves: dict[str, dict[str, list[float]]] = {}
    rejections: dict[str, list[tuple[str, float]]] = {
        "by_view": [],
        "by_person": [],
        "by_source": [],
        "by_photo": [],
    }
    own_rows: list[tuple[str, float]] = []
    unlabelled_pairs = 0
    for probe in probes:
        person = probe.person
        bucket = by_variant.setdefault(probe.view, {"genuine": [], "impostor": []})
        for enrolled, reference in gallery.items():
            own = enrolled == person
            if not own and person in groups and groups[person] == groups.get(enrolled):
                unlabelled_pairs += 1
                continue  # may be one person under two names: neither genuine nor impostor
            d = distance(probe.vector, reference) if probe.vector is not None else float("inf")
            if own and probe.is_enrolment:
                if camera:
                    own_views.append(d)
                    own_rows.append((probe.view, d))
                continue  # the enrolment photo against itself says nothing
            if own:
                genuine.append(d)
                for key, value in (
                    ("by_view", probe.view),
                    ("by_person", person),
                    ("by_source", sources.get(person, "unknown")),
                    ("by_photo", f"{person}/{probe.photo}"),
                ):
                    rejections[key].append((value, d))
            else:
                impostor.append(d)
                if math.isfinite(d):
                    impostor_acquired.append(d)
                if d < closest.get((person, enrolled), (float("inf"), ""))[0]:
                    closest[(person, enrolled)] = (d, probe.photo)
            bucket["genuine" if own else "impostor"].append(d)
            half = halves.setdefault(
                split_half(person, probe.photo), {"genuine": [], "impostor": []}
            )
            half["genuine" if own else "impostor"].append(d)
    far, frr = rates(genuine, impostor, threshold)
    eer, eer_threshold = equal_error(genuine, impostor)
    headline = Tally()
    for d in genuine:
        headline.add(d, threshold)
    by_half = {}
    for key, b in sorted(halves.items()):
        g, i = b["genuine"], b["impostor"]
        f, r = rates(g, i, threshold)
        e, et = equal_error(g, i)
        by_half[key] = {
            "far": round(f, 5),
            "frr": round(r, 5),
            "genuine": len(g),
            "impostor": len(i),
            "eer": e,
            "eer_threshold": et,
            "by_threshold": sweep_rates(g, i),
            "threshold_for_far_target": threshold_for_far(g, i, FAR_TARGET),
        }
    variants = {}
    for key, b in sorted(by_variant.items()):
        f, r = rates(b["genuine"], b["impostor"], threshold)
        variants[key] = {
            "far": round(f, 5),
            "frr": round(r, 5),
            "genuine": len(b["genuine"]),
            "impostor": len(b["impostor"]),
        }
    breakdown: dict[str, object] = {
        key: _tallies(rows, threshold) for key, rows in rejections.items()
    }
    if camera:
        breakdown["enrolment_photo_views_by_view"] = _tallies(own_rows, threshold)
    own = Tally()
    for d in own_views:
        own.add(d, threshold)
    people = load_set(folder)
    return {
        "set": str(folder),
        "mode": "camera" if camera else "photos",
        "people": len(people),
        "people_with_several_photos": sum(len(p) > 1 for p in people.values()),
        "photos": sum(len(p) for p in people.values()),
        "enrolled": len(gallery),
        "probes": len(probes),
        "probes_without_face": sum(p.vector is None for p in probes),
        "threshold": threshold,
        "genuine_attempts": len(genuine),
        "impostor_attempts": len(impostor),
        "attempts_left_out_within_unverified_groups": unlabelled_pairs,
        "far": round(far, 5),
        "frr": round(frr, 5),
        "fta": headline.as_dict()["fta"],
        "fnmr": headline.as_dict()["fnmr"],
        "fmr": round(rates([], impostor_acquired, threshold)[0], 5),
        "genuine_rejections": breakdown,
        "enrolment_photo_views": own.as_dict() | {"distance": summary(_finite(own_views))}
        if camera
        else None,
        "eer": eer,
        "eer_threshold": eer_threshold,
        "by_threshold": sweep_rates(genuine, impostor),
        "far_target": FAR_TARGET,
        "threshold_for_far_target": threshold_for_far(genuine, impostor, FAR_TARGET),
        "by_variant": variants,
        "by_half": by_half,
        "closest_impostor_pairs": [
            {"probe": f"{p}/{n}", "enrolled": e, "distance": round(d, 4)}
            for (p, e), (d, n) in sorted(closest.items(), key=lambda kv: kv[1][0])[:CLOSEST_PAIRS]
        ],
        "genuine_distance": summary(_finite(genuine)),
        "impostor_distance": summary(_finite(impostor)),
    }


def _finite(values: list[float]) -> list[float]:
    return [d for d in values if math.isfinite(d)]


def evaluate(
    folder: Path,
    detector: Detector,
    encoder: FaceEncoder,
    settings: VisionSettings,
    camera: bool = False,
    split: str | None = None,
) -> dict[str, object]:
    """The report; ``split`` (``tune`` or ``report``) keeps only the probe photos of one
    half (see :func:`split_half`), so a threshold picked on one half is measured on the
    other. Every enrolment photo is enrolled either way."""
    gallery, refused, probes, describe_cpu = collect_probes(
        folder, detector, encoder, settings, camera, split
    )
    report = score_probes(folder, gallery, probes, settings.identity_threshold, camera)
    return {
        "split": split or "all",
        "enrolment_photos_refused_by_quality_check": refused,
        **report,
        "descriptor_cpu_ms_mean": round(1000 * float(np.mean(describe_cpu)), 2)
        if describe_cpu
        else None,
    }


def _percent(x: object) -> str:
    return f"{100 * float(x):.2f} %"  # type: ignore[arg-type]


def format_report(report: dict[str, object]) -> str:
    lines = [
        f"identity evaluation ({report['mode']}, {report.get('split', 'all')} probes) of {report['set']}: {report['people']} people "
        f"({report['people_with_several_photos']} with several photos), {report['photos']} photos",
        f"  threshold {report['threshold']}, enrol each person's first photo, match every other "
        "photo of everyone:",
        f"  FAR {100 * float(report['far']):.3f} % of "  # type: ignore[arg-type]
        f"{report['impostor_attempts']} impostor attempts; FRR {_percent(report['frr'])} of "
        f"{report['genuine_attempts']} genuine attempts (other photos): FTA (no face found) "
        f"{_percent(report['fta'])}, FNMR (found, over the threshold) "
        f"{_percent(report['fnmr'])} of those found",
        f"  EER {_percent(report['eer'])} at {report['eer_threshold']}",
        f"  probes without a face: {report['probes_without_face']} of {report['probes']}",
    ]
    own = report.get("enrolment_photo_views")
    if isinstance(own, dict):
        lines.append(
            f"  beside it, not in it: the enrolment photo's own {own['attempts']} camera views "
            f"rejected {_percent(own['frr'])} (FTA {_percent(own['fta'])}, "
            f"FNMR {_percent(own['fnmr'])})"
        )
    rejections = report.get("genuine_rejections")
    if isinstance(rejections, dict):
        for key in ("by_view", "by_source", "by_person"):
            rows = rejections.get(key) or {}
            if len(rows) > 1 or key == "by_person":
                lines.append(
                    f"  genuine rejections {key.replace('_', ' ')} (no face + over / attempts): "
                    + ", ".join(
                        f"{k} {r['no_face']}+{r['over_threshold']}/{r['attempts']}"
                        for k, r in rows.items()
                    )
                )
    for kind in ("genuine_distance", "impostor_distance"):
        s = report[kind]
        assert isinstance(s, dict)
        if s.get("n"):
            lines.append(
                f"  {kind}: n={s['n']} min {s['min']} p5 {s['p5']} p50 {s['p50']} "
                f"p95 {s['p95']} max {s['max']}"
            )
    sweep = report["by_threshold"]
    assert isinstance(sweep, dict)
    for t, r in sweep.items():
        lines.append(f"  at {t}: FAR {100 * r['far']:.3f} %  FRR {100 * r['frr']:.2f} %")
    pairs = report.get("closest_impostor_pairs") or []
    assert isinstance(pairs, list)
    if pairs:
        lines.append(
            "  closest impostor pairs: "
            + ", ".join(f"{c['probe']} ~ {c['enrolled']} {c['distance']}" for c in pairs[:4])
        )
    target = report.get("threshold_for_far_target")
    if isinstance(target, dict):
        lines.append(
            f"  largest threshold with FAR <= {100 * float(report['far_target']):.2f} %: "  # type: ignore[arg-type]
            f"{target['threshold']} (FAR {100 * target['far']:.3f} %, FRR {100 * target['frr']:.2f} %)"
        )
    lines.append(f"  descriptor CPU per face: {report.get('descriptor_cpu_ms_mean')} ms")
    return "\n".join(lines)
