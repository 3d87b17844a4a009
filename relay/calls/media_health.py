"""Media health: notice when a side's video or audio stops arriving during a live call.

A dead camera or a crashed sender leaves the far side looking at a frozen picture under
"Connected". A timer samples each party producer's public ``packets_received`` counter; a
stream that has not moved for ``media_stall_s`` while the call is live is reported to the
call's policy engine (which tells both pages and the console, and audits it), a keyframe is
requested from it, and the stall is counted in Prometheus. When packets move again the stall
clears the same way. Uses only the Producer's public API (the packet path is not touched).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from relay.calls.registry import CallRegistry
from relay.config import Config
from relay.tasks import cancel_and_wait, every

log = logging.getLogger(__name__)

STALLED = Gauge(
    "relay_media_streams_stalled",
    "Party streams of live calls that stopped arriving (no packets for media_stall_s)",
    ["role", "kind"],
)
STALLS = Counter(
    "relay_media_stalls_total",
    "Party streams that stopped arriving during a live call",
    ["role", "kind"],
)


@dataclass
class _Seen:
    producer: object
    count: int
    moved_at: float
    stalled: bool = False


class MediaHealth:
    """One sampler for every call of the process (started and stopped with the app)."""

    def __init__(
        self, registry: CallRegistry, config: Config, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.registry = registry
        self.stall_s = config.media_stall_s
        self.tick_s = config.media_health_tick_s
        self.clock = clock
        self._seen: dict[tuple[int, str, str], _Seen] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.ensure_future(every(self.tick_s, self.sample, "media health sample"))

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._seen.clear()
        STALLED.clear()

    def sample(self) -> None:
        """Look at every party stream once: mark stalls and recoveries."""
        now = self.clock()
        present: set[tuple[int, str, str]] = set()
        for bid, live in list(self.registry.calls.items()):
            policy = live.policy
            if policy.state == "ended":
                continue
            for role, leg in list(live.call.legs.items()):
                for kind, producer in list(leg.producers.items()):
                    key = (bid, role, kind)
                    present.add(key)
                    count = producer.packets_received
                    seen = self._seen.get(key)
                    if seen is None or seen.producer is not producer:
                        if seen is not None and seen.stalled:
                            self._recovered(live, role, kind, producer)  # a new connection
                        self._seen[key] = _Seen(producer, count, now)
                        continue
                    if count != seen.count:
                        seen.count, seen.moved_at = count, now
                        if seen.stalled:
                            seen.stalled = False
                            self._recovered(live, role, kind, producer)
                    elif policy.state != "live":
                        seen.moved_at = now  # only a live call's silence counts
                    elif not seen.stalled and now - seen.moved_at > self.stall_s:
                        seen.stalled = True
                        self._stalled(live, role, kind, producer)
        for key in [k for k in self._seen if k not in present]:
            if self._seen.pop(key).stalled:
                STALLED.labels(key[1], key[2]).dec()
                live = self.registry.get(key[0])
                if live is not None:
                    live.policy.stream_recovered(key[1], key[2])

    def _stalled(self, live, role: str, kind: str, producer) -> None:
        STALLED.labels(role, kind).inc()
        STALLS.labels(role, kind).inc()
        log.info(
            "call %s: %s %s stopped arriving",
            live.call.id,
            role,
            kind,
            extra={"call_id": live.call.id},
        )
        live.policy.stream_stalled(role, kind)
        if kind == "video":
            producer.request_keyframe("stalled")

    def _recovered(self, live, role: str, kind: str, producer) -> None:
        STALLED.labels(role, kind).dec()
        log.info(
            "call %s: %s %s arriving again",
            live.call.id,
            role,
            kind,
            extra={"call_id": live.call.id},
        )
        live.policy.stream_recovered(role, kind)
        if kind == "video":
            producer.request_keyframe("recovered")
