"""The laptop page's API and the staff side of laptop enrolment (docs/laptop.md).

The laptop page signs in with a device key, never typed by a prisoner: staff (admin) get a
one-time enrolment code in the console, the page exchanges it once for a long-lived key kept
in the browser. Staff revoke a laptop's keys: every request with them is refused from then
on and the call in progress on the laptop ends through the lifecycle. Enrolment, redemption
and revocation are audited; codes and keys never reach a log.
"""

from __future__ import annotations

import logging
from typing import Any

from relay.records.store import Laptop, StoreError
from relay.web import models
from relay.web.api import ApiError, Ctx, Handlers, issue_join_token

log = logging.getLogger("relay.web.laptop_api")

HANDLERS = Handlers()
handler = HANDLERS

REVOKED_TEXT = "this laptop's key was withdrawn by staff; ask staff to set it up again"


def laptop_json(laptop: Laptop) -> dict[str, Any]:
    return {"id": laptop.id, "label": laptop.label, "room": laptop.room}


def device_laptop(ctx: Ctx) -> Laptop:
    """The laptop whose device key the body carries, or a 401 counted against the address."""
    ctx.check_not_blocked()
    laptop, revoked = ctx.store.check_device_key(ctx.body["device_key"])
    if revoked:
        raise ctx.refuse_auth("device_revoked", REVOKED_TEXT)
    if laptop is None:
        raise ctx.refuse_auth("bad_credentials", "unknown device key")
    return laptop


def _staff_laptop(ctx: Ctx) -> tuple[Any, Laptop]:
    staff = ctx.staff()
    laptop = ctx.store.laptop(ctx.path_id("laptop_id"))
    if laptop is None or laptop.establishment_id != staff.establishment_id:
        raise ApiError(404, "laptop_not_found", "no such laptop")
    return staff, laptop


# --------------------------------------------------------------------------- the laptop page


@handler
async def laptop_enrol(ctx: Ctx) -> Any:
    ctx.check_not_blocked()
    try:
        laptop, key = ctx.store.redeem_enrolment(ctx.args(models.LaptopEnrol).code, ctx.now)
    except StoreError as exc:
        raise ctx.refuse_auth(exc.code, exc.message) from None
    key_id = key.split(".", 1)[0]
    ctx.audit(
        "laptop_enrolled",
        {"laptop_id": laptop.id, "device_key_id": key_id},
        laptop.establishment_id,
        f"laptop:{laptop.id}",
    )
    log.info("laptop %s enrolled (device key %s) from %s", laptop.id, key_id, ctx.remote)
    return {"laptop": laptop_json(laptop), "device_key": key}


@handler
async def laptop_today(ctx: Ctx) -> Any:
    laptop = device_laptop(ctx)
    window = ctx.config.laptop_calls_window_s
    calls = ctx.store.laptop_calls(laptop.id, ctx.now - window, ctx.now + window)
    return {
        "laptop": laptop_json(laptop),
        "now": ctx.now,
        "waiting_room_s": ctx.config.token_early_s,
        "calls": [
            {
                "booking_id": c.booking_id,
                "call_type": c.call_type,
                "starts_at": c.starts_at,
                "ends_at": c.ends_at,
                "status": c.status,
                "visitors": list(c.visitors),
            }
            for c in calls
        ],
    }


@handler
async def laptop_join_token(ctx: Ctx) -> Any:
    laptop = device_laptop(ctx)
    b = ctx.store.booking(ctx.args(models.LaptopJoin).booking_id)
    if b is None or b.laptop_id != laptop.id:
        raise ApiError(404, "booking_not_found", "no such call on this laptop")
    return issue_join_token(ctx, b, f"laptop:{laptop.id}", "prison")


# --------------------------------------------------------------------------- staff


@handler
async def staff_laptops(ctx: Ctx) -> Any:
    staff = ctx.staff()
    return {
        "laptops": [
            {**laptop_json(s.laptop), "device_keys": s.keys, "enrolled_at": s.enrolled_at}
            for s in ctx.store.laptop_statuses(staff.establishment_id)
        ]
    }


@handler
async def staff_laptop_enrol(ctx: Ctx) -> Any:
    staff, laptop = _staff_laptop(ctx)
    enrolment = ctx.store.start_enrolment(
        laptop.id, staff.id, ctx.now, ctx.config.laptop_enrol_code_s
    )
    ctx.audit(
        "laptop_enrolment_code",
        {"laptop_id": laptop.id, "expires_at": enrolment.expires_at},
        laptop.establishment_id,
        f"staff:{staff.id}",
    )
    return {"laptop_id": laptop.id, "code": enrolment.code, "expires_at": enrolment.expires_at}


@handler
async def staff_laptop_revoke(ctx: Ctx) -> Any:
    staff, laptop = _staff_laptop(ctx)
    revoked = ctx.store.revoke_laptop_keys(laptop.id, staff.id, ctx.now)
    ended = await ctx.lifecycle.laptop_revoked(laptop.id)
    ctx.audit(
        "laptop_revoked",
        {"laptop_id": laptop.id, "revoked_keys": revoked, "ended_booking_ids": ended},
        laptop.establishment_id,
        f"staff:{staff.id}",
    )
    for bid in ended:
        ctx.audit(
            "laptop_revoked",
            {"laptop_id": laptop.id},
            laptop.establishment_id,
            f"staff:{staff.id}",
            booking_id=bid,
        )
    log.info(
        "laptop %s revoked by staff:%s (%s keys; ended calls %s)",
        laptop.id,
        staff.id,
        revoked,
        ended,
    )
    return {"laptop_id": laptop.id, "revoked_keys": revoked, "ended_booking_ids": ended}
