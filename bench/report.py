"""Summaries, ratios and the terminal table."""

from __future__ import annotations

from typing import Any

COLUMNS = [
    ("system", "system", 6),
    ("calls", "calls", 5),
    ("cpu_pct", "cpu%", 6),
    ("per_call_cpu_pct", "cpu%/call", 9),
    ("memory_mb_per_call", "MB/call", 7),
    ("forward_latency_ms_p50", "p50 ms", 6),
    ("forward_latency_ms_p95", "p95 ms", 6),
    ("frame_jitter_ms_p95", "jit95 ms", 8),
    ("clients_loop_lag_ms_p95", "cl-lag95", 8),
    ("video_fps_min", "fps min", 7),
    ("audio_pps_min", "aud/s min", 9),
    ("rtp_packets_lost_pct", "lost%", 6),
    ("clients_cpu_pct", "clients%", 8),
    ("machine_busy_pct", "machine%", 8),
    ("vision_samples_per_leg_per_s", "vis/leg/s", 9),
    ("vision_decision_latency_ms_p95", "vis p95ms", 9),
    ("valid", "valid", 5),
    ("healthy", "healthy", 7),
]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def header() -> str:
    return "  ".join(title.rjust(width) for _, title, width in COLUMNS)


def row(system: str, point: dict[str, Any]) -> str:
    cells = []
    for key, _title, width in COLUMNS:
        value = system if key == "system" else point.get(key)
        cells.append(_cell(value).rjust(width))
    line = "  ".join(cells)
    if point.get("error"):
        line += f"  error: {point['error'][:120]}"
    elif point.get("problems"):
        line += "  (" + "; ".join(point["problems"]) + ")"
    return line


def table(systems: dict[str, dict[str, Any]]) -> str:
    lines = [header()]
    for name, summary in systems.items():
        if summary.get("skipped"):
            lines.append(f"{name:>6}  skipped: {summary['skipped']}")
            continue
        for point in summary.get("points", []):
            lines.append(row(name, point))
    return "\n".join(lines)


