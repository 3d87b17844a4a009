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
import shlex
import sys
from pathlib import Path
from typing import Any

from protocol import tokens
from relay.auth import hash_password, load_secret
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
        staff_id = staff.id
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

    # the laptop page's one-time set-up code (as staff would get it from the console)
    enrolment = store.start_enrolment(laptop_id, staff_id, now, config.laptop_enrol_code_s)
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
        "prison_command": prison_command(config, laptop_id, laptop_secret, booking.id),
        "laptop_url": f"{base}/laptop?enrol={enrolment.code}",
        "laptop_code_minutes": round(config.laptop_enrol_code_s / 60),
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
            f"  laptop:  {info['laptop_url']}  (one-time set-up code, valid"
            f" {info['laptop_code_minutes']} minutes)",
            f"  prison:  {info['prison_command']}",
            f"  staff:   {info['console_url']}  user {info['staff_username']}"
            f"  password {info['staff_password']}",
        ]
    )


DEMO_FAMILY_EMAIL = "family@demo.invalid"


def seed_demo_family(store: Store, config: Config, info: dict[str, Any], now: float) -> dict[str, str]:
    """A signed-up, verified family account for the demo's first visitor (Alex Demo), with a
    new password each start, for the banner. Nothing when the demo was not seeded."""
    if not info.get("seeded"):
        return {}
    password = secrets.token_urlsafe(12)
    pw_hash = hash_password(password)
    acc, _ = store.account_by_email(DEMO_FAMILY_EMAIL)
    if acc is None:
        booking = store.booking(info["booking_id"])
        assert booking is not None
        store.add_verified_account(DEMO_FAMILY_EMAIL, pw_hash, booking.main_visitor_id, now)
    else:
        store.set_account_password(acc.id, pw_hash)
    return {"app_url": f"{config.base_url}/app", "family_email": DEMO_FAMILY_EMAIL,
            "family_password": password}


def format_family_banner(family: dict[str, str], outbox: str) -> str:
    lines = [f"  emails:  {outbox}"]
    if family:
        lines.insert(0, f"  app:     {family['app_url']}  email {family['family_email']}"
                        f"  password {family['family_password']}")
    return "\n".join(lines)


LOOPBACK = ("127.0.0.1", "::1")


def project_python() -> str:
    """The interpreter running the relay, relative when it is the project's own (.venv)."""
    exe = Path(sys.executable)
    root = Path(__file__).resolve().parents[1]
    if exe.is_absolute() and exe.is_relative_to(root):
        return str(exe.relative_to(root))
    return str(exe)


def prison_command(config: Config, laptop_id: int, laptop_secret: str, booking_id: int) -> str:
    """The command that joins the demo call from the Python client, as it must be typed: the
    project's Python, and ``--media-address`` for a loopback relay (aioice leaves loopback
    out of its candidates unless told)."""
    parts = [project_python(), "-m", "protocol.prison", "--relay", config.base_url,
             "--laptop-id", str(laptop_id), "--laptop-secret", laptop_secret,
             "--booking", str(booking_id)]
    for address in config.media_addresses:
        if address in LOOPBACK:
            parts += ["--media-address", address]
    return shlex.join(parts)
