"""``python -m bench.multinode``: calls over several relay nodes; per-node CPU and balance.

Starts a real ``redis-server``, N ``python -m relay`` nodes on one shared store (a SQLite
file in WAL mode, or ``--database-url`` PostgreSQL), seeds ``--calls`` approved calls and
joins their legs (reference clients, receive-only counting, a small VP8 clip) through node 1,
the "one address in front": placement sends each call to a node. Over the measured window it
reads each node's user+system CPU from /proc and each leg's received frames, and reports
per-node CPU (% of one core, per call), the placement balance, and whether the offered load
was delivered (a run whose legs got under 90 % of the frame rate is reported invalid, not
as a low CPU figure: the load clients share the machine). See docs/multinode.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.measure import proc_sample
from bench.redis_server import redis_server
from bench.relay_spawn import RelayProcess, free_port, start_relay
from bench.small_clips import video_clip
from protocol import tokens
from protocol.client import CallClient, ws_url_for
from protocol.media import EncodedTrack
from relay.records.store import Store

SECRET = "bench-multinode-secret-0123456789abcdef"
PASSWORD = "correct horse battery staple"
STAFF = "officer_n"
DELIVERED = 0.9
"""A leg must receive at least this share of the offered frame rate for the run to count."""


@dataclass(frozen=True)
class SeededCall:
    booking_id: int
    family_token: str
    prison_token: str
    contact_id: int
    """The family visitor's approval (revoking it ends the call)."""


def seed_calls(
    target: Path | str, calls: int, now: float, minutes: float = 30.0
) -> tuple[list[SeededCall], float]:
    """``calls`` approved calls open now in one establishment (one prisoner, laptop and
    visitor each), with join tokens signed with ``SECRET``; staff ``STAFF``/``PASSWORD``.
    Returns the calls and their end time."""
    store = Store.open(target)
    key = SECRET.encode()
    ends_at = now + minutes * 60
    try:
        est = store.create_establishment("HMP Many Nodes", now)
        staff = store.add_staff(est, STAFF, PASSWORD, "officer")
        seeded = []
        for i in range(calls):
            laptop, _ = store.add_laptop(est, f"laptop {i}")
            prisoner = store.add_prisoner(est, f"A{1000 + i}BC", f"Prisoner {i}")
            visitor, _ = store.add_visitor(f"Visitor {i}", "1980-01-01", True, now)
            contact = store.approve_contact(prisoner, visitor, staff, now)
            bid = store.add_booking_unchecked(
                prisoner_id=prisoner,
                call_type="social",
                starts_at=now - 60,
                ends_at=ends_at,
                main_visitor_id=visitor,
                visitor_ids=[visitor],
                laptop_id=laptop,
                status="approved",
                now=now,
            )
            family = tokens.JoinClaims(bid, f"visitor:{visitor}", "family", now - 600, ends_at)
            prison = tokens.JoinClaims(bid, f"laptop:{laptop}", "prison", now - 600, ends_at)
            seeded.append(
                SeededCall(bid, tokens.issue(key, family), tokens.issue(key, prison), contact)
            )
        return seeded, ends_at
    finally:
        store.close()


def node_env(redis_url: str, name: str, database_url: str = "") -> dict[str, str]:
    """A node of the test cluster: no demo, no vision, no recording (ops measures those)."""
    return {
        "RELAY_REDIS_URL": redis_url,
        "RELAY_NODE_ID": name,
        "RELAY_SECRET_KEY": SECRET,
        "RELAY_DATABASE_URL": database_url,
        "RELAY_SEED_DEMO": "0",
        "RELAY_VISION_ENABLED": "0",
        "RELAY_RECORDING_ENABLED": "0",
        "RELAY_RECONNECT_GRACE_S": "60",
    }


async def start_nodes(
    data: Path,
    redis_url: str,
    count: int,
    database_url: str = "",
    into: dict[str, RelayProcess] | None = None,
) -> dict[str, RelayProcess]:
    """Node n1 first (it makes the shared keys in ``data``), then the others together;
    returns once every node is in the nodes hash. ``into`` gets each node as it starts, so
    a caller can stop what started when a later one fails."""
    nodes = {} if into is None else into
    nodes["n1"] = await start_relay(data, free_port(), node_env(redis_url, "n1", database_url))
    names = [f"n{i}" for i in range(2, count + 1)]
    started = await asyncio.gather(
        *[start_relay(data, free_port(), node_env(redis_url, n, database_url)) for n in names],
        return_exceptions=True,
    )
    for name, node in zip(names, started, strict=True):
        if isinstance(node, RelayProcess):
            nodes[name] = node
    failed = [n for n in started if isinstance(n, BaseException)]
    if failed:
        raise failed[0]
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        deadline = time.monotonic() + 30
        while len(await redis.hgetall("relay:nodes")) < count:
            if time.monotonic() > deadline:
                raise TimeoutError("the nodes did not all register in Redis")
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()
    return nodes


