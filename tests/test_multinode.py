"""Three relay nodes (``python -m relay`` subprocesses) on one Redis and one shared store:
ten calls placed across them, a staff pause from node 1's API carried out by the node that
runs the call, ``kill -9`` of a node with calls (each is live again on another node, its end
time and pause kept, the audit chain whole, the other calls untouched), then a SIGTERM drain
that moves a node's calls without waiting for its entry to expire (docs/multinode.md).

The store is one SQLite file in WAL mode that the three processes share (one machine); the
legs are real aiortc clients (protocol/client.py) sending a small VP8 clip. Every leg's
entry is node 1, the "one address in front"; the placement sends it on (``moved``).
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time

import aiohttp
import pytest
from redis.asyncio import Redis

from bench.multinode import PASSWORD, STAFF, seed_calls, start_nodes, stop_nodes
from bench.relay_spawn import RelayProcess
from bench.small_clips import video_clip
from protocol.client import CallClient, ws_url_for
from protocol.media import EncodedTrack
from relay.records.audit import verify
from relay.records.store.engine import open_database
from tests.redis_server import redis_server

CALLS = 10
EXPIRY_S = 5.0  # the default node_expiry_s: what re-placement after kill -9 waits for


class Leg:
    """One client and what it went through: when it was last (re)joined and live."""

    def __init__(self, entry: str, token: str, seed: int) -> None:
        self.client = CallClient(
            entry,
            token,
            receive="count",  # two clips: encoding is slow
            video=EncodedTrack("video", video_clip(seed=seed % 2), 10),
        )

    @property
    def node_url(self) -> str:
        return self.client.ws_url

    def states(self) -> list[str]:
        return [m.get("state", "") for m in self.client.messages if m["type"] == "state"]

    def never_left_live(self) -> bool:
        """After its first "live", every state it heard was "live", and it joined once."""
        seen = self.states()
        return (
            self.client.joins == 1
            and "live" in seen
            and all(s == "live" for s in seen[seen.index("live") :])
            and not any(m["type"] == "restarting" for m in self.client.messages)
        )

    def back(self, joins: int, state: str) -> bool:
        return self.client.joins >= joins and self.client.state == state


async def _all_back(
    expected: dict[int, tuple[tuple[Leg, Leg], int, str]], since: float, timeout: float, what: str
) -> list[float]:
    """Seconds from ``since`` until each call's two legs had rejoined (``joins``) and were
    in ``state`` again, watched together so each call gets its own time."""
    back: dict[int, float] = {}
    while len(back) < len(expected):
        now = time.monotonic()
        if now - since > timeout:
            missing = sorted(set(expected) - set(back))
            raise AssertionError(f"calls {missing} not {what} within {timeout:.0f}s")
        for bid, (pair, joins, state) in expected.items():
            if bid not in back and all(leg.back(joins, state) for leg in pair):
                back[bid] = now - since
        await asyncio.sleep(0.05)
    return [back[bid] for bid in expected]


async def _flows(leg: Leg, timeout: float = 15.0) -> None:
    """Frames from the far side keep arriving at this leg."""
    seen = leg.client.frames["video0"]
    await _wait(lambda: leg.client.frames["video0"] >= seen + 5, timeout, "media from the far side")


async def _wait(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_three_nodes_place_pause_survive_kill_and_drain(tmp_path, engine, request):
    """SQLite: one WAL file the three processes share (one machine only); PostgreSQL: what
    nodes on several machines use (tests/postgres.py starts a real server)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    database_url = request.getfixturevalue("pg_url") if engine == "postgres" else ""
    db_target = database_url or data / "relay.sqlite"
    seeded, ends_at = seed_calls(db_target, CALLS, time.time())
    calls = [(c.booking_id, c.family_token, c.prison_token) for c in seeded]
    contacts = {c.booking_id: c.contact_id for c in seeded}
    with redis_server(tmp_path / "redis") as redis_url:
        redis = Redis.from_url(redis_url, decode_responses=True)
        nodes: dict[str, RelayProcess] = {}
        legs: dict[int, tuple[Leg, Leg]] = {}
        finished: list[Leg] = []
        try:
            await start_nodes(data, redis_url, 3, database_url, into=nodes)
            by_url = {ws_url_for(n.url): name for name, n in nodes.items()}
            entry = nodes["n1"].url
            t_start = time.monotonic()

            # --- ten calls, every leg entering at node 1 -----------------------------------
            for i, (bid, family, prison) in enumerate(calls):
                fam, pri = Leg(entry, family, 2 * i), Leg(entry, prison, 2 * i + 1)
                legs[bid] = (fam, pri)
                await fam.client.join()
                await pri.client.join()
            for fam, pri in legs.values():
                await fam.client.wait_state("live", 20)
                await pri.client.wait_state("live", 20)
            placement = await redis.hgetall("relay:placement")
            owner = {bid: placement[str(bid)] for bid in legs}
            for bid, (fam, pri) in legs.items():
                assert by_url[fam.node_url] == by_url[pri.node_url] == owner[bid], bid
            balance = {n: sum(1 for o in owner.values() if o == n) for n in nodes}
            print(f"\nplacement balance over 3 nodes: {balance}")
            assert max(balance.values()) - min(balance.values()) <= 1, balance
            print(f"20 legs joined in {time.monotonic() - t_start:.1f}s")
            for fam, pri in legs.values():  # both legs see each other's media
                await _flows(fam)
                await _flows(pri)

            # --- a console on node 1 pauses a call that node 3 runs ------------------------
            on_n3 = [bid for bid, o in owner.items() if o == "n3"]
            target = on_n3[0]
            jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                api = nodes["n1"].url + "/api/v1"
                async with http.post(
                    api + "/staff/login", json={"username": STAFF, "password": PASSWORD}
                ) as r:
                    assert r.status == 200, await r.text()
                async with http.post(
                    f"{api}/staff/calls/{target}/pause", json={"note": "check the room"}
                ) as r:
                    body = await r.json()
                    assert r.status == 200, body
                    assert body["state"] == "paused" and body["pause_reasons"] == ["staff"]
                for leg in legs[target]:
                    await leg.client.wait_state("paused", 10)
                async with http.get(api + "/staff/calls") as r:
                    listed = {c["booking_id"]: c for c in (await r.json())["calls"]}
                assert set(listed) == set(legs)  # every call, wherever it runs
                assert listed[target]["state"] == "paused"
                assert listed[target]["pause_reasons"] == ["staff"]

                # --- a revocation on node 1 stops a call node 2 runs (through its owner) -------
                revoked = next(bid for bid, o in owner.items() if o == "n2")
                async with http.post(f"{api}/staff/contacts/{contacts[revoked]}/revoke") as r:
                    body = await r.json()
                    assert r.status == 200, body
                    assert body["cancelled_booking_ids"] == [revoked]
                for leg in legs[revoked]:
                    await asyncio.wait_for(leg.client.ended.wait(), 10)
                    assert any(
                        m.get("state") == "ended" and m.get("reason") == "approval_revoked"
                        for m in leg.client.messages
                    )
                finished.extend(legs.pop(revoked))
                owner.pop(revoked)

                # --- kill -9 of node 3 ------------------------------------------------------
                others = [bid for bid, o in owner.items() if o != "n3"]
                killed_at = time.monotonic()
                nodes["n3"].proc.send_signal(signal.SIGKILL)
                back_in = await _all_back(
                    {bid: (legs[bid], 2, "paused" if bid == target else "live") for bid in on_n3},
                    killed_at,
                    30,
                    "back after kill -9",
                )
                p95 = _p95(back_in)
                print(
                    f"kill -9: {len(on_n3)} calls re-placed; seconds to live again: "
                    f"{[round(t, 2) for t in back_in]}, p95 {p95:.2f}s"
                )
                assert p95 <= 10.0, back_in
                placement = await redis.hgetall("relay:placement")
                for bid in on_n3:
                    fam, pri = legs[bid]
                    assert placement[str(bid)] in ("n1", "n2")
                    assert by_url[fam.node_url] == by_url[pri.node_url] == placement[str(bid)]
                    for leg in (fam, pri):
                        assert leg.client.joined["call"]["ends_at"] == ends_at
                    if bid != target:
                        await _flows(fam)
                        await _flows(pri)
                assert legs[target][0].client.joined["status"]["pause_reasons"] == ["staff"]
                async with http.post(f"{api}/staff/calls/{target}/resume") as r:
                    assert r.status == 200, await r.text()
                await legs[target][0].client.wait_state("live", 10)
                for bid in others:  # never interrupted
                    assert all(leg.never_left_live() for leg in legs[bid]), bid

                # --- SIGTERM drain of node 2: its calls move at once -------------------------
                placement = await redis.hgetall("relay:placement")
                on_n2 = [bid for bid in legs if placement.get(str(bid)) == "n2"]
                on_n1 = [bid for bid in others if placement[str(bid)] == "n1"]
                joins = {bid: legs[bid][0].client.joins for bid in on_n2}
                drained_at = time.monotonic()
                nodes["n2"].proc.send_signal(signal.SIGTERM)
                moved_in = await _all_back(
                    {bid: (legs[bid], joins[bid] + 1, "live") for bid in on_n2},
                    drained_at,
                    30,
                    "moved by the drain",
                )
                print(
                    f"drain: {len(on_n2)} calls moved; seconds: {[round(t, 2) for t in moved_in]}"
                )
                assert max(moved_in) < EXPIRY_S + 2.0, moved_in  # not the expiry path
                placement = await redis.hgetall("relay:placement")
                for bid in on_n2:
                    assert placement[str(bid)] == "n1"
                    assert legs[bid][0].client.restarts >= 1  # told to reconnect, not cut
                for bid in on_n1:
                    assert all(leg.never_left_live() for leg in legs[bid]), bid
                async with http.post(f"{api}/staff/calls/{on_n2[0]}/pause") as r:
                    assert r.status == 200  # now local to node 1

            db = open_database(db_target)
            try:
                assert verify(db).ok
                restarted = {
                    int(row[0])
                    for row in db.execute(
                        "SELECT DISTINCT booking_id FROM audit WHERE kind = 'relay_restart'"
                    ).fetchall()
                }
            finally:
                db.close()
            assert set(on_n3) | set(on_n2) <= restarted
        finally:
            for leg in [*finished, *(leg for pair in legs.values() for leg in pair)]:
                await leg.client.close()
            stop_nodes(nodes)
            await redis.aclose()


def _p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[-1]
