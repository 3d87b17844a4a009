"""Visiting hours: when an establishment runs calls, in its own local time.

Sessions are weekly, written in local wall-clock time ("09:00"-"11:30", "24:00" = the end of
the day), so a 09:00 session stays at 09:00 across a clock change; every instant the rest of
the relay sees is still UTC epoch seconds. Local times are turned into instants with
``zoneinfo`` for each local date: on the spring-forward day a time inside the gap moves
forward (01:30 -> 02:30 BST), on the fall-back day an ambiguous time is its first
occurrence; slots are then stepped in real (UTC) time, so a clock change never duplicates
or drops a slot.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from relay.records.store.base import RecordsBase
from relay.records.store.values import StoreError

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


def minutes_of(hhmm: str) -> int:
    """Minutes after local midnight of "HH:MM" ("24:00" = 1440)."""
    if not _HHMM.match(hhmm):
        raise StoreError("bad_visiting_hours", f"{hhmm!r} is not a time HH:MM")
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise StoreError("bad_timezone", f"{name!r} is not a known time zone") from None


@functools.cache
def known_zones() -> frozenset[str]:
    """The IANA names this machine's time-zone database holds (read once)."""
    return frozenset(available_timezones())


@dataclass(frozen=True)
class Session:
    weekday: int
    """0 = Monday ... 6 = Sunday (``date.weekday()``)."""
    starts: str
    ends: str
    rooms: int = 0
    """How many calls may run at once; 0 = one per active laptop."""


@dataclass(frozen=True)
class Blackout:
    day: str
    """A local date, YYYY-MM-DD: no calls at all that day."""
    reason: str = ""


@dataclass(frozen=True)
class Window:
    """One session on one local date, as UTC instants."""

    starts_at: float
    ends_at: float
    rooms: int


@dataclass(frozen=True)
class VisitingHours:
    timezone: str = "Europe/London"
    booking_window_days: int = 28
    """Bookings open this many days ahead."""
    notice_hours: int = 24
    """A slot must start at least this long after the booking is made."""
    sessions: tuple[Session, ...] = ()
    blackouts: tuple[Blackout, ...] = field(default_factory=tuple)

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    def local(self, ts: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(ts, self.tz)

    def instant(self, day: dt.date, minute: int) -> float:
        """The UTC instant of local ``day`` at ``minute`` after midnight (1440 = next day)."""
        day = day + dt.timedelta(days=minute // 1440)
        minute %= 1440
        naive = dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60)
        return naive.replace(tzinfo=self.tz).timestamp()

    def month_bounds(self, ts: float) -> tuple[float, float]:
        """The local calendar month holding ``ts``, as UTC instants (the allowance month)."""
        d = self.local(ts).date().replace(day=1)
        nxt = dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)
        return self.instant(d, 0), self.instant(nxt, 0)

    def windows(self, start: float, end: float) -> Iterator[Window]:
        """Every session window overlapping [start, end), in time order, blackouts left out."""
        closed = {b.day for b in self.blackouts}
        day = self.local(start).date() - dt.timedelta(days=1)
        last = self.local(end).date()
        found: list[Window] = []
        while day <= last:
            if day.isoformat() not in closed:
                for s in self.sessions:
                    if s.weekday != day.weekday():
                        continue
                    w = Window(
                        self.instant(day, minutes_of(s.starts)),
                        self.instant(day, minutes_of(s.ends)),
                        s.rooms,
                    )
                    if w.starts_at < end and w.ends_at > start and w.ends_at > w.starts_at:
                        found.append(w)
            day += dt.timedelta(days=1)
        yield from sorted(found, key=lambda w: (w.starts_at, w.ends_at))

    def covering(self, starts_at: float, ends_at: float) -> list[Window] | None:
        """The windows that together cover the whole call (back-to-back sessions join, so
        a call may cross midnight of a 24-hour timetable), or None if any part is outside."""
        used: list[Window] = []
        reach = starts_at
        for w in self.windows(starts_at, ends_at):
            if w.starts_at > reach:
                break
            used.append(w)
            reach = max(reach, w.ends_at)
            if reach >= ends_at:
                return used
        return None

    def blackout_on(self, ts: float) -> Blackout | None:
        day = self.local(ts).date().isoformat()
        return next((b for b in self.blackouts if b.day == day), None)


