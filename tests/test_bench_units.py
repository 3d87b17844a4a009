"""The benchmark's arithmetic: /metrics parsing, histogram quantiles, ratios, the SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from bench import measure, plot, report

METRICS = """\
# HELP relay_forward_latency_seconds x
# TYPE relay_forward_latency_seconds histogram
relay_forward_latency_seconds_bucket{le="0.001"} 80.0
relay_forward_latency_seconds_bucket{le="0.0025"} 90.0
relay_forward_latency_seconds_bucket{le="0.005"} 100.0
relay_forward_latency_seconds_bucket{le="+Inf"} 100.0
relay_forward_latency_seconds_count 100.0
relay_media_packets_forwarded_total{direction="family_to_prison",kind="video"} 10.0
relay_media_packets_forwarded_total{direction="prison_to_family",kind="video"} 5.0
relay_media_packets_forwarded_total{direction="prison_to_family",kind="audio"} 1e+03
"""


def test_parse_and_sum_metrics():
    m = measure.parse_metrics(METRICS)
    assert measure.metric_sum(m, "relay_media_packets_forwarded_total") == 1015.0
    assert measure.metric_sum(m, "relay_media_packets_forwarded_total", kind="video") == 15.0
    assert measure.metric_sum(m, "relay_vision_samples_total") is None


def test_histogram_quantiles_interpolate_bucket_deltas():
    after = measure.histogram_buckets(measure.parse_metrics(METRICS), "relay_forward_latency_seconds")
    before = {0.001: 40.0, 0.0025: 40.0, 0.005: 40.0, float("inf"): 40.0}
    delta = measure.bucket_delta(before, after)
    assert delta[0.001] == 40.0 and delta[float("inf")] == 60.0
    # 60 new observations: 40 at <= 1 ms, 10 more <= 2.5 ms, 10 more <= 5 ms
    assert measure.histogram_quantile(0.5, delta) == pytest.approx(0.00075)
    assert measure.histogram_quantile(0.95, delta) == pytest.approx(0.0025 + 0.0025 * 7 / 10)
    assert measure.histogram_quantile(0.5, None) is None
    assert measure.histogram_quantile(0.5, {1.0: 0.0, float("inf"): 0.0}) is None
    # everything beyond the last bound: reported as that bound (a lower bound)
    assert measure.histogram_quantile(0.5, {0.05: 0.0, float("inf"): 5.0}) == 0.05


def test_proc_sample_reads_this_process():
    import os

    sample = measure.proc_sample(os.getpid())
    assert sample.cpu_s > 0 and sample.rss_bytes > 1_000_000


def _point(n, cpu, ok=True):
    return {"calls": n, "cpu_pct": cpu, "per_call_cpu_pct": cpu / n, "valid": ok, "healthy": ok}


def test_ratios_pair_points_at_the_same_calls():
    systems = {
        "relay": report.summarize("relay", [_point(1, 10), _point(2, 18), _point(4, 30)], {}),
        "naive": report.summarize("naive", [_point(1, 60), _point(2, 130, ok=False)], {}),
        "janus": {"skipped": "not installed", "points": []},
    }
    rat = report.ratios(systems)
    assert rat["relay_vs_naive"] == pytest.approx(10 / 60, abs=1e-3)
    assert rat["relay_vs_naive_at_calls"] == 1
    assert rat["relay_vs_naive_by_calls"] == {"1": pytest.approx(0.167, abs=1e-3)}
    assert rat["relay_vs_janus"] is None and "not installed" in rat["relay_vs_janus_reason"]
    assert systems["relay"]["max_healthy_calls"] == 4
    assert systems["relay"]["per_call_cpu_pct"] == 7.5
    assert systems["naive"]["max_healthy_calls"] == 1


def test_invalid_only_system_reports_no_figure():
    summary = report.summarize("relay", [_point(1, 5, ok=False)], {})
    assert summary["per_call_cpu_pct"] is None and summary["max_healthy_calls"] == 0


def test_svg_is_well_formed_with_a_line_per_system():
    systems = {
        "relay": {"points": [_point(1, 10), _point(2, 18), _point(4, 30)]},
        "naive": {"points": [_point(1, 60), _point(2, 130, ok=False)]},
        "janus": {"skipped": "x", "points": []},
    }
    root = ET.fromstring(plot.svg(systems))
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 2
    assert len(root.findall(f"{ns}circle")) >= 5
    texts = "".join(t.text or "" for t in root.iter(f"{ns}text"))
    assert "relay" in texts and "naive" in texts and "janus" not in texts


async def test_relay_proc_builds_the_product_with_the_bench_admission(tmp_path):
    from bench import relay_proc
    from relay import keys
    from relay.config import Config

    admit = relay_proc.BenchAdmit(2)
    config = Config(data_dir=tmp_path, seed_demo=False, vision_enabled=False)
    app, entry, active = relay_proc.build(config, admit, {"vision", "recording"})
    assert entry == "relay.app.build_app" and app[keys.ADMIT] is admit
    # vision was asked for but is switched off: not claimed; recording is on by default
    assert active == {"vision": False, "recording": True}
    _, _, active = relay_proc.build(config.replace(recording_enabled=False), admit, set())
    assert active == {"vision": False, "recording": False}
    adm = await admit("bench-1-prison", 0.0, "127.0.0.1")
    assert adm.booking_id == 2 and adm.role == "prison" and adm.ends_at > adm.starts_at


def _leg(role, call, t, *, sent_frames=None, rx_frames=None, pkts=None):
    """Counters of one leg at time t (seconds into a steady 30 fps / 50 pps stream)."""
    sent_frames = 30 * t if sent_frames is None else sent_frames
    rx_frames = 30 * t if rx_frames is None else rx_frames
    pkts = 5 * 30 * t if pkts is None else pkts
    return {
        "call": call, "state": "connected", "error": "",
        "tx_frames": {"video": sent_frames, "audio": 50 * t},
        "tx_packets": {"video": 5 * 30 * t, "audio": 50 * t},
        "rx_packets": {"video": pkts, "audio": 50 * t},
        "rx_bytes": {"video": 1000 * t, "audio": 100 * t},
        "rx_frames": rx_frames,
        "frame_delays_ms": [0.0, 1.0, 2.0],
    }


def _snap(t, cpu_s, forwarded, fam=None, pri=None):
    from bench.run import Snapshot

    text = f'relay_media_packets_forwarded_total{{kind="video",direction="x"}} {forwarded}\n'
    return Snapshot(
        t=t, cpu_s=cpu_s, rss=50 * 2**20, busy=(0.0, 0.0), clients_cpu_s=0.0,
        metrics=measure.parse_metrics(text),
        legs={"family": [fam or _leg("family", 0, t)], "prison": [pri or _leg("prison", 0, t)]},
        client_extras={"family": {"send_lateness_ms": [], "loop_lag_ms": []},
                       "prison": {"send_lateness_ms": [], "loop_lag_ms": []}},
    )


class _Relay:
    name = "relay"
    forwards_packets = True


def test_analyze_judges_validity_and_health():
    from bench.run import analyze

    idle = measure.ProcSample(0.0, 40 * 2**20)
    sent_per_s = 2 * (5 * 30 + 50)
    before = _snap(10.0, 1.0, sent_per_s * 10)
    after = _snap(20.0, 2.0, sent_per_s * 20)
    point = analyze(_Relay(), 1, idle, before, after)
    assert point["valid"] and point["healthy"], point
    assert point["cpu_pct"] == 10.0 and point["per_call_cpu_pct"] == 10.0
    assert point["memory_mb_per_call"] == 10.0 and point["relay_forwarded_ratio"] == 1.0
    assert point["rtp_packets_lost_pct"] == 0.0 and point["video_fps_min"] == 30.0

    # the relay forwarded only 80 % of what the clients sent: not a valid figure
    short = _snap(20.0, 2.0, sent_per_s * 10 + 0.8 * sent_per_s * 10)
    point = analyze(_Relay(), 1, idle, before, short)
    assert not point["valid"] and any("forwarded" in p for p in point["problems"])

    # one receiver got 80 % of its frames: valid load, unhealthy call
    lossy = _snap(20.0, 2.0, sent_per_s * 20, fam=_leg("family", 0, 20.0, rx_frames=300 + 240))
    point = analyze(_Relay(), 1, idle, before, lossy)
    assert point["valid"] and not point["healthy"]

    # the load generator fell behind: invalid whatever the relay did
    slow = _snap(20.0, 2.0, sent_per_s * 20, pri=_leg("prison", 0, 20.0, sent_frames=300 + 250))
    assert not analyze(_Relay(), 1, idle, before, slow)["valid"]

    # a sender whose counters vanished (connection closed) fails the leg, never goes negative
    gone = _snap(20.0, 2.0, sent_per_s * 20, pri=_leg("prison", 0, 20.0, pkts=0))
    point = analyze(_Relay(), 1, idle, before, gone)
    assert not point["healthy"] and point["rtp_packets_lost_pct"] >= 0


def test_janus_is_skipped_with_a_reason_when_missing(monkeypatch, tmp_path):
    from bench import janus

    monkeypatch.setattr(janus, "find_janus", lambda: None)
    assert "not installed" in janus.skip_reason()
    # the generated configuration: loopback only, VideoCall and HTTP alone
    conf = janus.write_config(tmp_path, 18088, (40000, 40100))
    text = conf.read_text()
    assert 'ice_enforce_list = "lo"' in text and "stun" not in text.lower()
    assert "libjanus_videocall.so" not in text.split("plugins:")[1].split("}")[0]
    http = (tmp_path / "janus.transport.http.jcfg").read_text()
    assert 'ip = "127.0.0.1"' in http and "port = 18088" in http
