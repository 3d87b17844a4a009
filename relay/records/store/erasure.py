"""Erasure's records: who a visitor or prisoner is linked to, and reducing their rows to a
pseudonymous stub (the plan is relay/records/erasure.py; the table by table decisions are
in docs/erasure.md).

Booking changes are not made here by callers directly: ``CallLifecycle.remove_visitor`` and
``remove_prisoner`` cancel and revoke first (the live calls follow), then call these.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relay import auth
from relay.records.store.base import RecordsBase
from relay.records.store.sessions import ACCOUNT_SESSIONS

ACTIVE = "('requested', 'approved')"
"""Booking statuses that a change still affects (a constant, never user input)."""
WITHDRAWN = "withdrawn: the applicant's record was erased"
PRISONER_GONE = "withdrawn: the prisoner's record was closed"


def visitor_stub_name(visitor_id: int) -> str:
    return f"erased visitor #{visitor_id}"


def prisoner_stub_name(prisoner_id: int) -> str:
    return f"erased prisoner #{prisoner_id}"


@dataclass
class StubbedVisitor:
    """What reducing a visitor's records left for the caller to do outside the database."""

    photo_paths: list[str] = field(default_factory=list)
    """Sealed vetting photos whose rows were deleted: the files go next."""
    applications: list[int] = field(default_factory=list)
    """Applications of theirs: withdrawn if pending, personal fields cleared."""
    account_id: int | None = None


