"""A small, fixed world of records: two establishments, laptops, prisoners, visitors with
their approvals and staff. The booking tests, the product starter (bench/product.py) and
the fault scenarios all build on it, so it lives here, below tests/."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from relay.records.store import Store
from relay.records.store.engine import DatabaseOptions
from relay.records.store.visiting import VisitingHours, every_day

NOW = dt.datetime(2026, 12, 10, 8, 0, tzinfo=dt.UTC).timestamp()
OPEN_ALL_HOURS = VisitingHours(sessions=every_day(), notice_hours=0, booking_window_days=62)
"""The world's timetable: calls at any hour, no notice, two months ahead, so booking tests test
the rule they are about (tests/test_availability.py tests the hours themselves). Two months
ahead: far enough for the next-month allowance cases."""
HOUR = 3600.0
DAY = 86400.0
PASSWORD = "correct horse battery staple"


@dataclass
class World:
    store: Store
    est_a: int = 0
    est_b: int = 0
    laptops_a: list[tuple[int, str]] = field(default_factory=list)
    laptop_b: tuple[int, str] = (0, "")
    prisoner_a: int = 0
    prisoner_a2: int = 0
    prisoner_b: int = 0
    visitors: dict[str, tuple[int, str]] = field(default_factory=dict)
    officer_a: int = 0
    admin_a: int = 0
    officer_b: int = 0

    def vid(self, name: str) -> int:
        return self.visitors[name][0]

    def key(self, name: str) -> str:
        vid, secret = self.visitors[name]
        return f"{vid}.{secret}"


def make_world(path: Path | str, options: DatabaseOptions | None = None) -> World:
    """``path``: a SQLite file or a ``postgresql://`` URL (``options``: its bounds)."""
    s = Store.open(path, options)
    w = World(store=s)
    w.est_a = s.create_establishment("HMP Alpha", NOW)
    w.est_b = s.create_establishment("HMP Beta", NOW)
    for est in (w.est_a, w.est_b):
        s.set_visiting_hours(est, OPEN_ALL_HOURS)
    w.laptops_a = [s.add_laptop(w.est_a, "laptop 1", "room 1"), s.add_laptop(w.est_a, "laptop 2")]
    w.laptop_b = s.add_laptop(w.est_b, "laptop B")
    w.prisoner_a = s.add_prisoner(w.est_a, "A1234BC", "Alan Prisoner")
    w.prisoner_a2 = s.add_prisoner(w.est_a, "A5678DE", "Andy Prisoner")
    w.prisoner_b = s.add_prisoner(w.est_b, "B1234BC", "Bob Prisoner")
    w.admin_a = s.add_staff(w.est_a, "admin_a", PASSWORD, "admin")
    w.officer_a = s.add_staff(w.est_a, "officer_a", PASSWORD, "officer")
    w.officer_b = s.add_staff(w.est_b, "officer_b", PASSWORD, "officer")
    people = {
        "mum": ("1970-05-01", True, [w.prisoner_a, w.prisoner_a2]),
        "dad": ("1968-02-03", True, [w.prisoner_a]),
        "sis": ("1995-07-07", True, [w.prisoner_a]),
        "bro": ("1998-09-09", True, [w.prisoner_a]),
        "aunt": ("1960-01-01", True, [w.prisoner_a]),
        "kid": ("2016-03-03", True, [w.prisoner_a]),
        "unverified": ("1980-01-01", False, [w.prisoner_a]),
        "stranger": ("1980-01-01", True, []),
        "bfam": ("1975-01-01", True, [w.prisoner_b]),
    }
    for name, (dob, verified, prisoners) in people.items():
        w.visitors[name] = s.add_visitor(name.title(), dob, verified, NOW)
        for p in prisoners:
            staff = w.admin_a if p != w.prisoner_b else w.officer_b
            s.approve_contact(p, w.visitors[name][0], staff, NOW)
    return w
