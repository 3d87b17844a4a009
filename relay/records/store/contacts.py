"""Approvals: which visitor may call which prisoner."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from relay.records.store.base import RecordsBase
from relay.records.store.values import (
    Contact,
    StoreError,
    _actor,
    _contact,
)

log = logging.getLogger("relay.records.store")


class ContactRecords(RecordsBase):
    def approve_contact(
        self, prisoner_id: int, visitor_id: int, staff_id: int | None, now: float
    ) -> int:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM prisoners WHERE id = ?", (prisoner_id,)).fetchone() is None:
                raise StoreError("prisoner_not_found", "no such prisoner")
            if db.execute("SELECT 1 FROM visitors WHERE id = ?", (visitor_id,)).fetchone() is None:
                raise StoreError("visitor_not_found", "no such visitor")
            erased = db.execute(  # relay/records/erasure.py: a stub is never approved again
                "SELECT 1 FROM visitors v, prisoners p WHERE v.id = ? AND p.id = ?"
                " AND (v.erased_at IS NOT NULL OR p.erased_at IS NOT NULL)",
                (visitor_id, prisoner_id),
            ).fetchone()
            if erased is not None:
                raise StoreError("record_erased", "this visitor's or prisoner's record was erased")
            db.execute(
                "INSERT INTO approved_contacts (prisoner_id, visitor_id, status, approved_by,"
                " approved_at) VALUES (?, ?, 'approved', ?, ?)"
                " ON CONFLICT (prisoner_id, visitor_id) DO UPDATE SET status = 'approved',"
                " approved_by = excluded.approved_by, approved_at = excluded.approved_at,"
                " revoked_by = NULL, revoked_at = NULL",
                (prisoner_id, visitor_id, staff_id, now),
            )
            r = db.execute(
                "SELECT id FROM approved_contacts WHERE prisoner_id = ? AND visitor_id = ?",
                (prisoner_id, visitor_id),
            ).fetchone()
            return int(r[0])

    def contact(self, contact_id: int) -> Contact | None:
        r = self._db.execute(
            "SELECT * FROM approved_contacts WHERE id = ?", (contact_id,)
        ).fetchone()
        return None if r is None else _contact(r)

    def contacts(self, establishment_id: int, prisoner_id: int | None = None) -> list[Contact]:
        sql = (
            "SELECT c.* FROM approved_contacts c JOIN prisoners p ON p.id = c.prisoner_id"
            " WHERE p.establishment_id = ?"
        )
        args: list[object] = [establishment_id]
        if prisoner_id is not None:
            sql += " AND c.prisoner_id = ?"
            args.append(prisoner_id)
        return [_contact(r) for r in self._db.execute(sql + " ORDER BY c.id", args)]

    def contact_establishment(self, contact_id: int) -> int | None:
        r = self._db.execute(
            "SELECT p.establishment_id FROM approved_contacts c"
            " JOIN prisoners p ON p.id = c.prisoner_id WHERE c.id = ?",
            (contact_id,),
        ).fetchone()
        return None if r is None else int(r[0])

    def revoke_contact(
        self, contact_id: int, staff_id: int | None, now: float,
        in_call: Collection[int] = (), holding: Collection[int] = (),
    ) -> Revocation:
        """Revoke an approval and apply it to every not-yet-ended booking of that prisoner
        with that visitor in the party (their tokens fail ``admit`` at once).

        A booking stops when the visitor is its main visitor, holds its live family leg
        (``holding``), or no other approved visitor is left: "cancelled" (minutes given
        back), or, if its call already went live (``in_call``), "completed" with reason
        ``approval_revoked`` (it happened, and ended early). Otherwise the booking carries
        on without that visitor: one face fewer is approved on the family side."""
        with self._tx() as db:
            c = db.execute(
                "SELECT * FROM approved_contacts WHERE id = ?", (contact_id,)
            ).fetchone()
            if c is None:
                raise StoreError("contact_not_found", "no such approval")
            db.execute(
                "UPDATE approved_contacts SET status = 'revoked', revoked_by = ?, revoked_at = ?"
                " WHERE id = ?",
                (staff_id, now, contact_id),
            )
            rows = db.execute(
                "SELECT b.id, b.main_visitor_id, b.status FROM bookings b"
                " JOIN booking_visitors bv ON bv.booking_id = b.id"
                " WHERE b.prisoner_id = ? AND bv.visitor_id = ? AND b.ends_at > ?"
                " AND b.status IN ('requested', 'approved')",
                (c["prisoner_id"], c["visitor_id"], now),
            ).fetchall()
            result = Revocation()
            for bid, main, status in ((int(r[0]), int(r[1]), r[2]) for r in rows):
                others = db.execute(
                    "SELECT COUNT(*) FROM booking_visitors bv JOIN approved_contacts ac"
                    " ON ac.visitor_id = bv.visitor_id AND ac.prisoner_id = ?"
                    " WHERE bv.booking_id = ? AND ac.status = 'approved'",
                    (c["prisoner_id"], bid),
                ).fetchone()[0]
                actor = _actor(staff_id)
                if main != c["visitor_id"] and bid not in holding and others > 0:
                    self._event(db, bid, now, actor, "visitor_removed", "approval_revoked")
                    result.reduced.append(bid)
                elif bid in in_call and status == "approved":
                    db.execute(
                        "UPDATE bookings SET status = 'completed', reason = 'approval_revoked'"
                        " WHERE id = ?",
                        (bid,),
                    )
                    self._event(db, bid, now, actor, "ended_early", "approval_revoked")
                    result.ended.append(bid)
                else:
                    db.execute(
                        "UPDATE bookings SET status = 'cancelled', reason = 'approval_revoked'"
                        " WHERE id = ?",
                        (bid,),
                    )
                    self._event(db, bid, now, actor, "cancelled", "approval_revoked")
                    result.cancelled.append(bid)
        return result


@dataclass
class Revocation:
    """What revoking one approval did to that visitor's bookings."""

    cancelled: list[int] = field(default_factory=list)
    """Stopped before their call went live: cancelled, minutes given back."""
    ended: list[int] = field(default_factory=list)
    """Their call had gone live: ended early, recorded as completed (approval_revoked)."""
    reduced: list[int] = field(default_factory=list)
    """Carry on without the visitor (another approved visitor is still on them)."""

    @property
    def stopped(self) -> list[int]:
        return sorted(self.cancelled + self.ended)
