"""Staff control of live calls through the API: list, pause, resume, end, audit timeline.

Every action goes through the call's policy engine (the one authority) and is audited with
the staff member as actor. Staff only ever see calls of their own establishment. With many
nodes (docs/multinode.md) the list adds the establishment's calls running on other nodes
(from the shared records), and an action on one of them is carried out by its owner.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from relay import keys
from relay.calls.lifecycle import CallLifecycle
from relay.calls.policy import REASON_TEXT
from relay.calls.registry import CallRegistry, LiveCall
from relay.cluster import elsewhere
from relay.media.bandwidth import call_quality
from relay.web.api import ApiError, Ctx, Handlers

HANDLERS = Handlers()
handler = HANDLERS


def call_json(live: LiveCall) -> dict[str, Any]:
    call, policy = live.call, live.policy
    return {
        "booking_id": call.id,
        "state": policy.state,
        "reason": policy.reason,
        "pause_reasons": sorted(policy.pause_reasons),
        "awaiting_staff": policy.describe()["awaiting_staff"],
        "call_type": call.call_type,
        "starts_at": call.starts_at,
        "ends_at": call.ends_at,
        "seconds_left": round(policy.seconds_left()),
        "legs": sorted(call.legs),
        "watchers": len(call.watchers),
        "faces": live.faces,
        "approved_faces": {role: leg.approved_faces for role, leg in call.legs.items()},
        "alerts": live.alerts,
        "quality": call_quality(call),  # per party leg (relay/media/bandwidth.py)
        "media_stalled": sorted(policy.stalled_streams),
        "identity": {role: side.public() for role, side in policy.identity.items()},
        "vision_behind": sorted(policy.vision_behind),  # relay/calls/vision_health.py
    }


def _live(ctx: Ctx) -> tuple[Any, LiveCall]:
    """The staff member and their establishment's call that is still running, or a 409."""
    staff = ctx.staff()
    booking = ctx.staff_booking(staff, ctx.path_id("booking_id"))
    registry: CallRegistry = ctx.request.config_dict[keys.REGISTRY]
    live = registry.get(booking.id)
    if live is None or live.call.establishment_id != staff.establishment_id:
        raise ApiError(409, "call_not_live", "nobody has joined this call")
    if live.policy.state == "ended":
        raise ApiError(409, "call_ended", "this call has ended")
    return staff, live


@handler
async def staff_calls(ctx: Ctx) -> Any:
    staff = ctx.staff()
    registry: CallRegistry = ctx.request.config_dict[keys.REGISTRY]
    calls = [
        call_json(live)
        for live in registry.calls.values()
        if live.call.establishment_id == staff.establishment_id
    ]
    cluster = ctx.request.config_dict.get(keys.CLUSTER)
    if cluster is not None:
        here = {c["booking_id"] for c in calls}
        calls += await elsewhere.calls_elsewhere(cluster, ctx.store, staff.establishment_id, here)
    watch = ctx.request.config_dict.get(keys.VISION_WATCH)
    return {"calls": sorted(calls, key=lambda c: c["starts_at"]),
            "vision_refusing": watch.refusing if watch is not None else ""}


# --- staff actions: run here, or on the node that runs the call (relay/cluster/bus.py) -------

Action = Callable[[LiveCall, str, dict[str, Any], CallLifecycle], Awaitable[dict[str, Any]]]


async def _pause(live: LiveCall, staff: str, args: dict[str, Any], _: CallLifecycle) -> dict:
    live.policy.staff_pause(staff, str(args.get("note", "")))
    return call_json(live)


async def _resume(live: LiveCall, staff: str, args: dict[str, Any], _: CallLifecycle) -> dict:
    """A resume that leaves the call paused says so (409), never a 200."""
    if not live.policy.pause_reasons:
        raise ApiError(409, "not_paused", "this call is not paused")
    remaining = live.policy.staff_resume(staff)
    if remaining:
        because = "; ".join(REASON_TEXT.get(r, r) for r in sorted(remaining))
        raise ApiError(409, "still_paused", f"the call stays paused: {because}")
    return call_json(live)


