"""The live nodes: one Redis hash, node id -> JSON of what placement and operators need.

Each node rewrites its own entry every ``node_refresh_s``; an entry older than
``node_expiry_s`` is a node that is gone (crashed, cut off), whatever it says. Clocks of the
nodes are compared through ``updated_at``, so they must be NTP-synced (they are on any
server); the expiry is seconds, not milliseconds, for that reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.config import Config
from relay.node import node_id
from relay.tasks import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    url: str
    """The node's own signalling base URL (a moved leg goes to ``url + /ws``)."""
    media: str
    """The address its ICE candidates carry."""
    calls: int
    capacity: int
    draining: bool
    updated_at: float

    def alive(self, now: float, expiry_s: float) -> bool:
        return now - self.updated_at <= expiry_s

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> NodeInfo | None:
        try:
            d = json.loads(raw)
            return cls(
                str(d["node_id"]),
                str(d["url"]),
                str(d["media"]),
                int(d["calls"]),
                int(d["capacity"]),
                bool(d["draining"]),
                float(d["updated_at"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def node_id_for(config: Config) -> str:
    """One name per node for the cluster, the metrics and the recordings (relay/node.py)."""
    return node_id(config)


class NodeDirectory:
    """This node's entry (kept fresh) and the reading of everyone's."""

    def __init__(
        self,
        redis: Redis,
        config: Config,
        count_calls: Callable[[], int],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.config = config
        self.node_id = node_id_for(config)
        self.key = config.cluster_prefix + "nodes"
        self.count_calls = count_calls
        self.clock = clock
        self.draining = False
        self.last_ok = 0.0
        """When this node last refreshed its entry (0: never)."""
        self.known: dict[str, NodeInfo] = {}
        self.on_refresh: Callable[[bool, int], None] = lambda ok, live: None
        """(Redis reachable, live nodes) after each refresh: the gauges."""
        """The live nodes as of the last refresh (for what cannot wait on Redis: the CSP)."""
        self._task: asyncio.Task[None] | None = None

    def socket_origins(self) -> list[str]:
        """The signalling origins (``wss://node2.example.org``) of the nodes last seen."""
        found = set()
        for node in self.known.values():
            parts = urlsplit(node.url)
            if parts.scheme in ("http", "https") and parts.netloc:
                found.add(f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}")
        return sorted(found)

    def me(self) -> NodeInfo:
        media = self.config.announced_address or self.config.media_addresses[0]
        return NodeInfo(
            self.node_id,
            self.config.base_url,
            media,
            self.count_calls(),
            self.config.node_capacity,
            self.draining,
            self.clock(),
        )

    async def publish(self) -> None:
        await self.redis.hset(self.key, self.node_id, self.me().to_json())
        self.last_ok = self.clock()

    async def all(self) -> dict[str, NodeInfo]:
        raw = await self.redis.hgetall(self.key)
        found = {}
        for value in raw.values():
            info = NodeInfo.from_json(value)
            if info is not None:
                found[info.node_id] = info
        return found

    async def live(self) -> dict[str, NodeInfo]:
        now = self.clock()
        return {
            k: n for k, n in (await self.all()).items() if n.alive(now, self.config.node_expiry_s)
        }

    def healthy(self) -> str | None:
        """A ready check: None while this node's entry is fresh in Redis."""
        if self.clock() - self.last_ok <= self.config.node_expiry_s:
            return None
        return "redis unreachable: this node cannot take calls"

    async def _refresh(self) -> None:
        failing = False
        while True:
            try:
                await self.publish()
                self.known = await self.live()
                self.on_refresh(True, len(self.known))
                if failing:
                    log.warning("cluster: redis reachable again")
                failing = False
            except (RedisError, OSError) as exc:
                self.on_refresh(False, 0)
                if not failing:  # one line per outage, not one per refresh
                    log.warning("cluster: redis unreachable (%s)", type(exc).__name__)
                failing = True
            await asyncio.sleep(self.config.node_refresh_s)

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._refresh())

    async def drain(self) -> None:
        """Tell the others at once that no new call comes here."""
        self.draining = True
        try:
            await self.publish()
        except (RedisError, OSError):
            log.warning("cluster: could not publish the drain")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        try:
            await self.redis.hdel(self.key, self.node_id)
        except (RedisError, OSError):
            pass