def stop_nodes(nodes: dict[str, RelayProcess]) -> None:
    for node in nodes.values():
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
    for node in nodes.values():
        try:
            node.proc.wait(15)
        except Exception:
            node.proc.kill()
            node.proc.wait(10)


async def run(
    nodes_n: int, calls_n: int, duration: float, fps: int, warmup: float, database_url: str = ""
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-multinode-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir(mode=0o700)
        seeded, _ = seed_calls(database_url or data / "relay.sqlite", calls_n, time.time())
        with redis_server(Path(tmp) / "redis") as redis_url:
            nodes: dict[str, RelayProcess] = {}
            legs: list[CallClient] = []
            try:
                await start_nodes(data, redis_url, nodes_n, database_url, into=nodes)
                entry = nodes["n1"].url
                for call in seeded:
                    for j, token in enumerate((call.family_token, call.prison_token)):
                        leg = CallClient(
                            entry,
                            token,
                            receive="count",
                            video=EncodedTrack("video", video_clip(seed=j), fps),
                        )
                        legs.append(leg)
                        await leg.join()
                for leg in legs:
                    await leg.wait_state("live", 30)
                await asyncio.sleep(warmup)
                return await _measure(nodes, legs, redis_url, duration, fps)
            finally:
                for leg in legs:
                    await leg.close()
                stop_nodes(nodes)


async def _measure(
    nodes: dict[str, RelayProcess],
    legs: list[CallClient],
    redis_url: str,
    duration: float,
    fps: int,
) -> dict[str, Any]:
    before = {name: proc_sample(n.proc.pid).cpu_s for name, n in nodes.items()}
    frames = [leg.frames["video0"] for leg in legs]
    sent = [leg.video.sent for leg in legs]  # type: ignore[union-attr]
    started = time.monotonic()
    await asyncio.sleep(duration)
    wall = time.monotonic() - started
    after = {name: proc_sample(n.proc.pid).cpu_s for name, n in nodes.items()}
    got = [(leg.frames["video0"] - f0) / wall for leg, f0 in zip(legs, frames, strict=True)]
    out = [(leg.video.sent - s0) / wall for leg, s0 in zip(legs, sent, strict=True)]  # type: ignore[union-attr]
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        placement = await redis.hgetall("relay:placement")
    finally:
        await redis.aclose()
    url_to_node = {ws_url_for(n.url): name for name, n in nodes.items()}
    placed = {name: sum(1 for v in placement.values() if v == name) for name in nodes}
    per_node = {}
    for name in nodes:
        cpu_pct = 100.0 * (after[name] - before[name]) / wall
        per_node[name] = {
            "calls": placed[name],
            "cpu_pct": round(cpu_pct, 1),
            "cpu_pct_per_call": round(cpu_pct / placed[name], 1) if placed[name] else None,
        }
    split = sum(
        1
        for i in range(0, len(legs), 2)
        if url_to_node.get(legs[i].ws_url) != url_to_node.get(legs[i + 1].ws_url)
    )
    worst = min(got) if got else 0.0
    return {
        "nodes": per_node,
        "calls": len(legs) // 2,
        "balance": {"max_minus_min": max(placed.values()) - min(placed.values())},
        "calls_split_across_nodes": split,
        "offered_fps": fps,
        "sent_fps": {"min": round(min(out), 1), "mean": round(sum(out) / len(out), 1)},
        "received_fps": {"min": round(worst, 1), "mean": round(sum(got) / len(got), 1)},
        "valid": worst >= DELIVERED * fps and split == 0,
        "window_s": round(wall, 1),
    }


def _table(result: dict[str, Any]) -> str:
    lines = ["node   calls   CPU % of a core   per call"]
    for name, row in result["nodes"].items():
        per = row["cpu_pct_per_call"]
        lines.append(
            f"{name:<6} {row['calls']:>5}   {row['cpu_pct']:>15.1f}   "
            f"{'-' if per is None else f'{per:.1f}':>8}"
        )
    fps = result["received_fps"]
    lines.append(
        f"balance (max - min calls): {result['balance']['max_minus_min']}; "
        f"legs received {fps['min']}-{fps['mean']} fps of {result['offered_fps']} "
        f"offered; {'VALID' if result['valid'] else 'INVALID (load not delivered)'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.multinode", description=__doc__.split("\n")[0]
    )
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--calls", type=int, default=6)
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--fps", type=int, default=15, help="video frames per second per leg")
    p.add_argument("--database-url", default="", help="PostgreSQL for the shared records")
    p.add_argument("--json", dest="json_path", help="write the result as JSON here")
    args = p.parse_args(argv)
    result = asyncio.run(
        run(args.nodes, args.calls, args.duration, args.fps, args.warmup, args.database_url)
    )
    print(_table(result))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))
    return 0 if result["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
