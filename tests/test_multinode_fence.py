"""Fencing a node cut off from Redis (docs/multinode.md, "Fencing"): three ``python -m
relay`` nodes on one real ``redis-server`` and one shared SQLite file, each node reaching
Redis through its own loopback forwarder that the test can cut (tests/tcp_cut.py: the true
edge, a network partition). Legs are real aiortc clients entering at node 1.

1. A whole-Redis outage longer than the node expiry and shorter than the reconnect grace:
   every call carries on where it was, no leg is told anything; a leg that loses its
   connection during it is refused (retryable) until Redis is back, then rejoins its call.
2. Node 2 (a node other than the front one) alone is cut off, past the expiry. One leg of its call drops and rejoins through
   node 1, which re-places and restores the call; node 2 learns from the records that the
   call is no longer its own and hands the other leg over (while still cut off). Both legs
   end up on node 1, media flows both ways; node 2's link comes back and it takes nothing
   back.
3. A placement another live node has taken (for any reason) is noticed by the call's node
   at its next refresh, through Redis, and the call moves there.
4. The booking is not ended while it runs, is ended once when it ends, and the audit chain
   verifies.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from urllib.parse import urlsplit

import aiohttp
import pytest
from redis.asyncio import Redis

from bench.multinode import node_env, seed_calls, stop_nodes
from bench.relay_spawn import RelayProcess, free_port, start_relay
from protocol.client import JoinError, ws_url_for
from relay.records.audit import verify
from relay.records.store.engine import open_database
from tests.redis_server import redis_server
from tests.tcp_cut import CuttableLink
from tests.test_multinode import Leg, _flows, _wait

EXPIRY_S = 5.0  # the default node_expiry_s
NODES = ("n1", "n2", "n3")


async def _entry_age(redis: Redis, node: str) -> float:
    raw = await redis.hget("relay:nodes", node)
    return time.time() - json.loads(raw)["updated_at"] if raw else float("inf")


async def _wait_async(check, timeout: float, what: str) -> None:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s: {what}")
        await asyncio.sleep(0.1)


async def _ready(http: aiohttp.ClientSession, node: RelayProcess) -> int:
    async with http.get(node.url + "/readyz") as r:
        return r.status


async def _handed_over(http: aiohttp.ClientSession, node: RelayProcess) -> float:
    async with http.get(node.url + "/metrics") as r:
        text = await r.text()
    found = re.search(r"^relay_cluster_calls_handed_over_total (\S+)$", text, re.M)
    assert found, "the hand-over counter is on every cluster node's /metrics"
    return float(found.group(1))


async def _rejoin(leg: Leg, timeout: float = 30.0) -> None:
    """What a client does after its connection dropped: join again at the entry address,
    again and again while the cluster says to retry."""
    started = time.monotonic()
    while True:
        try:
            await leg.client.join()
            return
        except (JoinError, TimeoutError, aiohttp.ClientError):
            if time.monotonic() - started > timeout:
                raise
            await leg.client.drop()
            await asyncio.sleep(1.0)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_partitioned_node_hands_over_and_whole_outage_breaks_nothing(
    tmp_path, engine, request
):
    """SQLite: one WAL file the three processes share; PostgreSQL: what nodes on several
    machines use (the fence is a conditional write on either)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    database_url = request.getfixturevalue("pg_url") if engine == "postgres" else ""
    db_path = database_url or data / "relay.sqlite"
    seeded, ends_at = seed_calls(db_path, 3, time.time())
    with redis_server(tmp_path / "redis") as redis_url:
        target = urlsplit(redis_url)
        redis = Redis.from_url(redis_url, decode_responses=True)
        links = {n: await CuttableLink(target.hostname, target.port).start() for n in NODES}
        nodes: dict[str, RelayProcess] = {}
        legs: dict[int, tuple[Leg, Leg]] = {}
        http = aiohttp.ClientSession()
        try:
            for name in NODES:  # n1 first: it makes the shared keys in ``data``
                nodes[name] = await start_relay(
                    data, free_port(), node_env(links[name].url, name, database_url)
                )
            await _wait_async(lambda: _all_fresh(redis), 30, "every node registered in Redis")
            by_url = {ws_url_for(n.url): name for name, n in nodes.items()}
            entry = nodes["n1"].url
            for i, c in enumerate(seeded):
                fam, pri = Leg(entry, c.family_token, 2 * i), Leg(entry, c.prison_token, 2 * i + 1)
                legs[c.booking_id] = (fam, pri)
                await fam.client.join()
                await pri.client.join()
            for fam, pri in legs.values():
                await fam.client.wait_state("live", 20)
                await pri.client.wait_state("live", 20)
            placed = await redis.hgetall("relay:placement")
            owner = {bid: placed[str(bid)] for bid in legs}
            print(f"\nplacement: {owner}")
            for bid, (fam, pri) in legs.items():
                assert by_url[fam.node_url] == by_url[pri.node_url] == owner[bid]

            # --- 1. every node cut off from Redis, past the expiry, within the grace ------
            for link in links.values():
                link.cut()
            cut_at = time.monotonic()
            for node in nodes.values():  # each node noticed: not ready for new calls
                await _wait_async(
                    lambda node=node: _status_is(http, node, 503), 20, "readyz 503 while cut"
                )
            # the family leg of node 1's call loses its connection during the outage: it
            # is refused (cluster_unavailable, retryable) until Redis is back
            z = next(bid for bid, o in owner.items() if o == "n1")
            await legs[z][0].client.drop()
            back = asyncio.ensure_future(_rejoin(legs[z][0], timeout=60))
            await asyncio.sleep(max(0.0, EXPIRY_S + 1.0 - (time.monotonic() - cut_at)))
            assert not back.done()
            for bid, (fam, pri) in legs.items():  # the calls carry on, media included
                if bid != z:
                    await _flows(fam)
                    await _flows(pri)
            outage_s = time.monotonic() - cut_at
            for link in links.values():
                link.restore()
            await _wait_async(lambda: _all_fresh(redis), 20, "every node back in Redis")
            await asyncio.wait_for(back, 30)
            assert by_url[legs[z][0].node_url] == "n1"
            for leg in legs[z]:
                await leg.client.wait_state("live", 20)
                await _flows(leg)
            assert legs[z][1].client.joins == 1  # the other leg never left
            await asyncio.sleep(2 * 2.0)  # two refreshes: each node checked its placements
            print(f"\nwhole-Redis outage of {outage_s:.1f}s: no call moved or ended")
            assert await redis.hgetall("relay:placement") == placed
            for bid, pair in legs.items():
                if bid != z:
                    assert all(leg.never_left_live() for leg in pair), bid
            for node in nodes.values():
                assert await _handed_over(http, node) == 0
                assert await _ready(http, node) == 200

            # --- 2. one node (not the front) alone cut off; a leg rejoins through node 1 -
            # the cut-off node: one that runs a call and is not the front address
            x = next(bid for bid, o in owner.items() if o != "n1")
            cut_node = owner[x]
            fam, pri = legs[x]
            links[cut_node].cut()
            cut_at = time.monotonic()
            await _wait_async(
                lambda: _older(redis, cut_node, EXPIRY_S + 0.5), 20, "the node's entry expired"
            )
            await _flows(fam)  # the cut-off node still runs the call with both legs
            await _flows(pri)
            await fam.client.drop()
            await _rejoin(fam)
            assert by_url[fam.node_url] == "n1"
            assert (await redis.hget("relay:placement", str(x))) == "n1"
            # the node learns from the records (its next heartbeat) and sends the prison leg
            # on, though it still cannot reach Redis; that leg rejoins through the front
            await asyncio.wait_for(pri.client.wait_for(lambda m: m["type"] == "restarting"), 15)
            await _wait(lambda: pri.back(2, "live"), 30, "the prison leg rejoined")
            handed_in = time.monotonic() - cut_at
            assert by_url[pri.node_url] == "n1"
            await fam.client.wait_state("live", 20)
            await pri.client.wait_state("live", 20)
            for leg in (fam, pri):
                assert leg.client.joined["call"]["ends_at"] == ends_at
            await _flows(fam)
            await _flows(pri)
            print(f"partition of {cut_node}: both legs on node 1, {handed_in:.1f}s after the cut")
            links[cut_node].restore()
            await _wait_async(lambda: _fresh(redis, cut_node), 20, "the node back in Redis")
            await asyncio.sleep(2 * 2.0)
            assert (await redis.hget("relay:placement", str(x))) == "n1"  # not taken back
            assert await _handed_over(http, nodes[cut_node]) == 1
            others = [bid for bid in legs if bid not in (x, z)]
            for bid in others:  # the other calls never noticed
                assert all(leg.never_left_live() for leg in legs[bid]), bid

            # --- 3. a placement taken by another live node, noticed through Redis ---------
            y = next(bid for bid in legs if bid != x)
            y_node = await redis.hget("relay:placement", str(y))
            taker = "n1" if y_node != "n1" else next(n for n in NODES if n != "n1")
            joins = {leg: leg.client.joins for leg in legs[y]}
            await redis.hset("relay:placement", str(y), taker)
            for leg in legs[y]:
                await asyncio.wait_for(leg.client.wait_for(lambda m: m["type"] == "restarting"), 15)
            for leg in legs[y]:  # the client rejoins by itself, through the front
                await _wait(
                    lambda leg=leg: leg.back(joins[leg] + 1, "live"), 30, "a leg of y rejoined"
                )
                assert by_url[leg.node_url] == taker
            for leg in legs[y]:
                await _flows(leg)
            handed = 2 if y_node == cut_node else 1
            assert await _handed_over(http, nodes[y_node]) == handed

            # --- 4. the records: running, then ended once ---------------------------------
            db = open_database(db_path)
            try:
                assert _booking_status(db, x) == "approved"  # not ended by the cut-off node
                assert _ends(db, x) == 0
                assert _booking_status(db, z) == "approved" and _ends(db, z) == 0
                row = db.execute(
                    "SELECT owner, ended_at FROM call_runtime WHERE booking_id = ?", (x,)
                ).fetchone()
                assert (row[0], row[1]) == ("n1", None)
            finally:
                db.close()
            await fam.client.close()  # the family leaves: the call ends, on node 1
            await asyncio.wait_for(pri.client.ended.wait(), 15)
            db = open_database(db_path)
            try:
                await _wait_async(
                    _async(lambda: _booking_status(db, x) == "completed"), 15, "x completed"
                )
                assert _ends(db, x) == 1
                assert verify(db).ok
            finally:
                db.close()
        finally:
            for pair in legs.values():
                for leg in pair:
                    await leg.client.close()
            await asyncio.to_thread(stop_nodes, nodes)  # the links run on this loop
            for link in links.values():
                await link.stop()
            await http.close()
            await redis.aclose()


def _async(check):
    async def run() -> bool:
        return check()

    return run


async def _status_is(http: aiohttp.ClientSession, node: RelayProcess, status: int) -> bool:
    return await _ready(http, node) == status


async def _all_fresh(redis: Redis) -> bool:
    return all([await _fresh(redis, n) for n in NODES])


async def _fresh(redis: Redis, node: str) -> bool:
    return await _entry_age(redis, node) < 3.0


async def _older(redis: Redis, node: str, age: float) -> bool:
    return await _entry_age(redis, node) > age


def _booking_status(db, booking_id: int) -> str:
    return str(db.execute("SELECT status FROM bookings WHERE id = ?", (booking_id,)).fetchone()[0])


def _ends(db, booking_id: int) -> int:
    """Audit records of the call's end (one per node that ended it)."""
    rows = db.execute(
        "SELECT detail FROM audit WHERE booking_id = ? AND kind = 'state'", (booking_id,)
    ).fetchall()
    return sum(1 for r in rows if json.loads(r[0]).get("to") == "ended")