async def _end(live: LiveCall, staff: str, args: dict[str, Any], lifecycle: CallLifecycle) -> dict:
    """Through the lifecycle: the booking's record follows the policy."""
    await lifecycle.staff_end(live, staff)
    return call_json(live)


async def _message(live: LiveCall, staff: str, args: dict[str, Any], _: CallLifecycle) -> dict:
    live.policy.staff_message(staff, str(args["text"]))
    return call_json(live)


ACTIONS: dict[str, Action] = {"pause": _pause, "resume": _resume, "end": _end,
                              "message": _message}


async def act(ctx: Ctx, action: str, args: dict[str, Any]) -> Any:
    """A staff action on a running call of the staff member's establishment: through its
    policy engine here, or, with many nodes, on the node that owns it (waiting for its
    acknowledgement: an action nobody confirmed is a 503/504, never a 200)."""
    staff = ctx.staff()
    booking = ctx.staff_booking(staff, ctx.path_id("booking_id"))
    registry: CallRegistry = ctx.request.config_dict[keys.REGISTRY]
    local = registry.get(booking.id)
    cluster = ctx.request.config_dict.get(keys.CLUSTER)
    if cluster is not None and (local is None or local.policy.state == "ended"):
        answer = await elsewhere.on_owner(cluster, booking, f"staff:{staff.id}", action, args)
        if answer is not None:
            return answer
    staff, live = _live(ctx)
    return await ACTIONS[action](live, f"staff:{staff.id}", args, ctx.lifecycle)


async def control_from_bus(app: web.Application, payload: dict[str, Any]) -> dict[str, Any]:
    """The owner's side of ``act``: another node's staff API asked (bus "control")."""
    live = app[keys.REGISTRY].get(int(payload.get("booking_id", 0)))
    action = ACTIONS.get(str(payload.get("action")))
    if live is None or live.call.establishment_id != payload.get("establishment_id"):
        return elsewhere.refusal(409, "call_not_live", "nobody has joined this call")
    if live.policy.state == "ended":
        return elsewhere.refusal(409, "call_ended", "this call has ended")
    if action is None:
        return elsewhere.refusal(400, "invalid_request", "unknown action")
    try:
        body = await action(live, str(payload.get("staff")), dict(payload.get("args") or {}),
                            app[keys.LIFECYCLE])
    except ApiError as exc:
        return elsewhere.refusal(exc.status, exc.code, exc.message)
    return {"status": 200, "body": body}


@handler
async def staff_call_pause(ctx: Ctx) -> Any:
    return await act(ctx, "pause", {"note": str(ctx.body.get("note", ""))})


@handler
async def staff_call_resume(ctx: Ctx) -> Any:
    """Resume a paused call; a resume that leaves it paused says so (409), never a 200."""
    return await act(ctx, "resume", {})


@handler
async def staff_call_end(ctx: Ctx) -> Any:
    """End a live call through the lifecycle (the booking's record follows the policy)."""
    return await act(ctx, "end", {})


@handler
async def staff_call_audit(ctx: Ctx) -> Any:
    staff = ctx.staff()
    booking = ctx.staff_booking(staff, ctx.path_id("booking_id"))
    return {"records": ctx.request.config_dict[keys.AUDIT_LOG].for_booking(booking.id)}


@handler
async def staff_evidence(ctx: Ctx) -> Any:
    staff = ctx.staff()
    found = ctx.request.config_dict[keys.AUDIT_LOG].evidence(ctx.path_id("evidence_id"))
    if found is None or found[0] is None:
        raise ApiError(404, "evidence_not_found", "no such evidence")
    booking_id, jpeg, boxes = found
    ctx.staff_booking(staff, booking_id)  # 404 unless it is this establishment's
    return {
        "id": ctx.path_id("evidence_id"),
        "booking_id": booking_id,
        "jpeg_base64": base64.b64encode(jpeg or b"").decode(),
        "boxes": [[float(v) for v in box] for box in boxes],
    }


