"""How long one store call holds the event loop, SQLite file against PostgreSQL on loopback.

``.venv/bin/python -m bench.store_latency [--n 2000]`` starts a private PostgreSQL with the
server's default settings (fsync on; bench/postgres.py), builds the same small world
(bench/world.py) in SQLite and in PostgreSQL with the relay's ``synchronous_commit`` off and
on, and times, per call, the join admission check
(``Store.admit``: reads), a booking request (``request_booking``: one write transaction with
every rule checked), its approval, one audit append, and for scale one round trip and the
smallest write transaction (lock, one update, commit); it prints p50/p99 in microseconds
(docs/multinode.md, "Records", keeps the figures).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.world import DAY, NOW, make_world
from protocol.tokens import JoinClaims
from relay.records.audit import AuditLog
from relay.records.store.engine import DatabaseOptions


def _percentiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return q[49] * 1e6, q[98] * 1e6


def _time(fn: Callable[[int], object], n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def measure(
    target: str | Path, n: int, options: DatabaseOptions | None = None
) -> dict[str, tuple[float, float]]:
    w = make_world(target, options)
    s = w.store
    try:
        slot = NOW + DAY
        first = s.request_booking(
            prisoner_id=w.prisoner_a,
            call_type="social",
            starts_at=slot,
            minutes=30,
            main_visitor_id=w.vid("mum"),
            visitor_ids=[w.vid("dad")],
            requested_by="family",
            now=NOW,
            actor="bench",
        )
        b = s.approve_booking(first.id, w.officer_a, NOW)
        claims = JoinClaims(
            b.id, f"visitor:{w.vid('mum')}", "family", b.starts_at - 600, b.ends_at, ""
        )
        admit = _time(lambda _i: s.admit(claims, b.starts_at), n)

        made: list[int] = []

        def request(i: int) -> None:  # a legal call (no allowance) at a new time each
            made.append(
                s.request_booking(
                    prisoner_id=w.prisoner_a2,
                    call_type="legal",
                    starts_at=NOW + 2 * DAY + (i % 1000) * 1800.0,
                    minutes=30,
                    main_visitor_id=w.vid("mum"),
                    visitor_ids=[],
                    requested_by="staff",
                    now=NOW,
                    actor="bench",
                ).id
            )

        def approve(i: int) -> None:
            s.approve_booking(made[i], w.officer_a, NOW)
            s.cancel_booking(made[i], "bench", NOW)  # frees the slot for the next round

        rounds = min(n, 1000)
        booking, approval = [], []
        for _ in range(max(1, n // rounds)):
            made.clear()
            booking += _time(request, rounds)
            approval += _time(approve, rounds)
        audit = AuditLog(s.connection)
        appends = _time(lambda i: audit.append("bench", {"i": i}, booking_id=b.id), n)
        db = s.connection
        trip = _time(lambda _i: db.execute("SELECT 1").fetchone(), n)

        def write(i: int) -> None:  # the write lock, one small update, the commit
            with db.transaction():
                db.execute("UPDATE notify_cursor SET last_event_id = ?", (i,))

        writes = _time(write, n)
        return {
            "one round trip (SELECT 1)": _percentiles(trip),
            "smallest write transaction": _percentiles(writes),
            "admit (join check)": _percentiles(admit),
            "request_booking": _percentiles(booking),
            "approve + cancel": _percentiles(approval),
            "audit append": _percentiles(appends),
        }
    finally:
        s.close()


def main(argv: list[str] | None = None) -> int:
    from bench.postgres import PostgresServer

    parser = argparse.ArgumentParser(prog="python -m bench.store_latency")
    parser.add_argument("--n", type=int, default=2000, help="calls timed per operation")
    args = parser.parse_args(argv)
    server = PostgresServer.start(fast=False)  # the server's default durability
    try:
        server.admin("CREATE DATABASE bench")
        with tempfile.TemporaryDirectory() as tmp:
            server.admin("CREATE DATABASE bench_sync")
            results = {
                "SQLite (WAL, synchronous=NORMAL)": measure(Path(tmp) / "bench.sqlite", args.n),
                "PostgreSQL 127.0.0.1 (relay default: synchronous_commit off)": measure(
                    server.url("bench"), args.n, DatabaseOptions()
                ),
                "PostgreSQL, synchronous_commit on": measure(
                    server.url("bench_sync"), args.n, DatabaseOptions(synchronous_commit=True)
                ),
            }
    finally:
        server.stop()
    print(
        f"| operation ({args.n} calls) | " + " | ".join(f"{k} p50 / p99 µs" for k in results) + " |"
    )
    print("|---|" + "---|" * len(results))
    for op in next(iter(results.values())):
        cells = [f"{r[op][0]:.0f} / {r[op][1]:.0f}" for r in results.values()]
        print(f"| {op} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
