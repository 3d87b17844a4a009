"""relay/cluster/ on a real redis-server, in one process: the nodes hash and its expiry,
placement under the lock (two legs racing from two nodes land on one), re-placement when
the owner is gone or draining, the bus's acknowledged requests, and Redis down failing
closed with a code (docs/multinode.md)."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from relay.cluster.bus import Bus, BusError
from relay.cluster.duties import Duties
from relay.cluster.nodes import NodeDirectory
from relay.cluster.placement import Placement, PlacementError
from relay.config import Config
from tests.redis_server import free_port


class Node:
    """One node's cluster parts on its own connection (what relay/cluster/service.py builds)."""

    def __init__(self, url: str, name: str, capacity: int = 10, **settings: object) -> None:
        self.config = Config(
            redis_url=url, node_id=name, port=free_port(), node_capacity=capacity, **settings
        )
        self.redis = Redis.from_url(url, decode_responses=True, socket_connect_timeout=1.0)
        self.calls = 0
        self.directory = NodeDirectory(self.redis, self.config, lambda: self.calls)
        self.placement = Placement(self.redis, self.directory, self.config)
        self.bus = Bus(self.redis, name, self.config)

    async def close(self) -> None:
        await self.bus.stop()
        await self.redis.aclose()


async def test_two_nodes_racing_for_one_call_place_it_once(redis_url):
    a, b = Node(redis_url, "a"), Node(redis_url, "b")
    try:
        await a.directory.publish()
        await b.directory.publish()
        owners = await asyncio.gather(*[n.placement.place(7) for n in (a, b) * 5])
        assert len({o.node_id for o in owners}) == 1
        assert owners[0].url == (a if owners[0].node_id == "a" else b).config.base_url
        # least loaded first: the next call goes to the other node
        other = await a.placement.place(8)
        assert other.node_id != owners[0].node_id
        assert await a.placement.loads() == {"a": 1, "b": 1}
    finally:
        await a.close()
        await b.close()


async def test_a_gone_or_draining_owner_is_replaced_where_the_leg_arrived(redis_url):
    a, b = Node(redis_url, "a", node_expiry_s=1.0), Node(redis_url, "b", node_expiry_s=1.0)
    try:
        await a.directory.publish()
        await b.directory.publish()
        await a.redis.hset(a.placement.key, "5", "b")
        assert (await a.placement.place(5)).node_id == "b"  # b is alive: kept
        await asyncio.sleep(1.3)  # b stops refreshing: gone after node_expiry_s
        await a.directory.publish()
        assert (await a.placement.owner(5)) == ("b", None)
        assert (await a.placement.place(5)).node_id == "a"  # re-taken by the node reached
        # a drains: its placements go back at once, and new ones avoid it
        await b.directory.publish()
        await a.directory.drain()
        assert await a.placement.release_all() == 1
        assert (await b.placement.place(5)).node_id == "b"
        assert (await a.placement.place(6)).node_id == "b"
        # a release only removes this node's own placement (compare-and-delete)
        await a.placement.release(5)
        assert (await a.placement.owner(5))[0] == "b"
    finally:
        await a.close()
        await b.close()


async def test_a_node_back_from_an_outage_keeps_its_own_calls(redis_url):
    """Right after Redis comes back a node's own entry may still be stale (its next refresh
    is up to ``node_refresh_s`` away): a leg rejoining its call there must not see the call's
    own node as gone and re-place the call on another (the flake seen in
    test_multinode_fence: the call moved to n2)."""
    a, b = Node(redis_url, "a", node_expiry_s=1.0), Node(redis_url, "b", node_expiry_s=1.0)
    try:
        await a.directory.publish()
        await a.redis.hset(a.placement.key, "9", "a")
        await asyncio.sleep(1.3)  # a's entry is past its expiry; b has just refreshed
        await b.directory.publish()
        assert "a" not in await a.directory.live()
        assert (await a.placement.place(9)).node_id == "a"
        assert (await a.placement.owner(9))[0] == "a"
        # b, which a leg of the call may also reach, still sees a as gone and takes it
        assert (await b.placement.place(9)).node_id == "b"
    finally:
        await a.close()
        await b.close()


async def test_full_nodes_refuse_with_a_code(redis_url):
    a = Node(redis_url, "a", capacity=1)
    try:
        await a.directory.publish()
        await a.placement.place(1)
        with pytest.raises(PlacementError) as refused:
            await a.placement.place(2)
        assert refused.value.code == "no_node_available"
    finally:
        await a.close()


async def test_bus_request_waits_for_the_owner_and_says_when_nobody_answers(redis_url):
    a, b = Node(redis_url, "a", cluster_reply_s=1.0), Node(redis_url, "b")

    async def control(payload):
        return {"status": 200, "body": {"done": payload["action"]}}

    async def silent(payload):
        await asyncio.sleep(5)

    b.bus.on("control", control)
    b.bus.on("slow", silent)
    try:
        await a.bus.start()
        await b.bus.start()
        assert await a.bus.request("b", "control", {"action": "pause"}) == {
            "status": 200,
            "body": {"done": "pause"},
        }
        with pytest.raises(BusError) as nobody:
            await a.bus.request("c", "control", {"action": "pause"})
        assert (nobody.value.status, nobody.value.code) == (503, "owner_unavailable")
        started = time.monotonic()
        with pytest.raises(BusError) as late:
            await a.bus.request("b", "slow", {})
        assert (late.value.status, late.value.code) == (504, "owner_timeout")
        assert time.monotonic() - started < 4.0
    finally:
        await a.close()
        await b.close()


async def test_redis_down_fails_closed_with_a_code():
    a = Node(f"redis://127.0.0.1:{free_port()}/0", "a")
    try:
        with pytest.raises(PlacementError) as down:
            await a.placement.place(1)
        assert down.value.code == "cluster_unavailable"
        assert a.directory.healthy() is not None  # never refreshed: not ready
    finally:
        await a.close()


async def test_one_node_at_a_time_holds_a_duty_and_hands_it_over(redis_url):
    a, b = Node(redis_url, "a", node_expiry_s=1.0), Node(redis_url, "b", node_expiry_s=1.0)
    da = Duties(a.redis, "a", a.config, ("notifier",))
    db = Duties(b.redis, "b", b.config, ("notifier",))
    try:
        await da.refresh()
        await db.refresh()
        assert da.holds("notifier") and not db.holds("notifier")
        await da.refresh()  # renewed by its holder, still not the other's
        await db.refresh()
        assert da.holds("notifier") and not db.holds("notifier")
        await da.release()  # drain: handed over at once
        await db.refresh()
        assert db.holds("notifier") and not da.holds("notifier")
        await asyncio.sleep(1.3)  # b stops renewing (lost): a takes over after the expiry
        await da.refresh()
        assert da.holds("notifier")
    finally:
        await a.close()
        await b.close()