class ErasureRecords(RecordsBase):
    # ---- reading --------------------------------------------------------------------------

    def visitor_erased_at(self, visitor_id: int) -> float | None:
        """When the visitor was erased; None for a live record. Unknown ids: KeyError."""
        r = self._db.execute(
            "SELECT erased_at FROM visitors WHERE id = ?", (visitor_id,)
        ).fetchone()
        if r is None:
            raise KeyError(visitor_id)
        return None if r[0] is None else float(r[0])

    def prisoner_erased_at(self, prisoner_id: int) -> float | None:
        r = self._db.execute(
            "SELECT erased_at FROM prisoners WHERE id = ?", (prisoner_id,)
        ).fetchone()
        if r is None:
            raise KeyError(prisoner_id)
        return None if r[0] is None else float(r[0])

    def visitor_establishments(self, visitor_id: int) -> set[int]:
        """Every establishment the visitor is linked to: an approval (current or revoked),
        an application, or a booking (as main or extra visitor)."""
        rows = self._db.execute(
            "SELECT p.establishment_id FROM approved_contacts c"
            " JOIN prisoners p ON p.id = c.prisoner_id WHERE c.visitor_id = ?"
            " UNION SELECT establishment_id FROM vetting_applications WHERE visitor_id = ?"
            " UNION SELECT b.establishment_id FROM bookings b"
            " JOIN booking_visitors bv ON bv.booking_id = b.id WHERE bv.visitor_id = ?"
            " UNION SELECT establishment_id FROM bookings WHERE main_visitor_id = ?",
            (visitor_id, visitor_id, visitor_id, visitor_id),
        ).fetchall()
        return {int(r[0]) for r in rows}

    def approved_contact_ids(
        self, visitor_id: int | None = None, prisoner_id: int | None = None
    ) -> list[int]:
        """The approvals in force of one visitor or of one prisoner."""
        column, value = (
            ("visitor_id", visitor_id) if prisoner_id is None else ("prisoner_id", prisoner_id)
        )
        rows = self._db.execute(
            f"SELECT id FROM approved_contacts WHERE {column} = ? AND status = 'approved'"
            " ORDER BY id",
            (value,),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def coming_bookings(
        self, now: float, main_visitor_id: int | None = None, prisoner_id: int | None = None
    ) -> list[int]:
        """Bookings not yet ended that a change still affects, of a main visitor or of a
        prisoner."""
        column, value = (
            ("main_visitor_id", main_visitor_id)
            if prisoner_id is None
            else ("prisoner_id", prisoner_id)
        )
        rows = self._db.execute(
            f"SELECT id FROM bookings WHERE {column} = ? AND ends_at > ?"
            f" AND status IN {ACTIVE} ORDER BY starts_at, id",
            (value, now),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def household_of_holder(self, visitor_id: int) -> tuple[int | None, list[int]]:
        """(account, its household's children) when the visitor holds an account."""
        r = self._db.execute(
            "SELECT id FROM accounts WHERE visitor_id = ?", (visitor_id,)
        ).fetchone()
        if r is None:
            return None, []
        rows = self._db.execute(
            "SELECT visitor_id FROM household_members WHERE account_id = ? ORDER BY visitor_id",
            (int(r[0]),),
        ).fetchall()
        return int(r[0]), [int(x[0]) for x in rows]

    # ---- changing -------------------------------------------------------------------------

    def drop_from_coming_bookings(self, visitor_id: int, actor: str, now: float) -> list[int]:
        """Take the visitor off the party of every booking not yet ended that they are an
        extra visitor on (for ``CallLifecycle.remove_visitor``, after it has stopped those
        they were essential to); each gets a ``visitor_removed`` event. Returns them."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT b.id FROM bookings b JOIN booking_visitors bv ON bv.booking_id = b.id"
                f" WHERE bv.visitor_id = ? AND b.main_visitor_id <> ? AND b.ends_at > ?"
                f" AND b.status IN {ACTIVE} ORDER BY b.id",
                (visitor_id, visitor_id, now),
            ).fetchall()
            dropped = [int(r[0]) for r in rows]
            for bid in dropped:
                db.execute(
                    "DELETE FROM booking_visitors WHERE booking_id = ? AND visitor_id = ?",
                    (bid, visitor_id),
                )
                self._event(db, bid, now, actor, "visitor_removed", "visitor_erased")
        return dropped

    def stub_visitor(self, visitor_id: int, now: float) -> StubbedVisitor:
        """Reduce a visitor to a pseudonymous stub in one transaction: their account can no
        longer sign in (sessions, tokens, email, password and queued emails gone), their
        household link and consents go, their applications are withdrawn (pending ones) and
        cleared of personal fields, their vetting photo rows deleted (the files are the
        caller's), and their row keeps only its id, ``erased_at`` and a stub name. Approvals
        and bookings must have been ended first (``CallLifecycle.remove_visitor``)."""
        out = StubbedVisitor()
        with self._tx() as db:
            acc = db.execute(
                "SELECT id, email FROM accounts WHERE visitor_id = ?", (visitor_id,)
            ).fetchone()
            if acc is not None:
                aid = out.account_id = int(acc[0])
                ACCOUNT_SESSIONS.delete_all(db, aid)
                db.execute("DELETE FROM account_tokens WHERE account_id = ?", (aid,))
                db.execute("DELETE FROM outbox WHERE to_addr = ?", (acc[1],))
                db.execute(
                    "UPDATE accounts SET email = ?, password_hash = '', email_verified = 0,"
                    " closed_at = COALESCE(closed_at, ?) WHERE id = ?",
                    (f"erased-{aid}", now, aid),
                )
                db.execute("DELETE FROM household_members WHERE account_id = ?", (aid,))
            apps = db.execute(
                "SELECT id FROM vetting_applications WHERE visitor_id = ? OR account_id ="
                " (SELECT id FROM accounts WHERE visitor_id = ?) ORDER BY id",
                (visitor_id, visitor_id),
            ).fetchall()
            out.applications = [int(r[0]) for r in apps]
            for app_id in out.applications:
                photos = db.execute(
                    "SELECT path FROM vetting_photos WHERE application_id = ?", (app_id,)
                ).fetchall()
                out.photo_paths += [str(p[0]) for p in photos]
                db.execute("DELETE FROM vetting_photos WHERE application_id = ?", (app_id,))
                db.execute(
                    "UPDATE vetting_applications SET status = 'declined', reason = ?,"
                    " decided_at = ? WHERE id = ? AND status IN ('draft', 'submitted')",
                    (WITHDRAWN, now, app_id),
                )
                db.execute(
                    "UPDATE vetting_applications SET relationship = '', date_of_birth = '',"
                    " address = '' WHERE id = ?",
                    (app_id,),
                )
            db.execute("DELETE FROM household_members WHERE visitor_id = ?", (visitor_id,))
            db.execute(
                "DELETE FROM party_consents WHERE visitor_id = ? OR for_visitor_id = ?",
                (visitor_id, visitor_id),
            )
            db.execute(
                "UPDATE visitors SET name = ?, date_of_birth = '', identity_verified = 0,"
                " secret_hash = ?, erased_at = ? WHERE id = ?",
                (
                    visitor_stub_name(visitor_id),
                    auth.hash_secret(auth.new_secret()),  # the old access key stops
                    now,
                    visitor_id,
                ),
            )
        return out

    def stub_prisoner(self, prisoner_id: int, now: float) -> list[int]:
        """Reduce a prisoner to a stub: the kiosk PIN goes, video calls stop, number and name
        are replaced, and applications still waiting to call them are withdrawn (the
        families are told why; their photos follow the usual retention from now). Bookings
        and approvals must have been ended first (``CallLifecycle.remove_prisoner``).
        Returns the withdrawn applications."""
        with self._tx() as db:
            db.execute("DELETE FROM kiosk_pins WHERE prisoner_id = ?", (prisoner_id,))
            rows = db.execute(
                "SELECT id FROM vetting_applications WHERE prisoner_id = ?"
                " AND status IN ('draft', 'submitted') ORDER BY id",
                (prisoner_id,),
            ).fetchall()
            withdrawn = [int(r[0]) for r in rows]
            db.execute(
                "UPDATE vetting_applications SET status = 'declined', reason = ?, decided_at = ?"
                " WHERE prisoner_id = ? AND status IN ('draft', 'submitted')",
                (PRISONER_GONE, now, prisoner_id),
            )
            db.execute(
                "UPDATE prisoners SET number = ?, name = ?, video_call_eligible = 0,"
                " erased_at = ? WHERE id = ?",
                (f"ERASED-{prisoner_id}", prisoner_stub_name(prisoner_id), now, prisoner_id),
            )
        return withdrawn
