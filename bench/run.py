"""One measured point: a fresh system, N calls of load, a warm-up, a measured window.

Validity and health are judged here (see docs/bench.md):

* valid: the offered load was generated and delivered. Every leg's sender kept within 5 % of
  its target frame rate (else the load generator, sharing the cores, fell behind), and where
  the system counts what it forwards (the relay's ``relay_media_packets_forwarded_total``) it
  forwarded at least 90 % of the packets the clients sent in the window. A baseline without
  counters is judged by its far clients alone, so there "invalid" and "unhealthy" coincide.
* healthy: every receiving stream of every call got at least 90 % of the expected video
  frames (30/s) and audio packets (50/s) (and, through a forwarder, of the video packets the
  far side sent), and every leg stayed connected; with vision on, vision also kept up
  (:func:`vision_health`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import identity_load, measure
from bench.procs import PYTHON, Child
from bench.systems import System, scrape

HEALTHY_FRACTION = 0.90
OFFERED_FRACTION = 0.95
FORWARDED_FRACTION = 0.90
VIDEO_FPS = 30
AUDIO_PPS = 50
IDLE_WINDOW_S = 2.0
JITTER_WARN_MS = 100.0
LEGS_PER_CLIENT = 32
"""Legs of one role per load-client process."""
VISION_MIN_FRACTION = 0.90
"""Vision keeps up when each leg gets at least this fraction of the configured samples..."""
VISION_MAX_P95_S = 1.5
"""...and sampling-to-decision latency p95 stays within this (the policy's confirm target)."""


@dataclass
class Snapshot:
    t: float
    cpu_s: float
    rss: int
    busy: tuple[float, float]
    clients_cpu_s: float
    metrics: measure.Metrics | None
    legs: dict[str, list[dict[str, Any]]]  # role -> per-leg counters
    client_extras: dict[str, dict[str, Any]]  # role -> send lateness, loop lag since last snap
    udp_drops: int | None = None
    system_udp_drops: int | None = None
    sys_s: float = 0.0


@dataclass
class PointConfig:
    calls: int
    duration: float
    warmup: float
    video_clip: Path
    audio_clip: Path
    log_dir: Path
    client_media: str = "lean"


async def _snapshot(system: System, clients: dict[str, Child]) -> Snapshot:
    for child in clients.values():
        await child.send("snap")
    text = await scrape(system.metrics_url)
    t = time.monotonic()
    proc = measure.proc_tree_sample(system.pid)
    busy = measure.machine_busy()
    udp_drops = measure.udp_rcvbuf_errors()
    system_drops = measure.udp_socket_drops(system.pid)
    clients_cpu = sum(measure.proc_sample(c.pid).cpu_s for c in clients.values())
    legs: dict[str, list[dict[str, Any]]] = {}
    extras: dict[str, dict[str, Any]] = {}
    for key, child in clients.items():
        role = key.split("+")[0]  # "prison", "prison+32": one role's legs in several processes
        reply = await child.read_json(60, want="snap")
        legs.setdefault(role, []).extend(reply["legs"])
        extra = extras.setdefault(role, {"send_lateness_ms": [], "loop_lag_ms": []})
        for k in ("send_lateness_ms", "loop_lag_ms"):
            extra[k].extend(reply.get(k, []))
    return Snapshot(
        t,
        proc.cpu_s,
        proc.rss_bytes,
        busy,
        clients_cpu,
        measure.parse_metrics(text) if text is not None else None,
        legs,
        extras,
        udp_drops,
        system_drops,
        proc.sys_s,
    )


def _progress(msg: str) -> None:
    import sys

    sys.stderr.write(f"  {msg}\n")
    sys.stderr.flush()


async def run_point(system: System, pc: PointConfig) -> dict[str, Any]:
    """Start ``system``, load it with ``pc.calls`` calls, measure; always stops everything."""
    n = pc.calls
    clients: dict[str, Child] = {}
    point: dict[str, Any] = {"calls": n, "valid": False, "healthy": False}
    started = time.monotonic()
    try:
        _progress(f"{system.name} x{n}: starting {system.name}")
        await system.start()
        # the system's own idle cost (timers, probes), for reading small-N per-call figures
        await asyncio.sleep(0.5)
        idle0, t_idle0 = measure.proc_tree_sample(system.pid), time.monotonic()
        await asyncio.sleep(IDLE_WINDOW_S)
        idle = measure.proc_tree_sample(system.pid)
        point["idle_cpu_pct"] = round(
            100 * (idle.cpu_s - idle0.cpu_s) / (time.monotonic() - t_idle0), 2
        )
        max_s = pc.warmup + pc.duration + 120 + 2 * n
        # the callee side first: Janus needs it registered before the caller calls
        for role in ("prison", "family"):
            # a role's legs in processes of at most LEGS_PER_CLIENT (two cores: the load
            # spreads over both, and no one client loop falls behind at 64 calls)
            for first in range(0, n, LEGS_PER_CLIENT):
                argv = [
                    PYTHON,
                    "-m",
                    "bench.loadclient",
                    "--system",
                    system.name,
                    "--url",
                    system.url,
                    "--role",
                    role,
                    "--first",
                    str(first),
                    "--count",
                    str(min(LEGS_PER_CLIENT, n - first)),
                    "--video",
                    str(pc.video_clip),
                    "--audio",
                    str(pc.audio_clip),
                    "--max-seconds",
                    str(max_s),
                    "--media",
                    pc.client_media,
                ]
                key = role if first == 0 else f"{role}+{first}"
                child = Child(f"{system.name}-{n}-{key}", argv, pc.log_dir, stdin=True)
                clients[key] = child
                await child.start()
            if system.name == "janus" or role == "family":
                pending = [c for c in clients.values() if not getattr(c, "_ready", False)]
                for c in pending:
                    ready = await c.read_json(60 + 3 * n, want="ready")
                    c._ready = True  # type: ignore[attr-defined]
                    if ready["errors"]:
                        point["errors"] = ready["errors"][:5]
        _progress(f"{system.name} x{n}: {2 * n} legs up; warm-up {pc.warmup:g}s")
        await asyncio.sleep(pc.warmup)
        before = await _snapshot(system, clients)
        _progress(f"{system.name} x{n}: measuring {pc.duration:g}s")
        await asyncio.sleep(pc.duration)
        after = await _snapshot(system, clients)
        point.update(analyze(system, n, idle, before, after))
        if point.get("errors"):
            point["healthy"] = False
    except Exception as exc:
        point["error"] = f"{type(exc).__name__}: {exc}"[:600]
    finally:
        for child in clients.values():
            if child.alive():
                try:
                    await child.send("stop")
                except (ConnectionError, RuntimeError):
                    pass
        await asyncio.gather(*(c.stop(grace=8.0) for c in clients.values()), return_exceptions=True)
        await system.stop()
    point["elapsed_s"] = round(time.monotonic() - started, 1)
    return point


def _pairs(before: Snapshot, after: Snapshot) -> list[dict[str, Any]]:
    """Per leg: counter deltas over the window, keyed by role and call."""
    out = []
    for role, legs in after.legs.items():
        old = {leg["call"]: leg for leg in before.legs.get(role, [])}
        for leg in legs:
            prev = old.get(leg["call"])
            if prev is None:
                continue
            item: dict[str, Any] = {
                "role": role,
                "call": leg["call"],
                "state": leg["state"],
                "error": leg["error"],
                "rx_frames": leg["rx_frames"] - prev["rx_frames"],
            }
            for field in ("tx_frames", "tx_packets", "rx_packets", "rx_bytes"):
                item[field] = {k: leg[field][k] - prev[field][k] for k in ("video", "audio")}
            # a counter that went backwards (a sender whose stats vanished: its connection
            # closed) is no measurement: count the leg as failed, never as negative traffic
            backwards = item["rx_frames"] < 0 or any(
                v < 0
                for f in ("tx_frames", "tx_packets", "rx_packets", "rx_bytes")
                for v in item[f].values()
            )
            if backwards:
                item["error"] = item["error"] or "counters went backwards (connection closed?)"
                item["rx_frames"] = max(0, item["rx_frames"])
                for f in ("tx_frames", "tx_packets", "rx_packets", "rx_bytes"):
                    item[f] = {k: max(0, v) for k, v in item[f].items()}
            out.append(item)
    return out


def _round(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


def analyze(
    system: System, n: int, idle: measure.ProcSample, before: Snapshot, after: Snapshot
) -> dict[str, Any]:
    wall = after.t - before.t
    cpu_pct = 100.0 * (after.cpu_s - before.cpu_s) / wall
    busy = after.busy[0] - before.busy[0]
    total = after.busy[1] - before.busy[1]
    legs = _pairs(before, after)
    expected_video = VIDEO_FPS * wall
    expected_audio = AUDIO_PPS * wall

    offered_ok = True
    delivery: list[float] = []
    video_fracs: list[float] = []
    audio_fracs: list[float] = []
    connected = True
    by_key = {(leg["role"], leg["call"]): leg for leg in legs}
    sent_packets = 0
    lost_packets = 0
    for leg in legs:
        if leg["state"] != "connected" or leg["error"]:
            connected = False
        if leg["tx_frames"]["video"] < OFFERED_FRACTION * expected_video:
            offered_ok = False
        if leg["tx_frames"]["audio"] < OFFERED_FRACTION * expected_audio:
            offered_ok = False
        vf = leg["rx_frames"] / expected_video
        af = leg["rx_packets"]["audio"] / expected_audio
        video_fracs.append(vf)
        audio_fracs.append(af)
        delivery += [vf, af]
        sent_packets += leg["tx_packets"]["video"] + leg["tx_packets"]["audio"]
        far = by_key.get(("family" if leg["role"] == "prison" else "prison", leg["call"]))
        if far is not None and system.forwards_packets:
            for kind in ("video", "audio"):
                lost_packets += max(0, far["tx_packets"][kind] - leg["rx_packets"][kind])
            # a forwarder passes packets through: the far sender's count is what was expected
            if far["tx_packets"]["video"]:
                delivery.append(leg["rx_packets"]["video"] / far["tx_packets"]["video"])
    complete = len(legs) == 2 * n
    healthy = complete and connected and bool(delivery) and min(delivery) >= HEALTHY_FRACTION

    jitter = sorted(
        d for legs_ in after.legs.values() for leg in legs_ for d in leg.get("frame_delays_ms", [])
    )

    point: dict[str, Any] = {
        "window_s": round(wall, 2),
        "cpu_pct": round(cpu_pct, 2),
        "per_call_cpu_pct": round(cpu_pct / n, 3),
        "cpu_sys_pct": round(100.0 * (after.sys_s - before.sys_s) / wall, 2),
        "memory_mb_per_call": round((after.rss - idle.rss_bytes) / n / 2**20, 2),
        "rss_mb": round(after.rss / 2**20, 1),
        "clients_cpu_pct": round(100.0 * (after.clients_cpu_s - before.clients_cpu_s) / wall, 1),
        "machine_busy_pct": round(100.0 * busy / total, 1) if total else None,
        "loadavg_1m": _loadavg(),
        "video_fps_min": _round(min(video_fracs) * VIDEO_FPS if video_fracs else None, 1),
        "video_fps_mean": _round(
            sum(video_fracs) / len(video_fracs) * VIDEO_FPS if video_fracs else None, 1
        ),
        "audio_pps_min": _round(min(audio_fracs) * AUDIO_PPS if audio_fracs else None, 1),
        "video_frames_lost_or_late_pct": _round(
            100 * max(0.0, 1 - sum(video_fracs) / len(video_fracs)) if video_fracs else None
        ),
        "audio_packets_lost_or_late_pct": _round(
            100 * max(0.0, 1 - sum(audio_fracs) / len(audio_fracs)) if audio_fracs else None
        ),
        "frame_jitter_ms_p50": _pct(jitter, 0.50),
        "frame_jitter_ms_p95": _pct(jitter, 0.95),
        "frame_jitter_ms_p99": _pct(jitter, 0.99),
        # the load generator's own lateness: frames sent behind schedule, its loop's timer lag
        "clients_send_late_ms_p95": _pct(
            sorted(v for e in after.client_extras.values() for v in e["send_lateness_ms"]), 0.95
        ),
        "clients_loop_lag_ms_p95": _pct(
            sorted(v for e in after.client_extras.values() for v in e["loop_lag_ms"]), 0.95
        ),
        "rtp_packets_lost_pct": _round(100 * lost_packets / sent_packets)
        if system.forwards_packets and sent_packets
        else None,
        "clients_sent_pps": round(sent_packets / wall, 1),
        "udp_rcvbuf_drops": (
            after.udp_drops - before.udp_drops
            if after.udp_drops is not None and before.udp_drops is not None
            else None
        ),
        # per-socket counters vanish with their sockets: a negative difference means legs
        # closed during the window, and the figure is unknown
        "system_udp_drops": (
            after.system_udp_drops - before.system_udp_drops
            if after.system_udp_drops is not None
            and before.system_udp_drops is not None
            and after.system_udp_drops >= before.system_udp_drops
            else None
        ),
        "offered_ok": offered_ok,
        "legs_measured": len(legs),
        "healthy": healthy,
    }
    valid = offered_ok and complete
    forwarded_ratio = None
    if before.metrics is not None and after.metrics is not None:
        name = "relay_media_packets_forwarded_total"
        f0 = measure.metric_sum(before.metrics, name) or 0.0
        f1 = measure.metric_sum(after.metrics, name)
        if f1 is not None:
            point["relay_forwarded_pps"] = round((f1 - f0) / wall, 1)
            forwarded_ratio = (f1 - f0) / sent_packets if sent_packets else 0.0
            point["relay_forwarded_ratio"] = round(forwarded_ratio, 3)
        lat = measure.bucket_delta(
            measure.histogram_buckets(before.metrics, "relay_forward_latency_seconds"),
            measure.histogram_buckets(after.metrics, "relay_forward_latency_seconds"),
        )
        point["forward_latency_ms_p50"] = _ms(measure.histogram_quantile(0.50, lat))
        point["forward_latency_ms_p95"] = _ms(measure.histogram_quantile(0.95, lat))
        point["forward_latency_ms_p99"] = _ms(measure.histogram_quantile(0.99, lat))
        lag = measure.bucket_delta(
            measure.histogram_buckets(before.metrics, "relay_event_loop_lag_seconds"),
            measure.histogram_buckets(after.metrics, "relay_event_loop_lag_seconds"),
        )
        point["system_loop_lag_ms_p95"] = _ms(measure.histogram_quantile(0.95, lag))
        samples0 = measure.metric_sum(before.metrics, "relay_vision_samples_total")
        samples1 = measure.metric_sum(after.metrics, "relay_vision_samples_total")
        point["vision_samples_per_s"] = (
            round((samples1 - (samples0 or 0.0)) / wall, 2) if samples1 is not None else None
        )
        dec = measure.bucket_delta(
            measure.histogram_buckets(before.metrics, "relay_vision_decision_latency_seconds"),
            measure.histogram_buckets(after.metrics, "relay_vision_decision_latency_seconds"),
        )
        point["vision_decision_latency_ms_p50"] = _ms(measure.histogram_quantile(0.50, dec))
        point["vision_decision_latency_ms_p95"] = _ms(measure.histogram_quantile(0.95, dec))
        point.update(identity_load.figures(before.metrics, after.metrics, wall, len(legs)))
        vision_health(point, n, wall, before.metrics, after.metrics, dec)
    else:
        point["forward_latency_ms_p50"] = point["forward_latency_ms_p95"] = None
        # no counters in the system: its far clients' delivery is the only evidence
        valid = valid and healthy
    if forwarded_ratio is not None and forwarded_ratio < FORWARDED_FRACTION:
        valid = False
    point["valid"] = valid
    reasons = []
    if not complete:
        reasons.append(f"only {len(legs)} of {2 * n} legs reported")
    if not offered_ok:
        reasons.append("load clients fell behind their send rate")
    if forwarded_ratio is not None and forwarded_ratio < FORWARDED_FRACTION:
        reasons.append(f"relay forwarded {100 * forwarded_ratio:.0f}% of sent packets")
    if not connected:
        reasons.append("a leg disconnected or failed")
    if delivery and min(delivery) < HEALTHY_FRACTION:
        reasons.append(f"a receiver got {100 * min(delivery):.0f}% of expected")
    if point.get("vision_keeps_up") is False:
        reasons.append(
            f"vision fell behind ({point['vision_samples_per_leg_per_s']} samples/s a leg of "
            f"{point['vision_configured_rate']}, decisions p95 "
            f"{point['vision_decision_latency_ms_p95']} ms)"
        )
    jitter95 = point["frame_jitter_ms_p95"]
    if jitter95 is not None and jitter95 > JITTER_WARN_MS:
        # reported, not judged: health is about delivery; this says the cores were saturated
        reasons.append(f"frame jitter p95 {jitter95:.0f} ms (queueing: the cores were saturated)")
    if point["udp_rcvbuf_drops"]:
        at_system = point["system_udp_drops"]
        where = f", {at_system} at the {system.name}'s sockets" if at_system is not None else ""
        reasons.append(
            f"kernel dropped {point['udp_rcvbuf_drops']} datagrams (receive buffers full{where})"
        )
    if reasons:
        point["problems"] = reasons
    return point


def vision_health(
    point: dict[str, Any],
    n: int,
    wall: float,
    before: measure.Metrics,
    after: measure.Metrics,
    decisions: dict[float, float] | None,
) -> None:
    """With vision on, a point is healthy only when vision keeps up (issue 20): checks
    finished per leg per second at least VISION_MIN_FRACTION of the configured rate, and
    sampling-to-decision p95 at most VISION_MAX_P95_S. Media flowing is not enough."""
    configured = measure.metric_sum(after, "relay_vision_configured_samples_per_leg_per_second")
    if not configured:
        return  # vision off (the gauge stays 0), or a relay without vision health
    count = "relay_vision_decision_latency_seconds_count"
    checks = (measure.metric_sum(after, count) or 0.0) - (measure.metric_sum(before, count) or 0.0)
    per_leg = checks / wall / (2 * n)
    p95 = measure.histogram_quantile(0.95, decisions)
    point["vision_configured_rate"] = round(configured, 3)
    point["vision_samples_per_leg_per_s"] = round(per_leg, 3)
    point["vision_leg_rate_min"] = _round(
        measure.metric_sum(after, "relay_vision_leg_samples_per_second_min"), 3
    )
    point["vision_legs_behind"] = measure.metric_sum(after, "relay_vision_legs_behind")
    keeps_up = per_leg >= VISION_MIN_FRACTION * configured and (
        p95 is not None and p95 <= VISION_MAX_P95_S
    )
    point["vision_keeps_up"] = keeps_up
    point["healthy"] = bool(point["healthy"] and keeps_up)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
