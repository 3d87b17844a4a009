"""Work only one node may do at a time (sending the notification outbox, the retention
sweeps): a lease per duty in Redis, taken with SET NX PX and renewed by its holder every
refresh, so another node takes it over within ``node_expiry_s`` of the holder's loss. A node
that cannot reach Redis holds nothing (two senders would email families twice, two purgers
race on the same files; a late email or a late purge is the lesser harm)."""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.cluster import gauges
from relay.config import Config

log = logging.getLogger(__name__)

# renew only a lease this node holds
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_DROP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Duties:
    def __init__(self, redis: Redis, node_id: str, config: Config, names: tuple[str, ...]) -> None:
        self.redis = redis
        self.node_id = node_id
        self.ttl_ms = int(config.node_expiry_s * 1000)
        self.keys = {name: f"{config.cluster_prefix}duty:{name}" for name in names}
        self.held: set[str] = set()
        self._renew = redis.register_script(_RENEW)
        self._drop = redis.register_script(_DROP)

    def holds(self, name: str) -> bool:
        return name in self.held

    async def refresh(self) -> None:
        """Renew what this node holds, take what nobody holds (every node refresh)."""
        for name, key in self.keys.items():
            try:
                mine = bool(await self._renew(keys=[key], args=[self.node_id, self.ttl_ms]))
                if not mine:
                    mine = bool(await self.redis.set(key, self.node_id, nx=True, px=self.ttl_ms))
            except (RedisError, OSError):
                mine = False
            if mine and name not in self.held:
                log.info("cluster: this node now does %s", name)
            (self.held.add if mine else self.held.discard)(name)
            gauges.DUTY_HELD.labels(name).set(1 if mine else 0)

    async def release(self) -> None:
        """Drain: hand every duty over now rather than at the lease's expiry."""
        for name in list(self.held):
            self.held.discard(name)
            gauges.DUTY_HELD.labels(name).set(0)
            try:
                await self._drop(keys=[self.keys[name]], args=[self.node_id])
            except (RedisError, OSError):
                pass
