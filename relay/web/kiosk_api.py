"""The kiosk on the laptop page: a prisoner requests calls with their number and a PIN.

The laptop signs in with its device key (relay/web/laptop_api.py); the prisoner with their
prison number and a PIN staff set (argon2 hash, checked off the event loop). Wrong PINs
count; after ``kiosk_pin_tries`` in a row the prisoner's kiosk access locks until staff
unlock it or set a new PIN. Every failure, lock, unlock and PIN change is audited. A sign-in
gives a short-lived session bound to the prisoner and the laptop (HMAC, nothing stored).
The prisoner sees their approved contacts, free slots (relay/records/availability.py), can
request a social call (staff approve it in the console) and cancel their own pending ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Any

from relay import auth
from relay.records import availability
from relay.records.store import Booking, Laptop
from relay.web import models
from relay.web.api import ApiError, Ctx, Handlers
from relay.web.laptop_api import device_laptop

log = logging.getLogger("relay.web.kiosk_api")

HANDLERS = Handlers()
handler = HANDLERS

SIGN_IN_REFUSED = "wrong prison number or PIN"
LOCKED_TEXT = "too many wrong PINs: kiosk access is locked; ask a member of staff"


def _mac(secret: bytes, body: str) -> str:
    return hmac.new(secret, b"kiosk-session:" + body.encode(), hashlib.sha256).hexdigest()[:32]


def issue_session(secret: bytes, prisoner_id: int, laptop_id: int, expires_at: float) -> str:
    body = f"{prisoner_id}.{laptop_id}.{int(expires_at)}"
    return f"{body}.{_mac(secret, body)}"


def session_prisoner(ctx: Ctx) -> tuple[Laptop, Any]:
    """The laptop (device key) and the signed-in prisoner (kiosk session), or a 401."""
    laptop = device_laptop(ctx)
    parts = ctx.body["session"].split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts[:3]):
        body = ".".join(parts[:3])
        pid, lid, exp = (int(p) for p in parts[:3])
        if (
            hmac.compare_digest(parts[3], _mac(ctx.secret, body))
            and lid == laptop.id
            and exp > ctx.now
        ):
            prisoner = ctx.store.prisoner(pid)
            pin = ctx.store.kiosk_pin(pid)
            if prisoner is not None and pin is not None and not pin.locked:
                return laptop, prisoner
    raise ApiError(401, "kiosk_signed_out", "sign in again with your number and PIN")


def _booking_json(ctx: Ctx, b: Booking) -> dict[str, Any]:
    names = [v.name for v in (ctx.store.visitor(i) for i in b.visitor_ids) if v is not None]
    return {
        "booking_id": b.id,
        "status": b.status,
        "starts_at": b.starts_at,
        "ends_at": b.ends_at,
        "visitors": names,
    }


def _prisoner_json(prisoner: Any) -> dict[str, Any]:
    return {"number": prisoner["number"], "name": prisoner["name"]}


# --------------------------------------------------------------------------- the prisoner


@handler
async def kiosk_sign_in(ctx: Ctx) -> Any:
    laptop = device_laptop(ctx)
    b = ctx.args(models.KioskSignIn)
    prisoner = ctx.store.prisoner_by_number(b.prisoner_number)
    if prisoner is not None and prisoner["establishment_id"] != laptop.establishment_id:
        prisoner = None
    pin = ctx.store.kiosk_pin(prisoner["id"]) if prisoner is not None else None
    if pin is not None and pin.locked:
        ctx.audit(
            "kiosk_locked_attempt",
            {"prisoner_id": prisoner["id"]},
            laptop.establishment_id,
            f"laptop:{laptop.id}",
        )
        raise ApiError(403, "kiosk_locked", LOCKED_TEXT)
    # argon2 (~50 ms of CPU) off the loop; the same work for an unknown number
    ok = await asyncio.to_thread(auth.verify_password, pin.pin_hash if pin else None, b.pin)
    if not ok or prisoner is None or pin is None:
        if prisoner is not None and pin is not None:
            after = ctx.store.kiosk_pin_failed(prisoner["id"], ctx.now, ctx.config.kiosk_pin_tries)
            ctx.audit(
                "kiosk_pin_failed",
                {"prisoner_id": prisoner["id"], "failures": after.failures},
                laptop.establishment_id,
                f"laptop:{laptop.id}",
            )
            if after.locked:
                ctx.audit(
                    "kiosk_locked",
                    {"prisoner_id": prisoner["id"], "failures": after.failures},
                    laptop.establishment_id,
                    f"laptop:{laptop.id}",
                )
                log.warning(
                    "kiosk access locked for prisoner %s on laptop %s", prisoner["id"], laptop.id
                )
                raise ApiError(403, "kiosk_locked", LOCKED_TEXT)
        raise ctx.refuse_auth("bad_credentials", SIGN_IN_REFUSED)
    ctx.store.kiosk_pin_ok(prisoner["id"])
    expires = ctx.now + ctx.config.kiosk_session_s
    return {
        "session": issue_session(ctx.secret, prisoner["id"], laptop.id, expires),
        "expires_at": expires,
        "prisoner": _prisoner_json(prisoner),
    }


@handler
async def kiosk_home(ctx: Ctx) -> Any:
    laptop, prisoner = session_prisoner(ctx)
    contacts = []
    for c in ctx.store.contacts(laptop.establishment_id, prisoner["id"]):
        v = ctx.store.visitor(c.visitor_id)
        if c.status == "approved" and v is not None and v.identity_verified:
            contacts.append({"visitor_id": v.id, "name": v.name})
    mine = [
        _booking_json(ctx, b)
        for b in ctx.store.list_bookings(
            laptop.establishment_id, status="requested", starts_from=ctx.now
        )
        if b.prisoner_id == prisoner["id"] and b.requested_by == "prisoner"
    ]
    policy = ctx.store.policy(laptop.establishment_id)
    return {
        "prisoner": _prisoner_json(prisoner),
        "contacts": contacts,
        "call_minutes": list(policy.allowed_call_minutes),
        "requests": mine,
    }


@handler
async def kiosk_slots(ctx: Ctx) -> Any:
    _laptop, prisoner = session_prisoner(ctx)
    minutes = ctx.args(models.KioskSlotsAsk).minutes
    slots = availability.free_slots(
        ctx.store, prisoner_id=prisoner["id"], minutes=minutes, now=ctx.now
    )
    shown = slots[: ctx.config.kiosk_slots_shown]
    return {
        "minutes": minutes,
        "slots": [{"starts_at": s.starts_at, "ends_at": s.ends_at} for s in shown],
    }


@handler
async def kiosk_request(ctx: Ctx) -> Any:
    laptop, prisoner = session_prisoner(ctx)
    b = ctx.args(models.KioskCallRequest)
    if not ctx.store.is_approved_contact(prisoner["id"], b.visitor_id):
        raise ApiError(404, "contact_not_found", "that person is not one of your approved contacts")
    return ctx.store.request_booking(
        prisoner_id=prisoner["id"],
        call_type="social",
        starts_at=b.starts_at,
        minutes=b.minutes,
        main_visitor_id=b.visitor_id,
        visitor_ids=[b.visitor_id],
        requested_by="prisoner",
        now=ctx.now,
        actor=f"laptop:{laptop.id}",
    )


@handler
async def kiosk_cancel(ctx: Ctx) -> Any:
    laptop, prisoner = session_prisoner(ctx)
    b = ctx.store.booking(ctx.path_id("booking_id"))
    if (
        b is None
        or b.prisoner_id != prisoner["id"]
        or b.requested_by != "prisoner"
        or b.status != "requested"
    ):
        raise ApiError(404, "booking_not_found", "no such pending request of yours")
    return await ctx.lifecycle.cancel(
        b.id, f"laptop:{laptop.id}", ctx.now, "cancelled by the prisoner at the kiosk"
    )


# --------------------------------------------------------------------------- staff


def _staff_prisoner(ctx: Ctx) -> tuple[Any, Any]:
    staff = ctx.staff()
    prisoner = ctx.store.prisoner(ctx.path_id("prisoner_id"))
    if prisoner is None or prisoner["establishment_id"] != staff.establishment_id:
        raise ApiError(404, "prisoner_not_found", "no such prisoner")
    return staff, prisoner


def _pin_status(ctx: Ctx, prisoner_id: int) -> dict[str, Any]:
    pin = ctx.store.kiosk_pin(prisoner_id)
    return {
        "prisoner_id": prisoner_id,
        "has_pin": pin is not None,
        "locked": bool(pin and pin.locked),
        "failures": pin.failures if pin else 0,
    }


@handler
async def staff_set_pin(ctx: Ctx) -> Any:
    staff, prisoner = _staff_prisoner(ctx)
    if prisoner["erased_at"] is not None:  # relay/records/erasure.py
        raise ApiError(409, "already_erased", "this prisoner's record was erased")
    pin_hash = await asyncio.to_thread(auth.hash_password, ctx.args(models.StaffPin).pin)
    ctx.store.set_kiosk_pin(prisoner["id"], pin_hash, staff.id, ctx.now)
    ctx.audit(
        "kiosk_pin_set",
        {"prisoner_id": prisoner["id"]},
        staff.establishment_id,
        f"staff:{staff.id}",
    )
    return _pin_status(ctx, prisoner["id"])


@handler
async def staff_unlock_pin(ctx: Ctx) -> Any:
    staff, prisoner = _staff_prisoner(ctx)
    if not ctx.store.unlock_kiosk_pin(prisoner["id"]):
        raise ApiError(409, "no_pin", "this prisoner has no kiosk PIN yet")
    ctx.audit(
        "kiosk_unlocked",
        {"prisoner_id": prisoner["id"]},
        staff.establishment_id,
        f"staff:{staff.id}",
    )
    return _pin_status(ctx, prisoner["id"])
