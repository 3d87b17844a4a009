"""The load benchmark's CI smoke test: ``python -m bench --quick`` end to end, as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(150)
def test_bench_quick_writes_sane_json(tmp_path):
    out = tmp_path / "out.json"
    svg = tmp_path / "cpu.svg"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out), "--plot", str(svg)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())

    machine = result["machine"]
    assert machine["cpus"] >= 1 and machine["python"] and machine["aiortc"] and "model" in machine
    assert result["features"] == {"vision": False, "recording": False}

    relay = result["systems"]["relay"]
    point = relay["points"][0]
    assert point["calls"] == 1
    assert point["valid"] is True and point["healthy"] is True, point
    assert relay["max_healthy_calls"] == 1
    assert 0 < relay["per_call_cpu_pct"] < 100
    assert 0 < point["cpu_pct"] < 100 and point["per_call_cpu_pct"] == relay["per_call_cpu_pct"]
    assert relay["memory_mb_per_call"] is not None
    # forwarding was measured at the relay and at the far clients
    assert point["relay_forwarded_ratio"] >= 0.9
    assert point["video_fps_min"] >= 27 and point["audio_pps_min"] >= 45
    p50, p95 = relay["forward_latency_ms_p50"], relay["forward_latency_ms_p95"]
    assert p50 is not None and p95 is not None and 0 <= p50 <= p95 < 50
    # vision is off in --quick: the relay exports its counters, and they stay at zero
    assert not point["vision_samples_per_s"]

    naive = result["systems"]["naive"]
    assert naive["points"], "the naive baseline ran"
    for name in ("relay_vs_naive", "relay_vs_janus"):
        value = result["ratios"][name]
        assert value is None or value > 0
        if value is None:
            assert result["ratios"][f"{name}_reason"]
        else:
            assert result["ratios"][f"{name}_at_calls"] == 1
    # the decode/re-encode baseline costs more than forwarding, when both ran healthily
    if result["ratios"]["relay_vs_naive"] is not None:
        assert result["ratios"]["relay_vs_naive"] < 1

    text = svg.read_text()
    assert text.startswith("<svg") and "relay" in text and "naive" in text
