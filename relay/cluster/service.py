"""One node's part in the cluster: its entry, placement, the bus, and its drain.

Built by relay/app.py only when ``redis_url`` is set. Signalling asks ``route`` where a
joining leg belongs; the staff API asks ``owner_of`` and ``request``; SIGTERM calls
``drain`` before the legs are told the relay is restarting, so when they rejoin, through
any node, their calls are already free to be placed elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.calls.policy import CallPolicy
from relay.calls.registry import CallRegistry
from relay.calls.runtime import CallRuntime
from relay.cluster import gauges
from relay.cluster.bus import Bus
from relay.cluster.duties import Duties
from relay.cluster.nodes import NodeDirectory, NodeInfo
from relay.cluster.placement import Placement
from relay.config import Config
from relay.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SELF_ONLY = "connect-src 'self'"
DUTIES = ("notifier", "retention")
"""Work one node at a time does (relay/cluster/duties.py)."""


class Cluster:
    def __init__(self, config: Config, registry: CallRegistry, runtime: CallRuntime) -> None:
        self.config = config
        self.registry = registry
        self.runtime = runtime
        # short socket timeouts: a Redis outage must refuse a join quickly, not hang it
        self.redis: Redis = Redis.from_url(
            config.redis_url,
            decode_responses=True,
            socket_connect_timeout=1.0,
            socket_timeout=max(1.0, config.cluster_reply_s),
            health_check_interval=10,
        )
        self.directory = NodeDirectory(self.redis, config, self._running_calls)
        self.placement = Placement(self.redis, self.directory, config)
        self.bus = Bus(self.redis, self.directory.node_id, config)
        self.bus.on("drain", self._heard_drain)
        self.duties = Duties(self.redis, self.directory.node_id, config, DUTIES)
        self.directory.on_refresh = self._refreshed
        self.placement.on_loads = gauges.PLACED_HERE.set
        self._releases: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._checking: asyncio.Task[None] | None = None
        registry.hooks.append(self)
        runtime.claim = self.placement.claim  # a restarted or surviving node ends only
        runtime.release = self.placement.release  # the abandoned calls it has claimed
        runtime.on_lost = lambda booking_id: gauges.HANDED_OVER.inc()

    def _refreshed(self, redis_ok: bool, live_nodes: int) -> None:
        gauges.REDIS_UP.set(1 if redis_ok else 0)
        if redis_ok:
            gauges.NODES_LIVE.set(live_nodes)
        if not self.directory.draining:
            task = asyncio.ensure_future(self.duties.refresh())
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)
            if redis_ok and (self._checking is None or self._checking.done()):
                self._checking = asyncio.ensure_future(self._check_placements())

    @property
    def node_id(self) -> str:
        return self.directory.node_id

    def _running_calls(self) -> int:
        return sum(1 for live in self.registry.calls.values() if live.policy.state != "ended")

    # --- calls -----------------------------------------------------------------------------

    async def route(self, booking_id: int) -> str | None:
        """None when this node owns (or has just taken) the call; else the owner's URL.
        Raises PlacementError when no node can take it (Redis down, all full)."""
        owner = await self.placement.place(booking_id)
        return None if owner.node_id == self.node_id else owner.url

    async def _check_placements(self) -> None:
        """Every refresh: are the calls running here still placed here? One HMGET. A call
        another live node has taken (re-placed while this node was cut off from Redis) is
        handed over: its legs reconnect through the front address and land on the owner.
        A call whose placement is gone or names a dead node is claimed back and carries on
        (a whole-Redis outage, a Redis that restarted empty)."""
        ids = [b for b, live in self.registry.calls.items() if live.policy.state != "ended"]
        if not ids or self.runtime.handed_over:
            return
        try:
            placed = await self.redis.hmget(self.placement.key, [str(b) for b in ids])
        except (RedisError, OSError):
            return  # the next refresh tries again
        for bid, node in zip(ids, placed, strict=True):
            if node == self.node_id or self.directory.draining:
                continue
            live = self.registry.get(bid)
            if live is None or live.policy.state == "ended":
                continue  # ended (and released) meanwhile
            if node is not None and node in self.directory.known:
                taken = True
            else:
                taken = not await self.placement.claim(bid)
                if not taken:
                    log.info("cluster: call %s placed here again (was %s)", bid, node or "none")
            if taken and self.registry.hand_over(bid):
                log.warning(
                    "cluster: call %s runs on %s now; its legs were sent on",
                    bid,
                    node,
                    extra={"call_id": bid},
                )
                gauges.HANDED_OVER.inc()

    async def owner_of(self, booking_id: int) -> tuple[str | None, NodeInfo | None]:
        return await self.placement.owner(booking_id)

    def __call__(self, call: Any, policy: CallPolicy) -> None:
        """Registry hook: a call that ends here gives its placement back."""

        released = False

        def changed() -> None:
            nonlocal released
            if policy.state == "ended" and not released and not policy.fenced:
                released = True
                task = asyncio.ensure_future(self.placement.release(call.id))
                self._releases.add(task)
                task.add_done_callback(self._releases.discard)

        policy.listeners.append(changed)

    async def widen_connect_src(self, request: web.Request, response: web.StreamResponse) -> None:
        """``on_response_prepare`` after the pages' own: a page's CSP lets its call socket
        follow ``moved`` to the other nodes (and to no other address)."""
        csp = response.headers.get("Content-Security-Policy", "")
        nodes = " ".join(self.directory.socket_origins())
        if nodes and SELF_ONLY in csp:
            response.headers["Content-Security-Policy"] = csp.replace(
                SELF_ONLY, f"{SELF_ONLY} {nodes}"
            )

    async def staff_logged_out(self, session_ref: str) -> None:
        """A staff session ended here: every node closes the watchers it admitted with it."""
        try:
            await self.bus.broadcast("staff_logout", {"session_ref": session_ref})
        except (RedisError, OSError):
            log.warning("cluster: could not tell the other nodes of a staff logout")

    async def request(self, node_id: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.bus.request(node_id, kind, payload)

    # --- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.directory.publish()
        except (RedisError, OSError) as exc:
            log.warning("cluster: redis unreachable at start (%s); retrying", type(exc).__name__)
        await self.directory.start()
        await self.bus.start()
        self._sweeper = asyncio.ensure_future(self._sweep())
        log.info("cluster: node %s at %s", self.node_id, self.config.base_url)

    async def _sweep(self) -> None:
        """Calls of a dead node that nobody rejoined: ended (technical failure) once their
        heartbeat is older than the reconnect grace plus the node expiry."""
        lost_after = self.config.reconnect_grace_s + self.config.node_expiry_s
        while True:
            await asyncio.sleep(self.config.node_expiry_s)
            try:
                self.runtime.sweep_orphans(lost_after)
            except Exception as exc:  # a locked database now and then: the next one retries
                log.warning("cluster: orphan sweep failed (%s)", type(exc).__name__)

    async def drain(self) -> None:
        """SIGTERM: no new placements here, and every call placed here is handed back now;
        its legs are told to reconnect at once (not after the other parts have stopped) and
        are placed afresh wherever they rejoin."""
        await self.directory.drain()
        await self.duties.release()
        self.runtime.handed_over = True
        released = await self.placement.release_all()
        try:
            await self.bus.broadcast("drain", {"node": self.node_id, "released": released})
        except (RedisError, OSError):
            pass
        for live in list(self.registry.calls.values()):
            live.policy.interrupt()  # "restarting": the legs rejoin through any node now
        log.info("cluster: draining, %d placement(s) handed back", released)

    async def _heard_drain(self, payload: dict[str, Any]) -> None:
        if payload.get("node") != self.node_id:
            log.info("cluster: node %s is draining", payload.get("node"))
        return None

    async def stop(self) -> None:
        await cancel_and_wait(self._sweeper)
        await cancel_and_wait(self._checking)
        for task in list(self._releases):
            await task
        await self.bus.stop()
        await self.directory.stop()
        await self.redis.aclose()
