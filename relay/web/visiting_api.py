"""Visiting hours and free slots over the API.

A family member sees the free slots of a prisoner they are an approved contact of (anyone
else gets the same 404 as an unknown prisoner: the API never tells who is in custody);
staff see those of their own establishment's prisoners. Officers read the visiting hours;
admins replace them (audited). The rules live in relay/records (availability.py for the
slots, the store's booking checks for requests): nothing here decides a slot.
"""

from __future__ import annotations

from typing import Any

from relay.records.availability import allowance, free_slots
from relay.records.store import Store
from relay.records.store.visiting import Blackout, Session, VisitingHours
from relay.web import visiting_models as vm
from relay.web.api import ApiError, Ctx, Handlers

HANDLERS = Handlers()
handler = HANDLERS


def slots_json(store: Store, prisoner: Any, minutes: int, now: float, limit: int) -> dict[str, Any]:
    est = int(prisoner["establishment_id"])
    hours = store.visiting_hours(est)
    found = free_slots(store, prisoner_id=prisoner["id"], minutes=minutes, now=now)
    left = allowance(store, prisoner_id=prisoner["id"], month_of=now, now=now)
    return {
        "timezone": hours.timezone,
        "minutes": minutes,
        "slots": [
            {
                "starts_at": s.starts_at,
                "ends_at": s.ends_at,
                "local_start": hours.local(s.starts_at).isoformat(timespec="minutes"),
                "laptop_id": s.laptop_id,
            }
            for s in found[:limit]
        ],
        "more": len(found) > limit,
        "allowance": {"limit": left.limit, "used": left.used, "pending": left.pending},
    }


def hours_json(store: Store, establishment_id: int) -> dict[str, Any]:
    hours = store.visiting_hours(establishment_id)
    return {
        "establishment_id": establishment_id,
        "timezone": hours.timezone,
        "booking_window_days": hours.booking_window_days,
        "notice_hours": hours.notice_hours,
        "allowed_call_minutes": list(store.policy(establishment_id).allowed_call_minutes),
        "sessions": [
            {"weekday": s.weekday, "starts": s.starts, "ends": s.ends, "rooms": s.rooms}
            for s in hours.sessions
        ],
        "blackout_dates": [{"date": b.day, "reason": b.reason} for b in hours.blackouts],
    }


@handler
async def family_slots(ctx: Ctx) -> Any:
    vid = ctx.visitor_id()
    q = ctx.args(vm.SlotsQuery)
    prisoner = ctx.store.prisoner(q.prisoner_id)
    if prisoner is None or not ctx.store.is_approved_contact(prisoner["id"], vid):
        raise ApiError(404, "prisoner_not_found", "no such prisoner among your contacts")
    return slots_json(ctx.store, prisoner, q.minutes, ctx.now, q.limit)


@handler
async def staff_slots(ctx: Ctx) -> Any:
    staff = ctx.staff()
    q = ctx.args(vm.SlotsQuery)
    prisoner = ctx.store.prisoner(q.prisoner_id)
    if prisoner is None or prisoner["establishment_id"] != staff.establishment_id:
        raise ApiError(404, "prisoner_not_found", "no such prisoner here")
    return slots_json(ctx.store, prisoner, q.minutes, ctx.now, q.limit)


@handler
async def staff_visiting_hours(ctx: Ctx) -> Any:
    staff = ctx.staff()
    return hours_json(ctx.store, staff.establishment_id)


@handler
async def staff_set_visiting_hours(ctx: Ctx) -> Any:
    staff = ctx.staff()
    b = ctx.args(vm.VisitingHoursIn)
    hours = VisitingHours(
        timezone=b.timezone,
        booking_window_days=b.booking_window_days,
        notice_hours=b.notice_hours,
        sessions=tuple(Session(s.weekday, s.starts, s.ends, s.rooms) for s in b.sessions),
        blackouts=tuple(Blackout(d.date, d.reason) for d in b.blackout_dates),
    )
    ctx.store.set_visiting_hours(staff.establishment_id, hours)
    out = hours_json(ctx.store, staff.establishment_id)
    ctx.audit(
        "visiting_hours_set",
        {
            k: out[k]
            for k in (
                "timezone",
                "booking_window_days",
                "notice_hours",
                "sessions",
                "blackout_dates",
            )
        },
        staff.establishment_id,
        f"staff:{staff.id}",
    )
    return out
