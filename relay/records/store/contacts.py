"""Approvals: which visitor may call which prisoner."""

from __future__ import annotations

import logging

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

    def revoke_contact(self, contact_id: int, staff_id: int | None, now: float) -> list[int]:
        """Revoke an approval; cancels every not-yet-ended booking of that prisoner with that
        visitor in the party (their tokens fail ``admit`` at once). Returns the cancelled ids."""
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
                "SELECT b.id FROM bookings b JOIN booking_visitors bv ON bv.booking_id = b.id"
                " WHERE b.prisoner_id = ? AND bv.visitor_id = ? AND b.ends_at > ?"
                " AND b.status IN ('requested', 'approved')",
                (c["prisoner_id"], c["visitor_id"], now),
            ).fetchall()
            ids = [int(r[0]) for r in rows]
            for bid in ids:
                db.execute(
                    "UPDATE bookings SET status = 'cancelled', reason = 'approval_revoked'"
                    " WHERE id = ?",
                    (bid,),
                )
                self._event(db, bid, now, _actor(staff_id), "cancelled", "approval_revoked")
        return ids

