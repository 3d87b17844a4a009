"""bench.vision_load runs vision alone over many legs and splits its cost between the relay's
process and the detector processes (counted, not hidden)."""

from __future__ import annotations

import pytest

from bench import vision_load

pytestmark = pytest.mark.timeout(180)


async def test_the_detector_process_does_the_work_and_is_counted() -> None:
    r = await vision_load.run(legs=4, seconds=4.0, processes=1, approved=2)
    assert r["legs"] == 4 and r["checks_per_leg_per_s"] > 0
    assert r["detector_processes_cpu_pct_per_leg"] > r["relay_process_cpu_pct_per_leg"]
    assert r["total_cpu_pct_per_leg"] == pytest.approx(
        r["relay_process_cpu_pct_per_leg"] + r["detector_processes_cpu_pct_per_leg"], abs=0.01
    )
    assert r["detector_processes_rss_mb"] > 50  # the model and decoders live there
    assert r["decode_errors"] == 0
