"""The booking rules, straight on the store: visitors, ages, allowance, capacity, moves."""

from __future__ import annotations

import pytest

from tests.test_store_world import DAY, NOW, approved, book, code_of, make_world


@pytest.fixture
def w(db_target):
    world = make_world(db_target)
    yield world
    world.store.close()


def test_booking_rules(w):
    s = w.store
    t = NOW + DAY
    assert code_of(book, w, NOW - 60) == "slot_in_past"
    assert code_of(book, w, t, minutes=45) == "bad_call_length"
    assert code_of(book, w, t, others=("dad", "sis", "bro", "aunt")) == "too_many_visitors"
    assert book(w, t, others=("dad", "sis", "bro")).visitor_ids  # 4 in all is fine
    assert code_of(book, w, t + DAY, others=("stranger",)) == "visitor_not_approved"
    assert code_of(book, w, t + DAY, others=("unverified",)) == "visitor_not_verified"
    assert code_of(book, w, t + DAY, main="kid") == "main_visitor_under_age"
    assert book(w, t + DAY, others=("kid",)).status == "requested"  # a child may come along
    assert code_of(book, w, t + 10 * 60) == "prisoner_busy"  # overlaps the first request
    s.set_prisoner_eligible(w.prisoner_a, False)
    assert code_of(book, w, t + 3 * DAY) == "prisoner_not_eligible"


def test_allowance_month_and_failure_gives_back(w):
    s = w.store
    a = approved(w, NOW + DAY)  # 30
    b = approved(w, NOW + 2 * DAY)  # 60 used
    assert s.allowance_used(w.prisoner_a, NOW) == 60
    assert code_of(book, w, NOW + 3 * DAY) == "allowance_exceeded"
    # requests waiting for staff count too: no pile of requests that cannot all be approved
    s.cancel_booking(b.id, "test", NOW)
    c = book(w, NOW + 3 * DAY)
    assert code_of(book, w, NOW + 4 * DAY) == "allowance_exceeded"
    assert s.allowance(w.prisoner_a, NOW, NOW) == (30, 30)
    s.approve_booking(c.id, w.officer_a, NOW)
    # a technical failure gives the minutes back
    s.mark_call_outcome(a.id, "failed", "ice_failed")
    s.mark_call_outcome(a.id, "failed", "ice_failed")  # idempotent
    assert s.allowance_used(w.prisoner_a, NOW) == 30
    d = book(w, NOW + 4 * DAY)
    assert s.approve_booking(d.id, w.officer_a, NOW).status == "approved"
    # completed calls count; next month is a fresh allowance; legal calls don't count
    s.mark_call_outcome(c.id, "completed", "")
    assert s.allowance_used(w.prisoner_a, NOW) == 60
    assert book(w, NOW + 30 * DAY, minutes=60).status == "requested"  # January
    assert book(w, NOW + 5 * DAY, call_type="legal").status == "requested"


def test_capacity_counts_overlaps(w):
    s = w.store
    t = NOW + DAY
    approved(w, t)  # laptop 1
    approved(w, t + 15 * 60, prisoner=w.prisoner_a2)  # overlaps: laptop 2
    s.add_prisoner(w.est_a, "A0000ZZ", "Third")
    p3 = s.prisoner_by_number("A0000ZZ")["id"]
    s.approve_contact(p3, w.vid("dad"), w.admin_a, NOW)
    assert code_of(book, w, t + 20 * 60, main="dad", prisoner=p3) == "slot_full"
    # back to back is fine: laptop 1 is free again at t+30min
    b = book(w, t + 30 * 60, main="dad", prisoner=p3)
    assert s.approve_booking(b.id, w.officer_a, NOW).laptop_id == w.laptops_a[0][0]


def test_reschedule_rechecks(w):
    s = w.store
    b = approved(w, NOW + DAY)
    moved = s.reschedule_booking(b.id, NOW + 2 * DAY, 30, "visitor:1", NOW, keep_approval=False)
    assert moved.status == "requested" and moved.laptop_id is None
    assert code_of(s.reschedule_booking, b.id, NOW + 2 * DAY, 45, "x", NOW, False) == (
        "bad_call_length"
    )
    s.approve_booking(b.id, w.officer_a, NOW)
    approved(w, NOW + 3 * DAY, minutes=30)  # 60 of 60 used
    # a longer call no longer fits the allowance (its own minutes are not counted twice)
    assert code_of(s.reschedule_booking, b.id, NOW + 4 * DAY, 60, "x", NOW, True) == (
        "allowance_exceeded"
    )
    kept = s.reschedule_booking(b.id, NOW + 5 * DAY, 30, "staff:1", NOW, keep_approval=True)
    assert kept.status == "approved" and kept.laptop_id is not None


def test_main_visitor_age_on_the_slot_date(w):
    import datetime as dt

    s = w.store
    slot = dt.datetime(2027, 1, 15, 10, 0, tzinfo=dt.UTC).timestamp()
    teen, _ = s.add_visitor("Teen", "2009-01-15", True, NOW)  # 18 on the slot's day
    young, _ = s.add_visitor("Young", "2009-01-16", True, NOW)  # 18 the day after
    for v in (teen, young):
        s.approve_contact(w.prisoner_a, v, w.admin_a, NOW)
    ok = s.request_booking(
        prisoner_id=w.prisoner_a, call_type="social", starts_at=slot, minutes=30,
        main_visitor_id=teen, visitor_ids=[], requested_by="family", now=NOW, actor="t",
    )
    assert ok.main_visitor_id == teen
    assert code_of(
        s.request_booking, prisoner_id=w.prisoner_a, call_type="social", starts_at=slot + 3600,
        minutes=30, main_visitor_id=young, visitor_ids=[], requested_by="family", now=NOW,
        actor="t",
    ) == "main_visitor_under_age"
