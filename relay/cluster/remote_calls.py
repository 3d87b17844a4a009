"""The lifecycle's reach into calls other nodes run (relay/calls/lifecycle.py ``remote``).

A booking change (cancel, reschedule, revocation, laptop withdrawn) may touch a call that
another node runs. The records are shared, so the change itself is the same everywhere; what
only the owner can do is drive its live call through its policy engine. So the asking node
hands the whole change to the owner's lifecycle (bus "lifecycle", acknowledged) and waits; a
revocation first asks every live node which of its calls the visitor is on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from relay.cluster.bus import BusError
from relay.cluster.placement import PlacementError
from relay.records.store import StoreError

if TYPE_CHECKING:
    from relay.calls.lifecycle import CallLifecycle
    from relay.cluster.service import Cluster

log = logging.getLogger(__name__)


class RemoteCalls:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def owner_elsewhere(self, booking_id: int) -> str | None:
        try:
            node_id, owner = await self.cluster.owner_of(booking_id)
        except PlacementError as exc:
            raise BusError(503, exc.code, exc.message) from None
        if owner is None or node_id == self.cluster.node_id:
            return None  # not placed, here, or its node is gone (its legs rejoin refused)
        return node_id

    async def ask(self, node_id: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
        answer = await self.cluster.request(node_id, "lifecycle", {"op": op, **args})
        if answer.get("error"):
            error = answer["error"]
            raise StoreError(str(error.get("code")), str(error.get("message")))
        return answer

    async def ask_all(self, op: str, args: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The other live nodes' answers; a node that does not answer in time is left out
        (its calls' legs are refused at their next join: the records already say so)."""
        try:
            nodes = [n for n in await self.cluster.directory.live() if n != self.cluster.node_id]
        except (RedisError, OSError):
            raise BusError(
                503, "cluster_unavailable", "the relay cannot reach its cluster"
            ) from None
        answers = await asyncio.gather(
            *[self.ask(n, op, args) for n in nodes], return_exceptions=True
        )
        found = {}
        for node, answer in zip(nodes, answers, strict=True):
            if isinstance(answer, BaseException):
                log.warning("cluster: node %s did not answer %s", node, op)
            else:
                found[node] = answer
        return found


async def lifecycle_from_bus(lifecycle: CallLifecycle, payload: dict[str, Any]) -> dict[str, Any]:
    """The owner's side: do the change here, on the shared records, through the policy."""
    op = payload.get("op")
    bid = int(payload.get("booking_id", 0))
    try:
        if op == "cancel":
            await lifecycle.cancel(
                bid, str(payload["actor"]), float(payload["now"]), str(payload["reason"])
            )
        elif op == "reschedule":
            await lifecycle.reschedule(
                bid,
                float(payload["starts_at"]),
                int(payload["minutes"]),
                str(payload["actor"]),
                float(payload["now"]),
                bool(payload["keep_approval"]),
            )
        elif op == "calls_with":
            return dict(lifecycle.calls_with(str(payload.get("participant"))))
        elif op in ("end", "reduce_family"):
            await lifecycle.apply(str(op), bid, payload)
        elif op == "laptop_revoked":
            laptop = int(payload.get("laptop_id", 0))
            return {"ended": await lifecycle.laptop_revoked(laptop, everywhere=False)}
        else:
            return {"error": {"code": "invalid_request", "message": "unknown lifecycle op"}}
    except StoreError as exc:
        return {"error": {"code": exc.code, "message": exc.message}}
    return {"ok": True}
