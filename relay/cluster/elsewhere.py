"""The staff API's view of calls other nodes run: listed from the shared records, acted on
through their owner (relay/web/call_control.py calls these; docs/multinode.md).

The list comes from what every node already writes (call_runtime rows, bookings) and from
placement, not from asking each node: it answers even while a node is slow, and shows the
state the owner last saved (faces, link quality and watchers are the owner's own and are
shown only by the node that runs the call).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from relay.cluster.bus import BusError
from relay.cluster.placement import PlacementError
from relay.records.call_state import CallStateRecords
from relay.web.api import ApiError

if TYPE_CHECKING:
    from relay.cluster.service import Cluster
    from relay.records.store import Booking, Store

CLUSTER_DOWN = "the relay cannot reach its cluster; try again"


def refusal(status: int, code: str, message: str) -> dict[str, Any]:
    return {"status": status, "error": {"code": code, "message": message}}


async def on_owner(
    cluster: Cluster, booking: Booking, staff: str, action: str, args: dict[str, Any]
) -> dict[str, Any] | None:
    """The owner's answer to a staff action, or None when no other node owns the call (the
    caller then answers as a single node would). Raises ApiError for an owner that is gone,
    silent or refuses."""
    try:
        node_id, owner = await cluster.owner_of(booking.id)
    except PlacementError:
        raise ApiError(503, "cluster_unavailable", CLUSTER_DOWN) from None
    if node_id is None or node_id == cluster.node_id:
        return None
    if owner is None:
        raise ApiError(
            503,
            "owner_unavailable",
            "the relay node running this call is gone; it resumes when its participants reconnect",
        )
    payload = {
        "booking_id": booking.id,
        "establishment_id": booking.establishment_id,
        "staff": staff,
        "action": action,
        "args": args,
    }
    try:
        answer = await cluster.request(node_id, "control", payload)
    except BusError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    if answer.get("status") == 200 and isinstance(answer.get("body"), dict):
        return answer["body"]
    error = answer.get("error") or {}
    raise ApiError(
        int(answer.get("status") or 502),
        str(error.get("code") or "owner_error"),
        str(error.get("message") or "the node running this call refused"),
    )


async def calls_elsewhere(
    cluster: Cluster, store: Store, establishment_id: int, here: set[int]
) -> list[dict[str, Any]]:
    """The establishment's running calls placed on other live nodes, as ``call_json`` rows."""
    try:
        placements = await cluster.placement.placements()
        nodes = await cluster.directory.live()
    except (RedisError, OSError):
        raise ApiError(503, "cluster_unavailable", CLUSTER_DOWN) from None
    ids = [
        bid
        for bid, node in placements.items()
        if node != cluster.node_id and node in nodes and bid not in here
    ]
    now = time.time()
    calls = []
    for bid, (state, reasons, awaiting) in CallStateRecords(store.connection).running(ids).items():
        booking = store.booking(bid)
        if booking is None or booking.establishment_id != establishment_id:
            continue
        calls.append(
            {
                "booking_id": bid,
                "state": state,
                "reason": f"running on node {placements[bid]}",
                "pause_reasons": sorted(reasons),
                "awaiting_staff": bool(awaiting),
                "call_type": booking.call_type,
                "starts_at": booking.starts_at,
                "ends_at": booking.ends_at,
                "seconds_left": round(max(0.0, booking.ends_at - now)),
                "legs": ["family", "prison"] if state in ("live", "paused") else [],
                "watchers": 0,
                "faces": {},
                "approved_faces": {},
                "alerts": 0,
                "quality": {},
                "media_stalled": [],
            }
        )
    return calls
