"""Free slots: the times a prisoner's call of a given length could be booked now.

The same rules the store applies when a booking is made (relay/records/store/bookings.py),
computed for every slot at once from a handful of reads: visiting sessions (local time),
blackout dates, notice and booking window, a free laptop (and the session's rooms cap), the
prisoner's other requested or approved calls, and the monthly allowance in local months,
where requests still waiting for staff count as well as approved calls. Nothing is written.

Slots start at each session's start and then every ``min(allowed_call_minutes)`` minutes of
real time, so a clock change neither repeats nor drops one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from relay.records.store.values import StoreError
from relay.records.store.visiting import Window

if TYPE_CHECKING:
    from relay.records.store import Store


@dataclass(frozen=True)
class Slot:
    starts_at: float
    ends_at: float
    laptop_id: int | None


@dataclass(frozen=True)
class Allowance:
    """A prisoner's social-call minutes in one local month."""

    limit: int
    used: int
    """Approved or completed."""
    pending: int
    """Requested, waiting for staff."""

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used - self.pending)


def allowance(store: Store, *, prisoner_id: int, month_of: float, now: float) -> Allowance:
    prisoner = _prisoner(store, prisoner_id)
    used, pending = store.allowance(prisoner_id, month_of, now)
    limit = store.policy(prisoner["establishment_id"]).monthly_allowance_minutes
    return Allowance(limit=limit, used=used, pending=pending)


def local_start(store: Store, establishment_id: int, ts: float) -> str:
    """ISO 8601 local time with its UTC offset, as families read it."""
    return store.visiting_hours(establishment_id).local(ts).isoformat(timespec="minutes")


def free_slots(store: Store, *, prisoner_id: int, minutes: int, now: float) -> list[Slot]:
    """Every bookable slot of ``minutes`` for the prisoner, in time order.

    Raises StoreError ``prisoner_not_found`` or ``bad_call_length``; an ineligible prisoner
    has no slots."""
    prisoner = _prisoner(store, prisoner_id)
    est = int(prisoner["establishment_id"])
    policy = store.policy(est)
    if minutes not in policy.allowed_call_minutes:
        allowed = ", ".join(str(m) for m in policy.allowed_call_minutes)
        raise StoreError("bad_call_length", f"a call lasts one of: {allowed} minutes")
    if not prisoner["video_call_eligible"]:
        return []
    hours = store.visiting_hours(est)
    earliest = now + hours.notice_hours * 3600
    latest = now + hours.booking_window_days * 86400  # the last start allowed
    length = minutes * 60
    step = min(policy.allowed_call_minutes) * 60
    horizon = latest + length

    db = store.connection
    laptops = [lap.id for lap in store.laptops(est)]
    taken = [  # approved calls holding a laptop: (start, end, laptop)
        (r[0], r[1], r[2])
        for r in db.execute(
            "SELECT starts_at, ends_at, laptop_id FROM bookings WHERE establishment_id = ?"
            " AND status = 'approved' AND starts_at < ? AND ends_at > ?",
            (est, horizon, earliest),
        )
    ]
    busy = [  # the prisoner's own requested or approved calls
        (r[0], r[1])
        for r in db.execute(
            "SELECT starts_at, ends_at FROM bookings WHERE prisoner_id = ?"
            " AND status IN ('requested', 'approved') AND starts_at < ? AND ends_at > ?",
            (prisoner_id, horizon, earliest),
        )
    ]
    months: list[tuple[float, float, int]] = []  # local month (start, end, minutes left)

    def month_left(ts: float) -> int:
        for start, end, left in months:
            if start <= ts < end:
                return left
        start, end = hours.month_bounds(ts)
        used, pending = store.allowance(prisoner_id, ts, now)
        months.append((start, end, policy.monthly_allowance_minutes - used - pending))
        return months[-1][2]

    found: dict[float, Slot] = {}
    windows = list(hours.windows(earliest, horizon))
    for i, w in enumerate(windows):
        t = w.starts_at
        while t < w.ends_at:
            span = _span(windows, i, t, t + length)
            if now < t and earliest <= t <= latest and t not in found and span is not None:
                slot = _slot(t, t + length, _rooms(span), laptops, taken, busy)
                if slot is not None and month_left(t) >= minutes:
                    found[t] = slot
            t += step
    return [found[t] for t in sorted(found)]


def _span(windows: list[Window], i: int, starts_at: float, ends_at: float) -> list[Window] | None:
    """The windows from ``i`` on that together cover the call (back-to-back sessions join,
    as on a 24-hour timetable), or None if part of it falls outside them."""
    reach, used = starts_at, []
    for w in windows[i:]:
        if w.starts_at > reach:
            return None
        used.append(w)
        reach = max(reach, w.ends_at)
        if reach >= ends_at:
            return used
    return None


def _rooms(span: list[Window]) -> int:
    """The tightest rooms cap of the sessions the call spans (0: every laptop)."""
    capped = [w.rooms for w in span if w.rooms > 0]
    return min(capped) if capped else 0


def _slot(
    starts_at: float,
    ends_at: float,
    rooms: int,
    laptops: list[int],
    taken: list[tuple[float, float, int | None]],
    busy: list[tuple[float, float]],
) -> Slot | None:
    if any(s < ends_at and e > starts_at for s, e in busy):
        return None
    overlapping = [lap for s, e, lap in taken if s < ends_at and e > starts_at]
    if rooms > 0 and len(overlapping) >= rooms:
        return None
    free = [lap for lap in laptops if lap not in overlapping]
    if not free:
        return None
    return Slot(starts_at=starts_at, ends_at=ends_at, laptop_id=free[0])


def _prisoner(store: Store, prisoner_id: int):
    prisoner = store.prisoner(prisoner_id)
    if prisoner is None:
        raise StoreError("prisoner_not_found", "no such prisoner")
    return prisoner
