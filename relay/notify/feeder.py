"""What to tell whom: booking events and due reminders become outbox messages.

The store writes a ``booking_events`` row for every change of a booking, whichever path
made it (family, staff, kiosk, lifecycle), so reading those rows notifies on all of them
without touching any handler. A cursor in the store remembers how far the feeder read;
``dedupe`` keys make a re-read after a crash harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from relay.config import Config
from relay.records.store import Account, Booking, Store
from relay.records.store.visiting import zone

log = logging.getLogger("relay.notify")

EVENT_TEMPLATES = {
    "approved": "booking_approved",
    "declined": "booking_declined",
    "cancelled": "booking_cancelled",
    "rescheduled": "booking_rescheduled",
}
EVENTS_PER_PASS = 200


def format_when(ts: float, timezone: str = "UTC") -> str:
    """Language-neutral and unambiguous: the date and time in the establishment's zone
    (the clock the family sees on the slot they chose), with the zone named."""
    local = dt.datetime.fromtimestamp(ts, zone(timezone))
    return f"{local:%Y-%m-%d %H:%M} ({timezone})"


def queue(
    store: Store,
    config: Config,
    account: Account,
    template: str,
    dedupe: str,
    now: float,
    **params: Any,
) -> bool:
    """Queue one email to an account holder, in their language."""
    visitor = store.visitor(account.visitor_id)
    params = {"name": visitor.name if visitor else "", "link": f"{config.base_url}/app", **params}
    return store.enqueue_message(
        f"{dedupe}:{account.id}", account.email, account.language, template, params, now
    )


def _accounts(store: Store, booking: Booking) -> list[Account]:
    """Every account holder with someone on the booking (once each, verified emails only)."""
    found: dict[int, Account] = {}
    for vid in booking.visitor_ids:
        acc = store.account_for_visitor(vid)
        if acc is not None and acc.email_verified:
            found.setdefault(acc.id, acc)
    return list(found.values())


def _booking_params(store: Store, booking: Booking) -> dict[str, Any]:
    prisoner = store.prisoner(booking.prisoner_id)
    return {
        "prisoner": prisoner["name"] if prisoner is not None else booking.prisoner_number,
        "establishment": store.establishment_name(booking.establishment_id),
        "when": format_when(
            booking.starts_at, store.visiting_hours(booking.establishment_id).timezone
        ),
        "minutes": booking.minutes,
    }


def feed_booking_events(store: Store, config: Config, now: float) -> int:
    """Queue messages for booking events written since the last pass; returns how many."""
    queued = 0
    cursor = store.notify_cursor()
    events = store.booking_events_after(cursor, EVENTS_PER_PASS)
    for ev in events:
        template = EVENT_TEMPLATES.get(ev["event"])
        booking = store.booking(ev["booking_id"]) if template else None
        if template and booking is not None and booking.call_type == "social":
            params = _booking_params(store, booking)
            reason = ev["detail"] if ev["event"] in ("declined", "cancelled") else ""
            params["reason"] = reason or ""
            for acc in _accounts(store, booking):
                queued += queue(store, config, acc, template, f"event:{ev['id']}", now, **params)
        cursor = int(ev["id"])
    if events:
        store.set_notify_cursor(cursor)
    return queued


def queue_reminders(store: Store, config: Config, now: float) -> int:
    """A reminder for each approved call starting within ``reminder_before_s``."""
    queued = 0
    for bid in store.bookings_starting(now, now + config.reminder_before_s):
        booking = store.booking(bid)
        if booking is None or booking.call_type != "social":
            continue
        params = _booking_params(store, booking)
        for acc in _accounts(store, booking):
            key = f"reminder:{bid}:{booking.starts_at:.0f}"
            queued += queue(store, config, acc, "booking_reminder", key, now, **params)
    return queued
