"""The relay under test, in a process of its own so its CPU is measured apart from the load.

    python -m bench.relay_proc --port P [--media-address 127.0.0.1] [--calls 64]
                               [--features vision,recording] [--data-dir DIR]

Admission is a bench token table: ``bench-<i>-family`` and ``bench-<i>-prison`` for
``i < --calls``, each call's slot open for the whole run. The application is the product's
``relay.app.build_app(config, admit=...)``; vision and recording follow their config switches.
Features requested but switched off are reported on stdout, never silently claimed.

It prints one JSON line ``{"ready": ..., "entry_point": ..., "features": {...}}`` once
listening, and exits on SIGTERM/SIGINT, or by itself after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

from protocol import messages as m
from relay.config import Config
from relay.records.store import Admission, EstablishmentPolicy

FEATURES = ("vision", "recording")


BENCH_POLICY = EstablishmentPolicy(establishment_id=1, name="bench", retention_days=1)
APPROVED_FACES = 2  # the load clip shows two faces on every side


def bench_admission(booking_id: int, role: str, starts_at: float, ends_at: float) -> Admission:
    """What the store would admit a bench leg with (the bench books no real calls)."""
    return Admission(
        booking_id,
        1,
        "social",
        starts_at,
        ends_at,
        role,
        "bench",
        "Bench",
        APPROVED_FACES,
        BENCH_POLICY,
    )


def token(call: int, role: str) -> str:
    return f"bench-{call}-{role}"


class BenchAdmit:
    """token -> admission; the slot is open from now for ``hours``."""

    def __init__(self, calls: int, hours: float = 6.0) -> None:
        now = time.time()
        self.table = {
            token(i, role): bench_admission(i + 1, role, now - 60, now + hours * 3600)
            for i in range(calls)
            for role in ("family", "prison")
        }

    async def __call__(self, tok: str, now: float, remote: str) -> Admission:
        try:
            return self.table[tok]
        except KeyError:
            raise m.ProtocolError("token_bad_signature", "not a bench token") from None


def build(
    config: Config, admit: BenchAdmit, features: set[str]
) -> tuple[web.Application, str, dict]:
    """The app, the entry point used, and which requested features it actually has."""
    from relay.app import build_app

    app = build_app(config, admit=admit)
    # a feature counts as active when asked for and the config has a switch for it
    active = {f: f in features and getattr(config, f"{f}_enabled", False) for f in FEATURES}
    if active["vision"]:  # the load clip's faces enrolled: identity re-checks measured too
        from bench import identity_load

        identity_load.install(app)
    return app, "relay.app.build_app", active


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.relay_proc")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--media-address", default="127.0.0.1")
    p.add_argument("--calls", type=int, default=256, help="bench tokens to admit")
    p.add_argument("--features", default="", help="comma list: vision,recording")
    p.add_argument("--data-dir", default="", help="store/recordings folder (default: a temp dir)")
    p.add_argument("--max-seconds", type=float, default=1800.0, help="exit after this long")
    p.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args(argv)

    features = {f.strip() for f in args.features.split(",") if f.strip()}
    unknown = features - set(FEATURES)
    if unknown:
        p.error(f"unknown features: {sorted(unknown)}")
    logging.basicConfig(
        level=logging.WARNING, format="relay_proc %(levelname)s %(name)s: %(message)s"
    )
    data_dir = Path(args.data_dir or f"/tmp/bench-relay-{os.getpid()}")
    # each feature is switched by a ``<feature>_enabled`` config field where the relay has one
    switches = {
        f"{f}_enabled": f in features
        for f in FEATURES
        if f"{f}_enabled" in {fld.name for fld in dataclasses.fields(Config)}
    }
    # RELAY_* settings apply (so any knob can be measured); the bench's own choices win
    config = Config.from_env(
        host=args.host,
        port=args.port,
        media_addresses=(args.media_address,),
        data_dir=data_dir,
        recordings_dir=data_dir / "recordings",
        seed_demo=False,
        ws_heartbeat_s=60.0,
        **switches,
    )
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # aiortc's objects want a running loop at creation: build the app inside it
    app, entry, active = loop.run_until_complete(
        _build_async(config, BenchAdmit(args.calls), features)
    )

    async def announce(_app: web.Application) -> None:
        info = {
            "ready": True,
            "pid": os.getpid(),
            "entry_point": entry,
            "features": {"requested": sorted(features), "active": active},
            "uvloop": bool(args.uvloop),
            "profiling": os.environ.get(PROFILE_ENV) or None,
        }
        print(json.dumps(info), flush=True)
        asyncio.get_running_loop().call_later(args.max_seconds, _exit_now)

    app.on_startup.append(announce)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        print=None,
        loop=loop,
        handle_signals=True,
        shutdown_timeout=2.0,
        access_log=None,
    )


async def _build_async(config: Config, admit: BenchAdmit, features: set[str]):
    return build(config, admit, features)


def _exit_now() -> None:
    print("relay_proc: --max-seconds reached, exiting", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)


def profiled_main() -> None:
    """``BENCH_RELAY_PROFILE=PREFIX``: run under cProfile, stats to ``PREFIX.<pid>.prof``.

    Deterministic profiling slows every Python call: a profiled point's CPU figures are
    inflated (the JSON says ``profiling``), its profile shows where the (CPU) time goes.
    """
    prefix = os.environ.get(PROFILE_ENV)
    if not prefix:
        main()
        return
    import cProfile

    # CPU time of the loop's thread, not wall time: on a contended machine wall time charges
    # every preemption to whatever function was running (a sendto, typically)
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    try:
        main()
    finally:
        profiler.disable()
        profiler.dump_stats(f"{prefix}.{os.getpid()}.prof")


PROFILE_ENV = "BENCH_RELAY_PROFILE"

if __name__ == "__main__":
    profiled_main()
