"""Staff control of live calls through the API: list, pause, resume, end, audit timeline.

Every action goes through the call's policy engine (the one authority) and is audited with
the staff member as actor. Staff only ever see calls of their own establishment.
"""

from __future__ import annotations

import base64
from typing import Any

from relay import keys
from relay.calls.policy import REASON_TEXT
from relay.calls.registry import CallRegistry, LiveCall
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
    watch = ctx.request.config_dict.get(keys.VISION_WATCH)
    return {"calls": sorted(calls, key=lambda c: c["starts_at"]),
            "vision_refusing": watch.refusing if watch is not None else ""}


@handler
async def staff_call_pause(ctx: Ctx) -> Any:
    staff, live = _live(ctx)
    live.policy.staff_pause(f"staff:{staff.id}", str(ctx.body.get("note", "")))
    return call_json(live)


@handler
async def staff_call_resume(ctx: Ctx) -> Any:
    """Resume a paused call; a resume that leaves it paused says so (409), never a 200."""
    staff, live = _live(ctx)
    if not live.policy.pause_reasons:
        raise ApiError(409, "not_paused", "this call is not paused")
    remaining = live.policy.staff_resume(f"staff:{staff.id}")
    if remaining:
        because = "; ".join(REASON_TEXT.get(r, r) for r in sorted(remaining))
        raise ApiError(409, "still_paused", f"the call stays paused: {because}")
    return call_json(live)


@handler
async def staff_call_end(ctx: Ctx) -> Any:
    """End a live call through the lifecycle (the booking's record follows the policy)."""
    staff, live = _live(ctx)
    await ctx.lifecycle.staff_end(live, f"staff:{staff.id}")
    return call_json(live)


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


