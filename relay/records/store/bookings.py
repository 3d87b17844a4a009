"""Bookings: requests, approval, cancel, reschedule, outcome, and the rules they obey."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from relay.records.store.base import RecordsBase
from relay.records.store.engine import Row
from relay.records.store.values import (
    CALL_TYPES,
    Booking,
    EstablishmentPolicy,
    StoreError,
    _actor,
    age_on,
)

log = logging.getLogger("relay.records.store")


class BookingRecords(RecordsBase):
    def booking(self, booking_id: int) -> Booking | None:
        r = self._db.execute(
            "SELECT b.*, p.number AS prisoner_number FROM bookings b"
            " JOIN prisoners p ON p.id = b.prisoner_id WHERE b.id = ?",
            (booking_id,),
        ).fetchone()
        return None if r is None else self._booking(r)

    def _booking(self, r: Row) -> Booking:
        vids = tuple(
            int(v[0])
            for v in self._db.execute(
                "SELECT visitor_id FROM booking_visitors WHERE booking_id = ? ORDER BY visitor_id",
                (r["id"],),
            )
        )
        return Booking(
            id=r["id"],
            establishment_id=r["establishment_id"],
            prisoner_id=r["prisoner_id"],
            prisoner_number=r["prisoner_number"],
            call_type=r["call_type"],
            starts_at=r["starts_at"],
            ends_at=r["ends_at"],
            status=r["status"],
            requested_by=r["requested_by"],
            main_visitor_id=r["main_visitor_id"],
            visitor_ids=vids,
            laptop_id=r["laptop_id"],
            reason=r["reason"],
        )

    def list_bookings(
        self,
        establishment_id: int,
        status: str | None = None,
        starts_from: float | None = None,
        starts_before: float | None = None,
        limit: int = 200,
    ) -> list[Booking]:
        sql = (
            "SELECT b.*, p.number AS prisoner_number FROM bookings b"
            " JOIN prisoners p ON p.id = b.prisoner_id WHERE b.establishment_id = ?"
        )
        args: list[object] = [establishment_id]
        if status is not None:
            sql += " AND b.status = ?"
            args.append(status)
        if starts_from is not None:
            sql += " AND b.starts_at >= ?"
            args.append(starts_from)
        if starts_before is not None:
            sql += " AND b.starts_at < ?"
            args.append(starts_before)
        sql += " ORDER BY b.starts_at, b.id LIMIT ?"
        args.append(limit)
        return [self._booking(r) for r in self._db.execute(sql, args).fetchall()]

    def visitor_bookings(self, visitor_id: int, limit: int = 200) -> list[Booking]:
        rows = self._db.execute(
            "SELECT b.*, p.number AS prisoner_number FROM bookings b"
            " JOIN prisoners p ON p.id = b.prisoner_id"
            " JOIN booking_visitors bv ON bv.booking_id = b.id WHERE bv.visitor_id = ?"
            " ORDER BY b.starts_at, b.id LIMIT ?",
            (visitor_id, limit),
        ).fetchall()
        return [self._booking(r) for r in rows]

    def allowance_used(self, prisoner_id: int, month_of: float, exclude: int | None = None) -> int:
        """Minutes of social calls approved or completed in the establishment's local calendar
        month of ``month_of`` (failed calls give their minutes back; cancelled/declined never
        count)."""
        return self.allowance(prisoner_id, month_of, None, exclude)[0]

    def allowance(
        self, prisoner_id: int, month_of: float, now: float | None, exclude: int | None = None
    ) -> tuple[int, int]:
        """(used, pending) minutes of the prisoner's social calls in the local month of
        ``month_of``: used = approved or completed; pending = requested and not yet over at
        ``now`` (a request still waiting for staff holds its minutes, so a family cannot file
        requests that could never all be approved). ``now`` None: pending is not counted."""
        est = self._db.execute(
            "SELECT establishment_id FROM prisoners WHERE id = ?", (prisoner_id,)
        ).fetchone()
        if est is None:
            raise StoreError("prisoner_not_found", "no such prisoner")
        start, end = self.visiting_hours(est[0]).month_bounds(month_of)
        r = self._db.execute(
            "SELECT COALESCE(SUM(CASE WHEN status IN ('approved', 'completed')"
            " THEN ends_at - starts_at ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN status = 'requested' AND ends_at > ?"
            " THEN ends_at - starts_at ELSE 0 END), 0)"
            " FROM bookings WHERE prisoner_id = ? AND call_type = 'social'"
            " AND starts_at >= ? AND starts_at < ? AND id != ?",
            (now if now is not None else float("inf"), prisoner_id, start, end, exclude or 0),
        ).fetchone()
        return round(r[0] / 60), round(r[1] / 60)

    def _free_laptop(
        self, db, establishment_id: int, starts_at: float, ends_at: float, exclude: int,
        prefer: int | None = None, rooms: int = 0,
    ) -> int | None:
        """A free active laptop for the call, or None; ``rooms`` > 0 caps how many calls the
        session runs at once (counted over the call's whole time, so it errs on the safe
        side)."""
        if rooms > 0:
            overlapping = db.execute(
                "SELECT COUNT(*) FROM bookings WHERE establishment_id = ? AND status = 'approved'"
                " AND id != ? AND starts_at < ? AND ends_at > ?",
                (establishment_id, exclude, ends_at, starts_at),
            ).fetchone()[0]
            if overlapping >= rooms:
                return None
        rows = db.execute(
            "SELECT l.id FROM laptops l WHERE l.establishment_id = ? AND l.active = 1"
            " AND NOT EXISTS (SELECT 1 FROM bookings b WHERE b.laptop_id = l.id"
            " AND b.status = 'approved' AND b.id != ? AND b.starts_at < ? AND b.ends_at > ?)"
            " ORDER BY l.id",
            (establishment_id, exclude, ends_at, starts_at),
        ).fetchall()
        free = [int(r[0]) for r in rows]
        if prefer is not None and prefer in free:
            return prefer
        return free[0] if free else None

    def _check_hours(self, policy: EstablishmentPolicy, starts_at: float, ends_at: float,
                     now: float, timing: bool) -> int:
        """Visiting hours, blackout, and (``timing``: a new time being asked for) notice and
        booking window. Returns the rooms cap of the session (0: every laptop)."""
        hours = self.visiting_hours(policy.establishment_id)
        if timing and starts_at < now + hours.notice_hours * 3600:
            raise StoreError(
                "too_little_notice",
                f"calls must be booked at least {hours.notice_hours} hours ahead",
            )
        if timing and starts_at > now + hours.booking_window_days * 86400:
            raise StoreError(
                "beyond_booking_window",
                f"bookings open {hours.booking_window_days} days ahead",
            )
        closed = hours.blackout_on(starts_at) or hours.blackout_on(ends_at - 1)
        if closed is not None:
            why = f" ({closed.reason})" if closed.reason else ""
            raise StoreError("blackout_date", f"no calls on {closed.day}{why}")
        windows = hours.covering(starts_at, ends_at)
        if windows is None:
            local = hours.local(starts_at)
            raise StoreError(
                "outside_visiting_hours",
                f"{local:%A %d %B %H:%M} ({hours.timezone}) is outside visiting hours",
            )
        caps = [w.rooms for w in windows if w.rooms > 0]
        return min(caps) if caps else 0

    def _check(
        self,
        db,
        *,
        prisoner: Row,
        call_type: str,
        starts_at: float,
        ends_at: float,
        main_visitor_id: int,
        visitor_ids: Sequence[int],
        exclude: int,
        approving: bool,
        now: float,
        timing: bool,
    ) -> int:
        """Every booking rule; raises StoreError with the first rule broken. ``timing``: the
        time is new (a request or a move), so notice and the booking window apply too. Returns
        the session's rooms cap for the laptop assignment (0: every active laptop)."""
        policy = self.policy(prisoner["establishment_id"])
        if call_type not in CALL_TYPES:
            raise StoreError("bad_call_type", "call type must be social or legal")
        if not prisoner["video_call_eligible"]:
            raise StoreError("prisoner_not_eligible", "this prisoner may not have video calls")
        minutes = round((ends_at - starts_at) / 60, 3)  # float noise at epoch magnitudes
        if minutes not in policy.allowed_call_minutes:
            allowed = ", ".join(str(m) for m in policy.allowed_call_minutes)
            raise StoreError("bad_call_length", f"a call lasts one of: {allowed} minutes")
        party = list(dict.fromkeys(visitor_ids))
        if main_visitor_id not in party:
            raise StoreError("main_visitor_not_in_party", "the main visitor must be on the call")
        if len(party) > policy.max_visitors:
            raise StoreError(
                "too_many_visitors", f"at most {policy.max_visitors} people on the family side"
            )
        for vid in party:
            v = db.execute(
                "SELECT v.*, c.status AS c_status FROM visitors v LEFT JOIN approved_contacts c"
                " ON c.visitor_id = v.id AND c.prisoner_id = ? WHERE v.id = ?",
                (prisoner["id"], vid),
            ).fetchone()
            if v is None or v["c_status"] != "approved":
                raise StoreError(
                    "visitor_not_approved", f"visitor {vid} is not an approved contact"
                )
            if not v["identity_verified"]:
                raise StoreError("visitor_not_verified", f"visitor {vid}'s identity is unverified")
            if vid == main_visitor_id and age_on(v["date_of_birth"], starts_at) < (
                policy.min_main_visitor_age
            ):
                raise StoreError(
                    "main_visitor_under_age",
                    f"the main visitor must be {policy.min_main_visitor_age} or over",
                )
        busy = db.execute(
            "SELECT 1 FROM bookings WHERE prisoner_id = ? AND id != ?"
            " AND status IN ('requested', 'approved') AND starts_at < ? AND ends_at > ?",
            (prisoner["id"], exclude, ends_at, starts_at),
        ).fetchone()
        if busy:
            raise StoreError("prisoner_busy", "the prisoner has another call booked then")
        rooms = self._check_hours(policy, starts_at, ends_at, now, timing)
        if call_type == "social":
            used, pending = self.allowance(prisoner["id"], starts_at, now, exclude=exclude)
            if used + pending + minutes > policy.monthly_allowance_minutes:
                raise StoreError(
                    "allowance_exceeded",
                    f"this month {used} of {policy.monthly_allowance_minutes} minutes are used"
                    f" and {pending} are requested: {minutes} more do not fit",
                )
        free = self._free_laptop(
            db, policy.establishment_id, starts_at, ends_at, exclude, rooms=rooms
        )
        if free is None:
            raise StoreError("slot_full", "every room is booked at that time")
        return rooms

    def request_booking(
        self,
        *,
        prisoner_id: int,
        call_type: str,
        starts_at: float,
        minutes: int,
        main_visitor_id: int,
        visitor_ids: Sequence[int],
        requested_by: str,
        now: float,
        actor: str,
    ) -> Booking:
        """A family or prisoner request (status requested): every rule checked now, and again
        when staff approve."""
        if requested_by not in ("family", "prisoner", "staff"):
            raise StoreError("bad_requester", "unknown requester")
        ends_at = starts_at + minutes * 60
        if starts_at <= now:
            raise StoreError("slot_in_past", "the slot must start in the future")
        party = list(dict.fromkeys([main_visitor_id, *visitor_ids]))
        with self._tx() as db:
            prisoner = db.execute(
                "SELECT * FROM prisoners WHERE id = ?", (prisoner_id,)
            ).fetchone()
            if prisoner is None:
                raise StoreError("prisoner_not_found", "no such prisoner")
            self._check(
                db, prisoner=prisoner, call_type=call_type, starts_at=starts_at,
                ends_at=ends_at, main_visitor_id=main_visitor_id, visitor_ids=party,
                exclude=0, approving=False, now=now, timing=True,
            )
            cur = db.execute(
                "INSERT INTO bookings (establishment_id, prisoner_id, call_type, starts_at,"
                " ends_at, status, requested_by, main_visitor_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, 'requested', ?, ?, ?) RETURNING id",
                (prisoner["establishment_id"], prisoner_id, call_type, starts_at, ends_at,
                 requested_by, main_visitor_id, now),
            )
            bid = int(cur.fetchone()[0])
            db.executemany(
                "INSERT INTO booking_visitors (booking_id, visitor_id) VALUES (?, ?)",
                [(bid, v) for v in party],
            )
            self._event(db, bid, now, actor, "requested")
        return self.booking(bid)  # type: ignore[return-value]

    def add_booking_unchecked(
        self,
        *,
        prisoner_id: int,
        call_type: str,
        starts_at: float,
        ends_at: float,
        main_visitor_id: int,
        visitor_ids: Sequence[int],
        laptop_id: int | None,
        status: str,
        now: float,
        requested_by: str = "staff",
    ) -> int:
        """Insert a booking as is (seed data, imports, tests). No rule is checked."""
        party = list(dict.fromkeys([main_visitor_id, *visitor_ids]))
        with self._tx() as db:
            est = db.execute(
                "SELECT establishment_id FROM prisoners WHERE id = ?", (prisoner_id,)
            ).fetchone()
            if est is None:
                raise StoreError("prisoner_not_found", "no such prisoner")
            cur = db.execute(
                "INSERT INTO bookings (establishment_id, prisoner_id, call_type, starts_at,"
                " ends_at, status, requested_by, main_visitor_id, laptop_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (est[0], prisoner_id, call_type, starts_at, ends_at, status, requested_by,
                 main_visitor_id, laptop_id, now),
            )
            bid = int(cur.fetchone()[0])
            db.executemany(
                "INSERT INTO booking_visitors (booking_id, visitor_id) VALUES (?, ?)",
                [(bid, v) for v in party],
            )
            self._event(db, bid, now, "system", "created", status)
        return bid

    def _load_for_update(self, db, booking_id: int) -> Row:
        r = db.execute("SELECT * FROM bookings WHERE id = ?", (booking_id,)).fetchone()
        if r is None:
            raise StoreError("booking_not_found", "no such booking")
        return r

    def _party(self, db, booking_id: int) -> list[int]:
        return [
            int(v[0])
            for v in db.execute(
                "SELECT visitor_id FROM booking_visitors WHERE booking_id = ?", (booking_id,)
            )
        ]

    def approve_booking(
        self, booking_id: int, staff_id: int, now: float, laptop_id: int | None = None
    ) -> Booking:
        """Staff confirm a request: every rule re-checked, a free laptop assigned."""
        with self._tx() as db:
            b = self._load_for_update(db, booking_id)
            if b["status"] != "requested":
                raise StoreError("booking_not_pending", f"the booking is {b['status']}")
            if b["ends_at"] <= now:
                raise StoreError("slot_in_past", "the slot has ended")
            prisoner = db.execute(
                "SELECT * FROM prisoners WHERE id = ?", (b["prisoner_id"],)
            ).fetchone()
            rooms = self._check(
                db, prisoner=prisoner, call_type=b["call_type"], starts_at=b["starts_at"],
                ends_at=b["ends_at"], main_visitor_id=b["main_visitor_id"],
                visitor_ids=self._party(db, booking_id), exclude=booking_id, approving=True,
                now=now, timing=False,
            )
            lid = self._free_laptop(
                db, b["establishment_id"], b["starts_at"], b["ends_at"], booking_id, laptop_id,
                rooms=rooms,
            )
            if laptop_id is not None and lid != laptop_id:
                raise StoreError("laptop_unavailable", "that laptop is not free at that time")
            db.execute(
                "UPDATE bookings SET status = 'approved', laptop_id = ?, decided_by = ?,"
                " decided_at = ? WHERE id = ?",
                (lid, staff_id, now, booking_id),
            )
            self._event(db, booking_id, now, _actor(staff_id), "approved", f"laptop {lid}")
        return self.booking(booking_id)  # type: ignore[return-value]

    def decline_booking(self, booking_id: int, staff_id: int, now: float, reason: str) -> Booking:
        with self._tx() as db:
            b = self._load_for_update(db, booking_id)
            if b["status"] != "requested":
                raise StoreError("booking_not_pending", f"the booking is {b['status']}")
            db.execute(
                "UPDATE bookings SET status = 'declined', decided_by = ?, decided_at = ?,"
                " reason = ? WHERE id = ?",
                (staff_id, now, reason, booking_id),
            )
            self._event(db, booking_id, now, _actor(staff_id), "declined", reason)
        return self.booking(booking_id)  # type: ignore[return-value]

    def cancel_booking(self, booking_id: int, actor: str, now: float, reason: str = "",
                       used: bool = False) -> Booking:
        """Cancel a booking that has not ended. ``used``: its call already went live, so it
        ends early as "completed" (reason ``booking_cancelled``) and keeps counting against
        the allowance; otherwise it is "cancelled" and the minutes are given back."""
        with self._tx() as db:
            b = self._load_for_update(db, booking_id)
            if b["status"] not in ("requested", "approved") or b["ends_at"] <= now:
                raise StoreError("booking_not_active", f"the booking is {b['status']}")
            if used and b["status"] == "approved":
                db.execute(
                    "UPDATE bookings SET status = 'completed', reason = 'booking_cancelled'"
                    " WHERE id = ?",
                    (booking_id,),
                )
                self._event(db, booking_id, now, actor, "ended_early", reason or "cancelled")
            else:
                db.execute(
                    "UPDATE bookings SET status = 'cancelled', reason = ? WHERE id = ?",
                    (reason or f"cancelled by {actor}", booking_id),
                )
                self._event(db, booking_id, now, actor, "cancelled", reason)
        return self.booking(booking_id)  # type: ignore[return-value]

    def reschedule_booking(
        self, booking_id: int, starts_at: float, minutes: int, actor: str, now: float,
        keep_approval: bool,
    ) -> Booking:
        """Move a booking that has not started. Every rule is checked again; a family or
        prisoner reschedule goes back to staff (status requested); staff keep it approved
        (``keep_approval``) if it was, with a laptop reassigned. Old tokens stop working."""
        ends_at = starts_at + minutes * 60
        with self._tx() as db:
            b = self._load_for_update(db, booking_id)
            if b["status"] not in ("requested", "approved"):
                raise StoreError("booking_not_active", f"the booking is {b['status']}")
            if b["starts_at"] <= now:
                raise StoreError("booking_started", "a call that has started cannot move")
            if starts_at <= now:
                raise StoreError("slot_in_past", "the slot must start in the future")
            prisoner = db.execute(
                "SELECT * FROM prisoners WHERE id = ?", (b["prisoner_id"],)
            ).fetchone()
            rooms = self._check(
                db, prisoner=prisoner, call_type=b["call_type"], starts_at=starts_at,
                ends_at=ends_at, main_visitor_id=b["main_visitor_id"],
                visitor_ids=self._party(db, booking_id), exclude=booking_id,
                approving=keep_approval, now=now, timing=True,
            )
            status, lid = "requested", None
            if keep_approval and b["status"] == "approved":
                status = "approved"
                lid = self._free_laptop(
                    db, b["establishment_id"], starts_at, ends_at, booking_id, b["laptop_id"],
                    rooms=rooms,
                )
            db.execute(
                "UPDATE bookings SET starts_at = ?, ends_at = ?, status = ?, laptop_id = ?"
                " WHERE id = ?",
                (starts_at, ends_at, status, lid, booking_id),
            )
            self._event(
                db, booking_id, now, actor, "rescheduled",
                f"{b['starts_at']:.0f}-{b['ends_at']:.0f} -> {starts_at:.0f}-{ends_at:.0f}",
            )
        return self.booking(booking_id)  # type: ignore[return-value]

    def mark_call_outcome(
        self, booking_id: int, outcome: str, reason: str, now: float | None = None
    ) -> None:
        """Record how an approved call ended: "completed" (counts against the allowance) or
        "failed" (technical failure: the minutes are given back). Idempotent for the same
        outcome; a later "failed" overrides "completed" (a call that dropped for good)."""
        if outcome not in ("completed", "failed"):
            raise ValueError("outcome must be 'completed' or 'failed'")
        now = time.time() if now is None else now
        with self._tx() as db:
            b = self._load_for_update(db, booking_id)
            if b["status"] == outcome:
                return
            if b["status"] not in ("approved", "completed"):
                raise StoreError("booking_not_active", f"the booking is {b['status']}")
            db.execute(
                "UPDATE bookings SET status = ?, reason = ? WHERE id = ?",
                (outcome, reason, booking_id),
            )
            self._event(db, booking_id, now, "relay", outcome, reason)

    def booking_events(self, booking_id: int) -> list[tuple[float, str, str, str]]:
        return [
            (r["at"], r["actor"], r["event"], r["detail"])
            for r in self._db.execute(
                "SELECT * FROM booking_events WHERE booking_id = ? ORDER BY id", (booking_id,)
            )
        ]

