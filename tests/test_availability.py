"""Free slots and the visiting-hours rules at booking time, against a table of cases:
sessions, blackout, notice and window, capacity (laptops and a rooms cap), the prisoner's own
bookings, the allowance with pending requests, local months, and both clock changes of
Europe/London. Real SQLite store; times are written in local time and checked as instants."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from relay.records.availability import allowance, free_slots, local_start
from relay.records.store import Store, StoreError
from relay.records.store.visiting import Blackout, Session, VisitingHours, every_day

LONDON = ZoneInfo("Europe/London")
MON, TUE, SUN = 0, 1, 6


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, fold: int = 0) -> float:
    """A Europe/London wall-clock time as a UTC instant."""
    return dt.datetime(y, mo, d, h, mi, tzinfo=LONDON, fold=fold).timestamp()


def local(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, LONDON).strftime("%m-%d %H:%M%z")


class Prison:
    """One establishment, two laptops, prisoners P and Q, approved adult visitor V."""

    def __init__(self, path) -> None:
        s = self.store = Store.open(path)
        self.est = s.create_establishment("HMP Table", at(2027, 1, 1))
        self.laptops = [s.add_laptop(self.est, f"laptop {i}")[0] for i in (1, 2)]
        self.p = s.add_prisoner(self.est, "T0001TT", "Pat Table")
        self.q = s.add_prisoner(self.est, "T0002TT", "Quin Table")
        self.v = s.add_visitor("Val Visitor", "1980-01-01", True, at(2027, 1, 1))[0]
        self.staff = s.add_staff(self.est, "admin_t", "pw-table-0123456789", "admin")
        for p in (self.p, self.q):
            s.approve_contact(p, self.v, self.staff, at(2027, 1, 1))

    def hours(self, **kw) -> None:
        base = VisitingHours(
            sessions=(Session(MON, "09:00", "11:00"),), notice_hours=0, booking_window_days=7
        )
        self.store.set_visiting_hours(self.est, replace(base, **kw))

    def book(self, starts: float, now: float, minutes: int = 30, prisoner: int | None = None):
        return self.store.request_booking(
            prisoner_id=prisoner or self.p,
            call_type="social",
            starts_at=starts,
            minutes=minutes,
            main_visitor_id=self.v,
            visitor_ids=[],
            requested_by="family",
            now=now,
            actor="test",
        )

    def approve(self, starts: float, now: float, prisoner: int | None = None, **kw):
        b = self.book(starts, now, prisoner=prisoner, **kw)
        return self.store.approve_booking(b.id, self.staff, now)

    def slots(self, now: float, minutes: int = 30, prisoner: int | None = None) -> list[str]:
        found = free_slots(self.store, prisoner_id=prisoner or self.p, minutes=minutes, now=now)
        return [local(s.starts_at) for s in found]


@pytest.fixture
def prison(db_target):
    world = Prison(db_target)
    yield world
    world.store.close()


SUNDAY_NOON = at(2027, 1, 10, 12)  # Sunday 10 January 2027 (GMT)
MON_11 = ["01-11 09:00+0000", "01-11 09:30+0000", "01-11 10:00+0000", "01-11 10:30+0000"]
MON_18 = [s.replace("01-11", "01-18") for s in MON_11]

SESSION_CASES = [
    # (name, hours, minutes, now, expected local slot starts)
    ("one session", {}, 30, SUNDAY_NOON, MON_11),
    ("60-minute calls fit in the session", {}, 60, SUNDAY_NOON, MON_11[:3]),
    ("window reaches the next week", {"booking_window_days": 8}, 30, SUNDAY_NOON, MON_11 + MON_18),
    ("window ends before the session", {"booking_window_days": 0 + 1}, 30, at(2027, 1, 9, 12), []),
    ("notice", {"notice_hours": 2}, 30, at(2027, 1, 11, 8), MON_11[2:]),
    ("notice longer than the session", {"notice_hours": 24}, 30, SUNDAY_NOON, []),
    ("started slots are gone", {"booking_window_days": 1}, 30, at(2027, 1, 11, 9, 10), MON_11[1:]),
    ("blackout", {"blackouts": (Blackout("2027-01-11", "staff training"),)}, 30, SUNDAY_NOON, []),
    ("blackout of another day", {"blackouts": (Blackout("2027-01-12"),)}, 30, SUNDAY_NOON, MON_11),
    (
        "two sessions a day",
        {"sessions": (Session(MON, "09:00", "10:00"), Session(MON, "14:00", "15:00"))},
        30,
        SUNDAY_NOON,
        ["01-11 09:00+0000", "01-11 09:30+0000", "01-11 14:00+0000", "01-11 14:30+0000"],
    ),
    ("no sessions, no slots", {"sessions": ()}, 30, SUNDAY_NOON, []),
    (
        "a slot starting now is not offered",
        {"booking_window_days": 1},
        30,
        at(2027, 1, 11, 9),
        MON_11[1:],
    ),
]


@pytest.mark.parametrize(
    ("hours", "minutes", "now", "expected"),
    [c[1:] for c in SESSION_CASES],
    ids=[c[0] for c in SESSION_CASES],
)
def test_sessions_blackout_notice_window(prison, hours, minutes, now, expected):
    prison.hours(**hours)
    assert prison.slots(now, minutes) == expected


def test_capacity_laptops_and_rooms(prison):
    prison.hours()
    nine = at(2027, 1, 11, 9)
    first = prison.approve(nine, SUNDAY_NOON, prisoner=prison.q)
    found = free_slots(prison.store, prisoner_id=prison.p, minutes=30, now=SUNDAY_NOON)
    assert [local(s.starts_at) for s in found] == MON_11  # the second laptop is free at 09:00
    assert found[0].laptop_id == prison.laptops[1] and found[1].laptop_id == prison.laptops[0]
    prison.store.set_laptop_active(prison.laptops[1], False)  # one laptop left
    assert prison.slots(SUNDAY_NOON) == MON_11[1:]
    prison.store.set_laptop_active(prison.laptops[1], True)
    prison.hours(sessions=(Session(MON, "09:00", "11:00", rooms=1),))  # one room staffed
    assert prison.slots(SUNDAY_NOON) == MON_11[1:]
    with pytest.raises(StoreError) as refused:
        prison.book(nine, SUNDAY_NOON)
    assert refused.value.code == "slot_full"
    prison.store.cancel_booking(first.id, "test", SUNDAY_NOON)
    assert prison.slots(SUNDAY_NOON) == MON_11


def test_the_prisoners_own_bookings_block_overlapping_slots(prison):
    prison.hours()
    prison.book(at(2027, 1, 11, 10), SUNDAY_NOON)  # requested, not yet approved
    assert prison.slots(SUNDAY_NOON, prisoner=prison.q) == MON_11  # others are not blocked
    with pytest.raises(StoreError):  # the allowance (60) now has 30 left: 60-min refused
        prison.book(at(2027, 1, 11, 9), SUNDAY_NOON, minutes=60)
    assert prison.slots(SUNDAY_NOON) == ["01-11 09:00+0000", "01-11 09:30+0000", "01-11 10:30+0000"]


def test_allowance_counts_pending_requests_per_local_month(prison):
    # a Monday session every week; the window spans January and February
    prison.hours(booking_window_days=30)
    now = at(2027, 1, 20, 12)
    jan = [f"01-25 {t}+0000" for t in ("09:00", "09:30", "10:00", "10:30")]
    feb = [
        f"02-{d} {t}+0000" for d in ("01", "08", "15") for t in ("09:00", "09:30", "10:00", "10:30")
    ]
    assert prison.slots(now) == jan + feb
    prison.approve(at(2027, 1, 25, 9), now)  # 30 used
    prison.book(at(2027, 1, 25, 10, 30), now)  # 30 requested: January's 60 are spoken for
    a = allowance(prison.store, prisoner_id=prison.p, month_of=now, now=now)
    assert (a.limit, a.used, a.pending, a.left) == (60, 30, 30, 0)
    assert prison.slots(now) == feb
    with pytest.raises(StoreError) as refused:
        prison.book(at(2027, 1, 25, 10), now, prisoner=prison.p)
    assert refused.value.code in ("allowance_exceeded", "prisoner_busy")
    # 60-minute slots: February is a fresh month
    assert prison.slots(now, 60)[0] == "02-01 09:00+0000"


def test_allowance_refusal_says_used_pending_and_limit(prison):
    prison.hours(sessions=every_day("09:00", "17:00"), booking_window_days=30)
    now = at(2027, 1, 4, 8)
    prison.approve(at(2027, 1, 5, 9), now)
    prison.book(at(2027, 1, 6, 9), now)
    with pytest.raises(StoreError) as refused:
        prison.book(at(2027, 1, 7, 9), now)
    assert refused.value.code == "allowance_exceeded"
    assert "30 of 60 minutes are used and 30 are requested" in refused.value.message


def test_a_request_whose_slot_passed_unapproved_stops_holding_minutes(prison):
    prison.hours(sessions=every_day("09:00", "17:00"), booking_window_days=30)
    now = at(2027, 1, 4, 8)
    prison.book(at(2027, 1, 5, 9), now, minutes=60)
    assert allowance(prison.store, prisoner_id=prison.p, month_of=now, now=now).pending == 60
    later = at(2027, 1, 6, 8)
    assert allowance(prison.store, prisoner_id=prison.p, month_of=later, now=later).pending == 0
    assert prison.slots(later)[0] == "01-06 09:00+0000"


def test_allowance_month_is_local(prison):
    # 00:30 BST on 1 August is 23:30 UTC on 31 July: it counts in August, not July
    prison.hours(sessions=every_day(), booking_window_days=30)
    now = at(2027, 7, 20, 12)
    prison.approve(at(2027, 8, 1, 0, 30), now, minutes=60)
    assert prison.store.allowance_used(prison.p, at(2027, 7, 31, 12)) == 0
    assert prison.store.allowance_used(prison.p, at(2027, 8, 1, 12)) == 60
    assert dt.datetime.fromtimestamp(at(2027, 8, 1, 0, 30), dt.UTC).month == 7


def test_spring_forward_week(prison):
    """Europe/London, Sunday 28 March 2027: 01:00 GMT becomes 02:00 BST."""
    prison.hours(
        sessions=(*every_day("09:00", "10:00"), Session(SUN, "00:00", "04:00")),
        booking_window_days=8,
    )
    found = free_slots(prison.store, prisoner_id=prison.p, minutes=30, now=at(2027, 3, 24, 12))
    starts = [s.starts_at for s in found]
    assert len(starts) == len(set(starts))
    by_day: dict[str, list[str]] = {}
    for ts in starts:
        text = local(ts)
        by_day.setdefault(text[:5], []).append(text[6:])
    for day in ("03-25", "03-26", "03-27", "03-29", "03-30", "03-31", "04-01"):
        offset = "+0000" if day < "03-28" else "+0100"
        assert by_day[day] == [f"09:00{offset}", f"09:30{offset}"], day
    # the night session is three real hours long: six slots, none in the missing hour
    assert by_day["03-28"] == [
        "00:00+0000",
        "00:30+0000",
        "02:00+0100",
        "02:30+0100",
        "03:00+0100",
        "03:30+0100",
        "09:00+0100",
        "09:30+0100",
    ]
    assert at(2027, 3, 29, 9) - at(2027, 3, 27, 9) == 2 * 86400 - 3600
    sunday = [ts for ts in starts if local(ts).startswith("03-28")]
    assert all(b - a == 1800 for a, b in zip(sunday[:6], sunday[1:6], strict=False))


def test_fall_back_week(prison):
    """Europe/London, Sunday 31 October 2027: 02:00 BST becomes 01:00 GMT (01:xx twice)."""
    prison.hours(
        sessions=(*every_day("09:00", "10:00"), Session(SUN, "00:00", "04:00")),
        booking_window_days=8,
    )
    found = free_slots(prison.store, prisoner_id=prison.p, minutes=30, now=at(2027, 10, 27, 12))
    starts = [s.starts_at for s in found]
    assert len(starts) == len(set(starts))
    night = [local(ts)[6:] for ts in starts if local(ts).startswith("10-31")][:10]
    assert night == [
        "00:00+0100",
        "00:30+0100",
        "01:00+0100",
        "01:30+0100",
        "01:00+0000",
        "01:30+0000",
        "02:00+0000",
        "02:30+0000",
        "03:00+0000",
        "03:30+0000",
    ]
    monday = [local(ts) for ts in starts if local(ts).startswith("11-01")]
    assert monday == ["11-01 09:00+0000", "11-01 09:30+0000"]
    assert local_start(prison.store, prison.est, at(2027, 10, 31, 1, 0, fold=1)) == (
        "2027-10-31T01:00+00:00"
    )
    # every slot offered can be booked at that instant (the booking check agrees)
    now = at(2027, 10, 27, 12)
    b = prison.book(at(2027, 10, 31, 1, 30, fold=1), now)
    assert b.starts_at == at(2027, 10, 31, 1, 30, fold=1)


BOOKING_CASES = [
    # (name, hours, starts, now, minutes, code)
    (
        "03:00 is outside visiting hours",
        {},
        at(2027, 1, 11, 3),
        SUNDAY_NOON,
        30,
        "outside_visiting_hours",
    ),
    (
        "running past the session's end",
        {},
        at(2027, 1, 11, 10, 30),
        SUNDAY_NOON,
        60,
        "outside_visiting_hours",
    ),
    ("a day with no session", {}, at(2027, 1, 12, 9), SUNDAY_NOON, 30, "outside_visiting_hours"),
    (
        "blackout",
        {"blackouts": (Blackout("2027-01-11", "inspection"),)},
        at(2027, 1, 11, 9),
        SUNDAY_NOON,
        30,
        "blackout_date",
    ),
    ("notice", {"notice_hours": 24}, at(2027, 1, 11, 9), SUNDAY_NOON, 30, "too_little_notice"),
    (
        "window",
        {"booking_window_days": 7},
        at(2027, 1, 18, 9),
        at(2027, 1, 10, 8),
        30,
        "beyond_booking_window",
    ),
]


@pytest.mark.parametrize(
    ("hours", "starts", "now", "minutes", "code"),
    [c[1:] for c in BOOKING_CASES],
    ids=[c[0] for c in BOOKING_CASES],
)
def test_booking_time_rules(prison, hours, starts, now, minutes, code):
    prison.hours(**hours)
    with pytest.raises(StoreError) as refused:
        prison.book(starts, now, minutes=minutes)
    assert refused.value.code == code
    assert refused.value.message


def test_outside_hours_message_is_local_and_human(prison):
    prison.hours()
    with pytest.raises(StoreError) as refused:
        prison.book(at(2027, 1, 11, 3), SUNDAY_NOON)
    assert refused.value.message == (
        "Monday 11 January 03:00 (Europe/London) is outside visiting hours"
    )


def test_every_offered_slot_can_be_requested(prison):
    prison.hours(
        sessions=every_day("09:00", "12:00", rooms=1), booking_window_days=3, notice_hours=1
    )
    now = at(2027, 1, 10, 8, 45)
    offered = free_slots(prison.store, prisoner_id=prison.q, minutes=60, now=now)
    assert offered
    for slot in offered[:: max(1, len(offered) // 4)]:
        b = prison.book(slot.starts_at, now, minutes=60, prisoner=prison.q)
        prison.store.cancel_booking(b.id, "test", now)


def test_approval_does_not_recheck_notice(prison):
    prison.hours(notice_hours=24)
    b = prison.book(at(2027, 1, 11, 9), at(2027, 1, 9, 12))
    approved = prison.store.approve_booking(b.id, prison.staff, at(2027, 1, 11, 8))
    assert approved.status == "approved"


def test_hours_are_validated(prison):
    bad = [
        {"timezone": "Mars/Olympus"},
        {"timezone": "Europe"},
        {"timezone": "../../etc/passwd"},
        {"timezone": "posixrules"},
        {"sessions": (Session(MON, "11:00", "09:00"),)},
        {"sessions": (Session(MON, "09:00", "11:00"), Session(MON, "10:00", "12:00"))},
        {"sessions": (Session(MON, "9:00", "11:00"),)},
        {"sessions": (Session(7, "09:00", "11:00"),)},
        {"booking_window_days": 0},
        {"blackouts": (Blackout("2027-02-30"),)},
    ]
    for kw in bad:
        with pytest.raises(StoreError) as refused:
            prison.hours(**kw)
        assert refused.value.code in ("bad_visiting_hours", "bad_timezone"), kw
    prison.hours(timezone="Europe/Dublin", sessions=every_day("08:00", "24:00"))
    assert prison.store.visiting_hours(prison.est).timezone == "Europe/Dublin"
    assert len(prison.store.visiting_hours(prison.est).sessions) == 7


def test_bad_length_and_unknown_prisoner(prison):
    prison.hours()
    with pytest.raises(StoreError) as refused:
        free_slots(prison.store, prisoner_id=prison.p, minutes=45, now=SUNDAY_NOON)
    assert refused.value.code == "bad_call_length"
    with pytest.raises(StoreError) as refused:
        free_slots(prison.store, prisoner_id=999, minutes=30, now=SUNDAY_NOON)
    assert refused.value.code == "prisoner_not_found"
    prison.store.set_prisoner_eligible(prison.p, False)
    assert prison.slots(SUNDAY_NOON) == []


def test_a_new_establishment_has_no_hours_until_set(db_target):
    s = Store.open(db_target)
    est = s.create_establishment("HMP New", SUNDAY_NOON)
    hours = s.visiting_hours(est)
    assert hours.sessions == () and hours.timezone == "Europe/London"
    assert (hours.booking_window_days, hours.notice_hours) == (28, 24)
    s.close()