def every_day(starts: str = "00:00", ends: str = "24:00", rooms: int = 0) -> tuple[Session, ...]:
    """The same session on all seven days (the demo and the test world)."""
    return tuple(Session(d, starts, ends, rooms) for d in range(7))


def validate(hours: VisitingHours) -> None:
    """Refuse a timetable that cannot be right (StoreError ``bad_visiting_hours``)."""
    if hours.timezone not in known_zones():
        raise StoreError("bad_timezone", f"{hours.timezone!r} is not a known time zone")
    hours.tz  # noqa: B018 (raises bad_timezone if the database cannot load it)
    if not 1 <= hours.booking_window_days <= 366:
        raise StoreError("bad_visiting_hours", "bookings open between 1 and 366 days ahead")
    if not 0 <= hours.notice_hours <= 24 * 14:
        raise StoreError("bad_visiting_hours", "notice is between 0 and 336 hours")
    by_day: dict[int, list[tuple[int, int]]] = {}
    for s in hours.sessions:
        if not 0 <= s.weekday <= 6:
            raise StoreError("bad_visiting_hours", "weekday is 0 (Monday) to 6 (Sunday)")
        a, b = minutes_of(s.starts), minutes_of(s.ends)
        if b <= a:
            raise StoreError(
                "bad_visiting_hours",
                f"{WEEKDAYS[s.weekday]} {s.starts}-{s.ends} ends before it starts",
            )
        if s.rooms < 0:
            raise StoreError("bad_visiting_hours", "rooms cannot be negative")
        by_day.setdefault(s.weekday, []).append((a, b))
    for day, spans in by_day.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            if start < end:
                raise StoreError("bad_visiting_hours", f"sessions overlap on {WEEKDAYS[day]}")
    for b in hours.blackouts:
        try:
            dt.date.fromisoformat(b.day)
        except ValueError:
            raise StoreError("bad_visiting_hours", f"{b.day!r} is not a date") from None


class VisitingRecords(RecordsBase):
    def visiting_hours(self, establishment_id: int) -> VisitingHours:
        e = self._db.execute(
            "SELECT timezone, booking_window_days, notice_hours FROM establishments WHERE id = ?",
            (establishment_id,),
        ).fetchone()
        if e is None:
            raise StoreError("establishment_not_found", "no such establishment")
        sessions = tuple(
            Session(r["weekday"], r["starts"], r["ends"], r["rooms"])
            for r in self._db.execute(
                "SELECT * FROM visiting_sessions WHERE establishment_id = ?"
                " ORDER BY weekday, starts",
                (establishment_id,),
            )
        )
        blackouts = tuple(
            Blackout(r["day"], r["reason"])
            for r in self._db.execute(
                "SELECT * FROM blackout_dates WHERE establishment_id = ? ORDER BY day",
                (establishment_id,),
            )
        )
        return VisitingHours(
            timezone=e["timezone"],
            booking_window_days=e["booking_window_days"],
            notice_hours=e["notice_hours"],
            sessions=sessions,
            blackouts=blackouts,
        )

    def set_visiting_hours(self, establishment_id: int, hours: VisitingHours) -> VisitingHours:
        """Replace the establishment's timetable as a whole (existing bookings stay: staff
        see them and decide; new requests, approvals and moves follow the new hours)."""
        validate(hours)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE establishments SET timezone = ?, booking_window_days = ?,"
                " notice_hours = ? WHERE id = ?",
                (hours.timezone, hours.booking_window_days, hours.notice_hours, establishment_id),
            )
            if cur.rowcount == 0:
                raise StoreError("establishment_not_found", "no such establishment")
            db.execute(
                "DELETE FROM visiting_sessions WHERE establishment_id = ?", (establishment_id,)
            )
            db.execute("DELETE FROM blackout_dates WHERE establishment_id = ?", (establishment_id,))
            db.executemany(
                "INSERT INTO visiting_sessions (establishment_id, weekday, starts, ends, rooms)"
                " VALUES (?, ?, ?, ?, ?)",
                [(establishment_id, s.weekday, s.starts, s.ends, s.rooms) for s in hours.sessions],
            )
            db.executemany(
                "INSERT INTO blackout_dates (establishment_id, day, reason) VALUES (?, ?, ?)",
                [(establishment_id, b.day, b.reason) for b in _unique_days(hours.blackouts)],
            )
        return self.visiting_hours(establishment_id)


def _unique_days(blackouts: Sequence[Blackout]) -> list[Blackout]:
    return list({b.day: b for b in blackouts}.values())