def markdown_table(systems: dict[str, dict[str, Any]]) -> str:
    titles = [title for _, title, _ in COLUMNS]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for name, summary in systems.items():
        if summary.get("skipped"):
            lines.append(f"| {name} | skipped: {summary['skipped']} |" + " |" * (len(titles) - 2))
            continue
        for point in summary.get("points", []):
            cells = [name if key == "system" else _cell(point.get(key)) for key, _, _ in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def good(point: dict[str, Any]) -> bool:
    return bool(point.get("valid") and point.get("healthy"))


def summarize(name: str, points: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    """A system's headline figures, taken at its largest valid and healthy N."""
    ok = [p for p in points if good(p)]
    best = max(ok, key=lambda p: p["calls"]) if ok else None
    summary: dict[str, Any] = {
        "max_healthy_calls": best["calls"] if best else 0,
        "at_calls": best["calls"] if best else None,
        "per_call_cpu_pct": best["per_call_cpu_pct"] if best else None,
        "forward_latency_ms_p50": best.get("forward_latency_ms_p50") if best else None,
        "forward_latency_ms_p95": best.get("forward_latency_ms_p95") if best else None,
        "memory_mb_per_call": best.get("memory_mb_per_call") if best else None,
        "vision_samples_per_s": best.get("vision_samples_per_s") if best else None,
        "vision_samples_per_leg_per_s": best.get("vision_samples_per_leg_per_s") if best else None,
        "vision_decision_latency_ms_p95": best.get("vision_decision_latency_ms_p95") if best else None,
        "identity_cpu_per_leg": best.get("identity_cpu_per_leg") if best else None,
        "points": points,
        **info,
    }
    if best is None:
        summary["note"] = "no valid and healthy point: no figure reported"
    return summary


def ratios(systems: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """relay per-call CPU over each baseline's, pair by pair at the same N."""
    out: dict[str, Any] = {}
    relay = {p["calls"]: p for p in systems.get("relay", {}).get("points", []) if good(p)}
    for base in ("naive", "janus"):
        key = f"relay_vs_{base}"
        summary = systems.get(base)
        if summary is None:
            out[key] = None
            out[f"{key}_reason"] = f"{base} was not run (--systems)"
            continue
        if summary.get("skipped"):
            out[key] = None
            out[f"{key}_reason"] = summary["skipped"]
            continue
        theirs = {p["calls"]: p for p in summary.get("points", []) if good(p)}
        common = sorted(set(relay) & set(theirs))
        pairs = {
            str(n): round(relay[n]["per_call_cpu_pct"] / theirs[n]["per_call_cpu_pct"], 3)
            for n in common
            if theirs[n]["per_call_cpu_pct"] > 0
        }
        out[f"{key}_by_calls"] = pairs
        if not pairs:
            out[key] = None
            out[f"{key}_reason"] = "no N at which both ran valid and healthy"
            out[f"{key}_at_calls"] = None
            continue
        n = max(int(k) for k in pairs)
        out[key] = pairs[str(n)]
        out[f"{key}_at_calls"] = n
    return out


TARGETS = {
    "relay_per_call_cpu_pct_max": 5.0,
    "relay_vs_naive_max": 1 / 8,
    "relay_vs_janus_max": 4.0,
    "forward_latency_ms_p95_max_at_16_calls": 10.0,
}


def targets(systems: dict[str, dict[str, Any]], rat: dict[str, Any], features: dict[str, bool]) -> dict[str, Any]:
    """Report (never assert) the issue's targets: met, missed, or not measurable."""
    relay = systems.get("relay", {})
    out: dict[str, Any] = {}
    per_call = relay.get("per_call_cpu_pct")
    out["relay_per_call_cpu_le_5pct"] = {
        "value": per_call,
        "met": None if per_call is None else per_call <= TARGETS["relay_per_call_cpu_pct_max"],
        "note": "target applies with vision and recording on"
        if not (features.get("vision") and features.get("recording"))
        else "",
    }
    for base, limit in (("naive", TARGETS["relay_vs_naive_max"]), ("janus", TARGETS["relay_vs_janus_max"])):
        value = rat.get(f"relay_vs_{base}")
        out[f"relay_vs_{base}_le_{limit:g}"] = {
            "value": value,
            "at_calls": rat.get(f"relay_vs_{base}_at_calls"),
            "met": None if value is None else value <= limit,
        }
    p16 = next(
        (p for p in relay.get("points", []) if p["calls"] == 16 and good(p)),
        None,
    )
    value = p16.get("forward_latency_ms_p95") if p16 else None
    out["forward_latency_p95_le_10ms_at_16"] = {
        "value": value,
        "met": None if value is None else value <= TARGETS["forward_latency_ms_p95_max_at_16_calls"],
        "note": "" if p16 else "no valid and healthy relay point at 16 calls",
    }
    return out


def markdown_summary(result: dict[str, Any]) -> str:
    """The docs' table and headline lines, from a ``--json`` file's contents."""
    lines = [markdown_table(result["systems"]), ""]
    rat = result.get("ratios", {})
    for base in ("naive", "janus"):
        key = f"relay_vs_{base}"
        if key in rat:
            value = rat[key]
            if value is None:
                lines.append(f"- {key}: n/a ({rat.get(key + '_reason', '')})")
            else:
                pairs = ", ".join(f"{n} calls: {r}" for n, r in rat.get(key + "_by_calls", {}).items())
                lines.append(f"- {key}: **{value}** at {rat.get(key + '_at_calls')} calls (pairs: {pairs})")
    for name, s in result["systems"].items():
        if s.get("skipped"):
            lines.append(f"- {name}: skipped ({s['skipped']})")
            continue
        lines.append(
            f"- {name}: max healthy calls **{s['max_healthy_calls']}**, per-call CPU "
            f"**{s['per_call_cpu_pct']} %** of one core at {s.get('at_calls')} calls"
            + (f"; {s['stopped']}" if s.get("stopped") else "")
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    print(markdown_summary(json.load(open(sys.argv[1]))))
