"""``python -m bench``: sweep concurrent calls over the relay and its baselines, same load.

For each N (1, 2, 4, 8, ... or ``--calls``) and each system, in turn so the systems see the
same machine conditions: start the system fresh in its own process, start two load client
processes (every call's family legs in one, prison legs in the other), warm up, measure a
window, stop everything. A system stops climbing once a point is invalid or unhealthy, or it
saturates (its event loop near one core, or the machine near full).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import clips, identity_load, measure, plot, report
from bench.run import PointConfig, run_point
from bench.systems import JanusSystem, NaiveSystem, RelaySystem, System

ALL_SYSTEMS = ("relay", "naive", "janus")
SATURATED_LOOP_PCT = 90.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load benchmark: relay vs decode/re-encode aiortc relay vs Janus VideoCall.",
    )
    p.add_argument("--calls", help="comma list of call counts, e.g. 1,2,4,8 (default: doubling)")
    p.add_argument(
        "--max-calls", type=int, default=64, help="upper bound of the sweep (default 64)"
    )
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per point")
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds between all legs up and the window (default: keyframe interval + 2)",
    )
    p.add_argument(
        "--systems", default=",".join(ALL_SYSTEMS), help="comma list of relay,naive,janus"
    )
    p.add_argument(
        "--vision",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="ask the relay for vision (needs the product entry point)",
    )
    p.add_argument(
        "--recording",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="ask the relay for recording (needs the product entry point)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke test: 1 call, short window, relay + naive, 2 s clip (< 1 min)",
    )
    p.add_argument("--json", dest="json_path", help="write results as JSON here")
    p.add_argument("--plot", dest="plot_path", help="write an SVG of CPU against calls here")
    p.add_argument(
        "--client-media",
        choices=("lean", "aiortc"),
        default="lean",
        help="load legs: lean (own RTP/SRTP after the handshake; default) or aiortc",
    )
    p.add_argument(
        "--keep-logs", action="store_true", help="keep the processes' logs (printed path)"
    )
    args = p.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in systems if s not in ALL_SYSTEMS]
    if bad:
        p.error(f"unknown systems {bad}; choose from {ALL_SYSTEMS}")
    if args.quick:
        if args.systems == ",".join(ALL_SYSTEMS):
            systems = ["relay", "naive"]
        args.calls = args.calls or "1"
        args.duration = min(args.duration, 4.0)
        args.warmup = 2.5 if args.warmup is None else args.warmup
    args.system_list = systems
    if args.calls:
        args.call_list = sorted({int(c) for c in args.calls.split(",") if c.strip()})
    else:
        args.call_list = [1 << i for i in range(16) if (1 << i) <= args.max_calls]
    args.call_list = [n for n in args.call_list if 0 < n <= args.max_calls]
    if not args.call_list:
        p.error("no call counts to run")
    return args


def _say(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _saturation(system: str, point: dict[str, Any], cpus: int) -> str | None:
    cpu = point.get("cpu_pct") or 0.0
    limit = SATURATED_LOOP_PCT if system == "relay" else SATURATED_LOOP_PCT * cpus
    if cpu >= limit:
        return f"CPU saturated ({cpu:.0f}% of one core)"
    # The machine's own busy share is reported, not used to stop: on a shared machine other
    # people's work fills it too. Overload of the load clients shows up as invalid points.
    return None


async def sweep(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM (a CI timeout, an operator) cancels the sweep so every child is stopped in finally
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    spec = clips.QUICK if args.quick else clips.FULL
    _say(
        f"bench: preparing clips ({spec.width}x{spec.height}, {spec.frames} frames; cached in {clips.CACHE_DIR})"
    )
    video = clips.ensure_video(spec)
    audio = clips.ensure_audio()
    clip_meta = clips.describe(video)
    warmup = args.warmup if args.warmup is not None else spec.keyframe_interval / spec.fps + 2.0
    features = {"vision": bool(args.vision), "recording": bool(args.recording)}
    wanted = {f for f, on in features.items() if on}
    machine = measure.machine_info()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-"))
    max_calls = max(args.call_list)
    budget = (warmup + args.duration + 180) * 2  # per system process, after which it exits

    def make(name: str) -> System:
        if name == "relay":
            return RelaySystem(log_dir, budget, wanted, max_calls)
        if name == "naive":
            return NaiveSystem(log_dir, budget)
        return JanusSystem(log_dir, budget)

    points: dict[str, list[dict[str, Any]]] = {name: [] for name in args.system_list}
    info: dict[str, dict[str, Any]] = {name: {} for name in args.system_list}
    stopped: dict[str, str] = {}
    for name in args.system_list:
        reason = make(name).skip_reason()
        if reason:
            stopped[name] = reason
            info[name]["skipped"] = reason
            _say(f"bench: {name}: {reason}")

    result: dict[str, Any] = {}
    _say(
        f"bench: calls {args.call_list}, systems {args.system_list}, window {args.duration:g}s, "
        f"warm-up {warmup:g}s, logs in {log_dir}"
    )
    print(report.header(), flush=True)
    started = time.monotonic()
    try:
        for n in args.call_list:
            for name in args.system_list:
                if name in stopped:
                    continue
                system = make(name)
                pc = PointConfig(n, args.duration, warmup, video, audio, log_dir, args.client_media)
                point = await run_point(system, pc)
                if system.info:
                    info[name].update(
                        {
                            k: v
                            for k, v in system.info.items()
                            if k in ("entry_point", "features", "uvloop", "profiling")
                        }
                    )
                points[name].append(point)
                print(report.row(name, point), flush=True)
                why = None
                if point.get("error"):
                    why = "point failed"
                elif not report.good(point):
                    why = "invalid" if not point.get("valid") else "unhealthy"
                else:
                    why = _saturation(name, point, machine["cpus"] or 1)
                if why:
                    stopped[name] = f"stopped after {n} calls: {why}"
                    info[name]["stopped"] = stopped[name]
                result = _assemble(
                    args, machine, features, clip_meta, warmup, points, info, started
                )
                if args.json_path:
                    _write_json(args.json_path, result)
    finally:
        if not args.keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
    return result


def _assemble(args, machine, features, clip_meta, warmup, points, info, started) -> dict[str, Any]:
    systems: dict[str, Any] = {}
    for name, pts in points.items():
        if info[name].get("skipped"):
            systems[name] = {
                "skipped": info[name]["skipped"],
                "points": [],
                "per_call_cpu_pct": None,
                "max_healthy_calls": None,
            }
            continue
        systems[name] = report.summarize(name, pts, info[name])
    rat = report.ratios(systems)
    return {
        "machine": machine,
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "started_at": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - (time.monotonic() - started))
        ),
        "elapsed_s": round(time.monotonic() - started, 1),
        "load": {
            "calls": args.call_list,
            "duration_s": args.duration,
            "warmup_s": warmup,
            "per_leg": "VP8 + Opus each way",
            "client_media": args.client_media,
            "video": {
                k: clip_meta.get(k)
                for k in (
                    "width",
                    "height",
                    "fps",
                    "bitrate",
                    "keyframe_interval",
                    "frames",
                    "measured_bitrate",
                )
            },
            "audio": {"codec": "opus", "ptime_ms": 20},
            "quick": bool(args.quick),
        },
        "systems": systems,
        "ratios": rat,
        "targets": report.targets(systems, rat, features),
        "features": features,
    }


def _write_json(path: str, result: dict[str, Any]) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop

        result = uvloop.run(sweep(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        _say("bench: interrupted; every process it started has been stopped")
        return 130
    if not result:
        _say("bench: nothing ran")
        return 1
    print()
    print(report.table(result["systems"]))
    rat = result["ratios"]
    for base in ("naive", "janus"):
        key = f"relay_vs_{base}"
        if key in rat:
            value = rat[key]
            where = f" at {rat.get(key + '_at_calls')} calls" if value is not None else ""
            why = (
                f" ({rat.get(key + '_reason')})"
                if value is None and rat.get(key + "_reason")
                else ""
            )
            print(f"{key}: {value if value is not None else 'n/a'}{where}{why}")
    for name, s in result["systems"].items():
        if not s.get("skipped"):
            print(
                f"{name}: max healthy calls {s['max_healthy_calls']}, per-call CPU {s['per_call_cpu_pct']}%"
                + (f" — {s['stopped']}" if s.get("stopped") else "")
            )
    print(identity_load.line(result["systems"]))
    if args.json_path:
        _write_json(args.json_path, result)
        _say(f"bench: wrote {args.json_path}")
    if args.plot_path:
        Path(args.plot_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.plot_path).write_text(plot.svg(result["systems"]))
        _say(f"bench: wrote {args.plot_path}")
    relay = result["systems"].get("relay")
    return 0 if relay is None or relay.get("skipped") or relay.get("max_healthy_calls") else 2


if __name__ == "__main__":
    sys.exit(main())
