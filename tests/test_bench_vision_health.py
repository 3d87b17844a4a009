"""The bench counts a point with vision healthy only when vision keeps up (issue 20)."""

from __future__ import annotations

from bench import measure
from bench.run import Snapshot, analyze

SENT_PER_S = 2 * (5 * 30 + 50)


def _leg(role: str, t: float) -> dict:
    return {
        "call": 0,
        "state": "connected",
        "error": "",
        "tx_frames": {"video": 30 * t, "audio": 50 * t},
        "tx_packets": {"video": 150 * t, "audio": 50 * t},
        "rx_packets": {"video": 150 * t, "audio": 50 * t},
        "rx_bytes": {"video": 1000 * t, "audio": 100 * t},
        "rx_frames": 30 * t,
        "frame_delays_ms": [1.0],
    }


def _snap(t: float, checks: float, slow: float, configured: float = 1.0) -> Snapshot:
    """A one-call relay at time t: ``checks`` vision decisions so far, ``slow`` of them
    taking more than 1.6 s."""
    fast = checks - slow
    text = "\n".join(
        [
            f'relay_media_packets_forwarded_total{{kind="video",direction="x"}} {SENT_PER_S * t}',
            f"relay_vision_configured_samples_per_leg_per_second {configured}",
            f'relay_vision_decision_latency_seconds_bucket{{le="0.1"}} {fast}',
            f'relay_vision_decision_latency_seconds_bucket{{le="1.6"}} {fast}',
            f'relay_vision_decision_latency_seconds_bucket{{le="3.2"}} {checks}',
            f'relay_vision_decision_latency_seconds_bucket{{le="+Inf"}} {checks}',
            f"relay_vision_decision_latency_seconds_count {checks}",
            "relay_vision_leg_samples_per_second_min 0.9",
            "relay_vision_legs_behind 0",
        ]
    )
    return Snapshot(
        t=t,
        cpu_s=t / 10,
        rss=50 * 2**20,
        busy=(0.0, 0.0),
        clients_cpu_s=0.0,
        metrics=measure.parse_metrics(text),
        legs={"family": [_leg("family", t)], "prison": [_leg("prison", t)]},
        client_extras={
            r: {"send_lateness_ms": [], "loop_lag_ms": []} for r in ("family", "prison")
        },
    )


class _Relay:
    name = "relay"
    forwards_packets = True


IDLE = measure.ProcSample(0.0, 40 * 2**20)


def test_vision_keeping_up_is_healthy_and_reported():
    # two legs, 10 s: 20 checks, all fast
    point = analyze(_Relay(), 1, IDLE, _snap(10.0, 10, 0), _snap(20.0, 30, 0))
    assert point["healthy"] and point["vision_keeps_up"], point
    assert point["vision_samples_per_leg_per_s"] == 1.0 and point["vision_configured_rate"] == 1.0
    assert point["vision_decision_latency_ms_p95"] <= 100
    assert point["vision_leg_rate_min"] == 0.9 and point["vision_legs_behind"] == 0


def test_media_flowing_is_not_enough_when_vision_falls_behind():
    # 10 checks for two legs in 10 s: half the configured rate
    point = analyze(_Relay(), 1, IDLE, _snap(10.0, 10, 0), _snap(20.0, 20, 0))
    assert point["valid"] and not point["healthy"] and point["vision_keeps_up"] is False
    assert any("vision fell behind" in p for p in point["problems"])
    # enough checks, but most decisions took over 1.6 s
    point = analyze(_Relay(), 1, IDLE, _snap(10.0, 10, 0), _snap(20.0, 30, 15))
    assert point["vision_samples_per_leg_per_s"] == 1.0
    assert point["vision_decision_latency_ms_p95"] > 1500 and not point["healthy"]


def test_without_vision_the_rule_does_not_apply():
    point = analyze(_Relay(), 1, IDLE, _snap(10.0, 0, 0, 0.0), _snap(20.0, 0, 0, 0.0))
    assert point["healthy"] and "vision_keeps_up" not in point
