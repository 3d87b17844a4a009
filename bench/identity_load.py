"""Identity work in the bench: what re-identifying every leg's faces costs the relay.

With ``--vision`` the bench relay (bench/relay_proc.py) enrols the two faces of the load clip
(scikit-image's astronaut and cameraman, bench/clips.py) as the people of every bench call, so
each leg's faces are re-identified at the default sampling, as a real call's are when its
people are enrolled (docs/identity.md). The bench calls are not in the store, so there is no
check before the call: the steady in-call re-checks are what is measured. The run reports the
identity thread's CPU (``relay_identity_cpu_seconds_total``) per leg and the checks per second.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from aiohttp import web

from bench import measure

log = logging.getLogger(__name__)

BENCH_PEOPLE = (("visitor", 1), ("visitor", 2))
"""Subject ids the load clip's faces are enrolled under (the bench world has no records)."""


def _photos() -> list[bytes]:
    from skimage import data

    from bench.identity_set import jpeg

    astronaut = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    camera = np.repeat(data.camera()[:, :, None], 3, axis=2)
    camera = np.repeat(np.repeat(camera, 2, axis=0), 2, axis=1)  # its face is under 80 px
    return [jpeg(astronaut), jpeg(np.ascontiguousarray(camera))]


def install(app: web.Application) -> None:
    """Enrol the load clip's faces at start-up and give every bench call that gallery."""
    from relay import keys
    from relay.calls.vision_link import VisionLink

    links = [h for h in app[keys.REGISTRY].hooks if isinstance(h, VisionLink)]
    gallery: dict[str, list[np.ndarray]] = {}

    async def enrol(app: web.Application) -> None:
        enrolments = app[keys.FACE_ENROLMENTS]
        for (kind, sid), photo in zip(BENCH_PEOPLE, _photos(), strict=True):
            result = await enrolments.enrol_face(kind, sid, photo, actor="bench")
            if not hasattr(result, "face_px"):
                log.warning("bench: the load clip's face %s:%s was refused: %s", kind, sid, result)
        vectors = await enrolments.load_descriptors(list(BENCH_PEOPLE))
        gallery.update({f"{k}:{s}": [v] for (k, s), v in vectors.items()})

    async def bench_gallery(call: Any, role: str) -> dict[str, list[np.ndarray]]:
        return gallery

    app.on_startup.append(enrol)
    for link in links:
        link.gallery = bench_gallery


def figures(before: measure.Metrics, after: measure.Metrics, wall: float, legs: int) -> dict:
    """The identity thread's CPU per leg (fraction of a core) and checks per second."""
    cpu0 = measure.metric_sum(before, "relay_identity_cpu_seconds_total")
    cpu1 = measure.metric_sum(after, "relay_identity_cpu_seconds_total")
    n0 = measure.metric_sum(before, "relay_identity_checks_total")
    n1 = measure.metric_sum(after, "relay_identity_checks_total")
    if cpu1 is None or n1 is None or wall <= 0 or legs <= 0:
        return {"identity_cpu_per_leg": None, "identity_checks_per_s": None}
    return {
        "identity_cpu_per_leg": round((cpu1 - (cpu0 or 0.0)) / wall / legs, 4),
        "identity_checks_per_s": round((n1 - (n0 or 0.0)) / wall, 2),
    }


def line(systems: dict[str, dict]) -> str:
    """One line for the bench's report: the identity CPU per leg at each valid point."""
    points = [
        p
        for p in systems.get("relay", {}).get("points", [])
        if p.get("identity_cpu_per_leg") is not None and p.get("vision_samples_per_s")
    ]  # without vision the counters exist but nothing is checked: not a figure
    if not points:
        return "identity: not measured (run with --vision)"
    parts = [
        f"{p['calls']} calls: {100 * p['identity_cpu_per_leg']:.1f}% of a core per leg, "
        f"{p['identity_checks_per_s']} checks/s{'' if p.get('valid') else ' (INVALID point)'}"
        for p in points
    ]
    return "identity CPU per leg (default sampling): " + "; ".join(parts)
