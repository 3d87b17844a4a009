"""Demo records so that ``make run`` always gives a call that can be joined right away.

``seed_demo`` creates "HMP Demo" (one laptop, one prisoner, two approved and verified
visitors, an admin account ``staff``) the first time, and on every start makes sure an
approved social call is running now (a fresh 30-minute one when the last has ended).

Only hashes of secrets are stored, so the demo laptop secret and the staff password cannot
be shown again: each start issues new ones (demo establishment only) and returns them for
the start-up banner, once.
"""

from __future__ import annotations

import secrets
from typing import Any

from protocol import tokens
from relay.auth import load_secret
from relay.config import Config
from relay.records.store import Store
from relay.records.store.visiting import VisitingHours, every_day

DEMO_NAME = "HMP Demo"
DEMO_PRISONER = "A0001DM"
DEMO_STAFF = "staff"
DEMO_MINUTES = 30
DEMO_HOURS = VisitingHours(sessions=every_day("08:00", "21:00"), notice_hours=1)
"""The demo's visiting hours: every day 08:00-21:00 local, an hour's notice (the seeded
call itself is made directly, so it is open whenever ``make run`` starts)."""


def seed_demo(store: Store, config: Config, now: float) -> dict[str, Any]:
    """Seed (or refresh) the demo; returns what the start-up banner prints.

    Refuses (returns ``{"seeded": False, ...}``) when the store holds real establishments
    but no demo one: never mix demo accounts into real records."""
    est = store.find_establishment(DEMO_NAME)
    created = est is None
    password = secrets.token_urlsafe(12)
    if est is None:
        if store.establishment_count() > 0:
            return {"seeded": False, "reason": "the store has records and no demo establishment"}
        est = store.create_establishment(DEMO_NAME, now, is_demo=1)
        store.set_visiting_hours(est, DEMO_HOURS)
        laptop_id, laptop_secret = store.add_laptop(est, "Demo laptop", "Visits room 1")
        prisoner_id = store.add_prisoner(est, DEMO_PRISONER, "Sam Demo")
        staff_id = store.add_staff(est, DEMO_STAFF, password, "admin")
        visitor_ids = [
            store.add_visitor("Alex Demo", "1980-04-01", True, now)[0],
            store.add_visitor("Jo Demo", "2001-09-15", True, now)[0],
        ]
        for vid in visitor_ids:
            store.approve_contact(prisoner_id, vid, staff_id, now)
    else:
        laptop_id = store.laptops(est)[0].id
        laptop_secret = store.rotate_laptop_secret(laptop_id)
        prisoner_id = store.prisoner_by_number(DEMO_PRISONER)["id"]
        staff = store.staff_by_username(DEMO_STAFF)
        assert staff is not None and staff.establishment_id == est
        store.set_staff_password(staff.id, password)
        visitor_ids = [
            c.visitor_id for c in store.contacts(est, prisoner_id) if c.status == "approved"
        ][:2]

    booking = _current_demo_booking(store, est, prisoner_id, laptop_id, now)
    if booking is None:
        bid = store.add_booking_unchecked(
            prisoner_id=prisoner_id,
            call_type="social",
            starts_at=now,
            ends_at=now + DEMO_MINUTES * 60,
            main_visitor_id=visitor_ids[0],
            visitor_ids=visitor_ids,
            laptop_id=laptop_id,
            status="approved",
            now=now,
        )
        booking = store.booking(bid)
    assert booking is not None

    secret = load_secret(config)
    base = config.base_url
    family_urls = []
    for vid in booking.visitor_ids:
        claims = tokens.JoinClaims(
            booking.id, f"visitor:{vid}", "family", booking.starts_at - config.token_early_s,
            booking.ends_at,
        )
        family_urls.append(f"{base}/join?token={tokens.issue(secret, claims)}")
    return {
        "seeded": True,
        "created": created,
        "establishment_id": est,
        "booking_id": booking.id,
        "starts_at": booking.starts_at,
        "ends_at": booking.ends_at,
        "family_url": family_urls[0],
        "family_urls": family_urls,
        "laptop_id": laptop_id,
        "laptop_secret": laptop_secret,
        "prison_command": (
            f"python -m protocol.prison --relay {base} --laptop-id {laptop_id}"
            f" --laptop-secret {laptop_secret} --booking {booking.id}"
        ),
        "console_url": f"{base}/console",
        "staff_username": DEMO_STAFF,
        "staff_password": password,
    }


def _current_demo_booking(store: Store, est: int, prisoner_id: int, laptop_id: int, now: float):
    """The demo's approved call if it is still on (at least a minute left); ended (or all
    but ended) ones are marked completed so they never block a new one."""
    current = None
    for b in store.list_bookings(est, status="approved"):
        if b.prisoner_id != prisoner_id:
            continue
        if b.ends_at <= now + 60:
            store.mark_call_outcome(b.id, "completed", "demo slot ended", now)
            continue
        if b.starts_at <= now and b.laptop_id == laptop_id:
            current = b
    return current


def format_banner(info: dict[str, Any]) -> str:
    if not info.get("seeded"):
        return f"demo not seeded: {info.get('reason', '')}"
    return "\n".join(
        [
            f"Demo call (booking {info['booking_id']}) is open now for {DEMO_MINUTES} minutes.",
            f"  family:  {info['family_url']}",
            f"  prison:  {info['prison_command']}",
            f"  staff:   {info['console_url']}  user {info['staff_username']}"
            f"  password {info['staff_password']}",
        ]
    )
