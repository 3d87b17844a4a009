"""Which node owns which call: a Redis hash booking id -> node id, set under a short lock.

The first leg to join places its call: the least-loaded live, non-draining node with
capacity left (load = the calls placed on it, counted from this hash, so a burst of first
joins spreads at once instead of waiting for the nodes' 2 s refresh). The placement is kept
while its owner lives. When the owner is gone (no refresh for ``node_expiry_s``) or
draining, the next leg to join re-places it on the node it reached (the call is restored
there from the shared records, relay/calls/runtime.py), or the least-loaded one if that
node cannot take it. The per-call lock (redis-py ``Lock``: SET NX PX) makes the two legs of
one call land on the same node even when they join at the same instant; its expiry means a
node that dies holding it blocks the call for at most ``cluster_lock_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from protocol import messages as m
from relay.cluster.nodes import NodeDirectory, NodeInfo
from relay.config import Config

log = logging.getLogger(__name__)

# compare-and-delete: never remove a placement another node has taken since
_RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


class PlacementError(Exception):
    """No node can take the call now; ``code`` is what the joining leg is told."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


E_CLUSTER = m.E_CLUSTER
E_NO_NODE = m.E_NO_NODE


class Placement:
    """Placement over a client made with ``decode_responses=True`` (relay/cluster/service.py)."""

    def __init__(self, redis: Redis, directory: NodeDirectory, config: Config) -> None:
        self.redis = redis
        self.directory = directory
        self.config = config
        self.key = config.cluster_prefix + "placement"
        self._release = redis.register_script(_RELEASE)
        self.on_loads: Callable[[int], None] = lambda placed_here: None
        """Calls placed on this node, each time the loads are counted: the gauge."""

    @property
    def node_id(self) -> str:
        return self.directory.node_id

    def _lock(self, booking_id: int) -> Lock:
        """The call's placement lock (SET NX PX): held for at most ``cluster_lock_s``."""
        return self.redis.lock(
            f"{self.config.cluster_prefix}lock:call:{booking_id}",
            timeout=self.config.cluster_lock_s,
            blocking_timeout=self.config.cluster_lock_s,
        )

    async def owner(self, booking_id: int) -> tuple[str | None, NodeInfo | None]:
        """(the node id the call is placed on, that node if it is alive)."""
        try:
            node_id = await self.redis.hget(self.key, str(booking_id))
            if node_id is None:
                return None, None
            return node_id, (await self.directory.live()).get(node_id)
        except (RedisError, OSError) as exc:
            raise PlacementError(E_CLUSTER, "the relay cannot reach its cluster") from exc

    async def place(self, booking_id: int) -> NodeInfo:
        """The live node that owns the call, placing (or re-placing) it first if need be."""
        try:
            async with self._lock(booking_id):
                nodes = await self.directory.live()
                # this node is alive (it is answering and reaching Redis) even while its
                # own entry is stale: just after Redis came back, before its next refresh,
                # it would otherwise give away its own calls
                nodes[self.node_id] = self.directory.me()
                current = await self.redis.hget(self.key, str(booking_id))
                if current is not None:
                    owner = nodes.get(current)
                    if owner is not None and not owner.draining:
                        return owner
                chosen = await self._choose(nodes, replacing=current is not None)
                await self.redis.hset(self.key, str(booking_id), chosen.node_id)
                if current is not None:
                    log.info(
                        "cluster: call %s re-placed from %s on %s",
                        booking_id,
                        current,
                        chosen.node_id,
                    )
                return chosen
        except LockError as exc:
            raise PlacementError(E_CLUSTER, "the call's placement is busy; try again") from exc
        except (RedisError, OSError) as exc:
            raise PlacementError(E_CLUSTER, "the relay cannot reach its cluster") from exc

    async def claim(self, booking_id: int) -> bool:
        """Take the call for this node unless another live node owns it (a node giving up
        an abandoned call must be the only one to do so). False when Redis cannot say."""
        try:
            async with self._lock(booking_id):
                current = await self.redis.hget(self.key, str(booking_id))
                if current is not None and current != self.node_id:
                    owner = (await self.directory.live()).get(current)
                    if owner is not None:
                        return False
                await self.redis.hset(self.key, str(booking_id), self.node_id)
                return True
        except (LockError, RedisError, OSError):
            return False

    async def _choose(self, nodes: dict[str, NodeInfo], replacing: bool) -> NodeInfo:
        load = await self.loads()
        open_nodes = [
            n for n in nodes.values() if not n.draining and load.get(n.node_id, 0) < n.capacity
        ]
        if not open_nodes:
            raise PlacementError(E_NO_NODE, "every relay node is full or draining; try again")
        here = next((n for n in open_nodes if n.node_id == self.node_id), None)
        if replacing and here is not None:
            return here  # re-taken where the rejoining leg arrived: no second redirect
        return min(
            open_nodes, key=lambda n: (load.get(n.node_id, 0) / max(1, n.capacity), n.node_id)
        )

    async def loads(self) -> dict[str, int]:
        """Calls placed per node id."""
        counts: dict[str, int] = {}
        for node in await self.redis.hvals(self.key):
            counts[node] = counts.get(node, 0) + 1
        self.on_loads(counts.get(self.node_id, 0))
        return counts

    async def placements(self) -> dict[int, str]:
        return {int(k): v for k, v in (await self.redis.hgetall(self.key)).items()}

    async def release(self, booking_id: int) -> None:
        """The call ended here: its placement goes (if it is still this node's)."""
        try:
            await self._release(keys=[self.key], args=[str(booking_id), self.node_id])
        except (RedisError, OSError):
            log.warning("cluster: could not release the placement of call %s", booking_id)

    async def release_all(self) -> int:
        """Drain: hand every placement of this node back at once. Returns how many."""
        released = 0
        try:
            for bid, node in (await self.placements()).items():
                if node == self.node_id:
                    released += int(
                        await self._release(keys=[self.key], args=[str(bid), self.node_id])
                    )
        except (RedisError, OSError):
            log.warning("cluster: could not hand back this node's placements")
        return released
