"""Vetting applications: a family account asks to be a prisoner's contact.

An application names the applicant (the account holder) and any of their household's
children, carries the details staff check and two sealed photos (relay/vetting/photos.py
keeps the files; only their paths and digests are here). Staff of the prisoner's
establishment approve (every named person becomes verified and an approved contact, through
the existing contact records) or decline with a reason the applicant sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relay.records.store.base import RecordsBase
from relay.records.store.engine import Row
from relay.records.store.values import StoreError

PHOTO_KINDS = ("identity", "face")


@dataclass(frozen=True)
class Application:
    id: int
    account_id: int
    visitor_id: int
    prisoner_id: int
    prisoner_number: str
    prisoner_name: str
    establishment_id: int
    relationship: str
    date_of_birth: str
    address: str
    status: str
    reason: str
    created_at: float
    submitted_at: float | None
    decided_at: float | None
    member_ids: tuple[int, ...]
    photos: tuple[str, ...]


class VettingRecords(RecordsBase):
    def create_application(
        self,
        *,
        account_id: int,
        visitor_id: int,
        prisoner_id: int,
        relationship: str,
        date_of_birth: str,
        address: str,
        member_ids: Sequence[int],
        now: float,
    ) -> int:
        with self._tx() as db:
            p = db.execute("SELECT * FROM prisoners WHERE id = ?", (prisoner_id,)).fetchone()
            if p is None:
                raise StoreError("prisoner_not_found", "no such prisoner")
            open_one = db.execute(
                "SELECT 1 FROM vetting_applications WHERE visitor_id = ? AND prisoner_id = ?"
                " AND status IN ('draft', 'submitted')",
                (visitor_id, prisoner_id),
            ).fetchone()
            if open_one:
                raise StoreError("application_open", "you already have an application open")
            cur = db.execute(
                "INSERT INTO vetting_applications (account_id, visitor_id, prisoner_id,"
                " establishment_id, relationship, date_of_birth, address, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'draft', ?) RETURNING id",
                (
                    account_id,
                    visitor_id,
                    prisoner_id,
                    p["establishment_id"],
                    relationship,
                    date_of_birth,
                    address,
                    now,
                ),
            )
            aid = int(cur.fetchone()[0])
            db.executemany(
                "INSERT INTO vetting_members (application_id, visitor_id) VALUES (?, ?)",
                [(aid, v) for v in dict.fromkeys(member_ids)],
            )
            return aid

    def _application(self, r: Row) -> Application:
        members = tuple(
            int(x[0])
            for x in self._db.execute(
                "SELECT visitor_id FROM vetting_members WHERE application_id = ? ORDER BY visitor_id",
                (r["id"],),
            )
        )
        photos = tuple(
            x[0]
            for x in self._db.execute(
                "SELECT kind FROM vetting_photos WHERE application_id = ? ORDER BY kind", (r["id"],)
            )
        )
        return Application(
            id=r["id"],
            account_id=r["account_id"],
            visitor_id=r["visitor_id"],
            prisoner_id=r["prisoner_id"],
            prisoner_number=r["p_number"],
            prisoner_name=r["p_name"],
            establishment_id=r["establishment_id"],
            relationship=r["relationship"],
            date_of_birth=r["date_of_birth"],
            address=r["address"],
            status=r["status"],
            reason=r["reason"],
            created_at=r["created_at"],
            submitted_at=r["submitted_at"],
            decided_at=r["decided_at"],
            member_ids=members,
            photos=photos,
        )

    _SELECT = (
        "SELECT a.*, p.number AS p_number, p.name AS p_name FROM vetting_applications a"
        " JOIN prisoners p ON p.id = a.prisoner_id"
    )

    def application(self, application_id: int) -> Application | None:
        r = self._db.execute(self._SELECT + " WHERE a.id = ?", (application_id,)).fetchone()
        return None if r is None else self._application(r)

    def account_applications(self, account_id: int) -> list[Application]:
        rows = self._db.execute(
            self._SELECT + " WHERE a.account_id = ? ORDER BY a.id", (account_id,)
        ).fetchall()
        return [self._application(r) for r in rows]

    def vetting_queue(self, establishment_id: int, status: str = "submitted") -> list[Application]:
        rows = self._db.execute(
            self._SELECT + " WHERE a.establishment_id = ? AND a.status = ?"
            " ORDER BY a.submitted_at, a.id",
            (establishment_id, status),
        ).fetchall()
        return [self._application(r) for r in rows]

    def put_photo(
        self, application_id: int, kind: str, path: str, sha256: str, size: int, now: float
    ) -> str | None:
        """Record a photo of a draft; returns the path of the photo it replaces (to delete)."""
        if kind not in PHOTO_KINDS:
            raise StoreError("bad_photo_kind", "a photo is 'identity' or 'face'")
        with self._tx() as db:
            self._draft(db, application_id)
            old = db.execute(
                "SELECT path FROM vetting_photos WHERE application_id = ? AND kind = ?",
                (application_id, kind),
            ).fetchone()
            db.execute(
                "DELETE FROM vetting_photos WHERE application_id = ? AND kind = ?",
                (application_id, kind),
            )
            db.execute(
                "INSERT INTO vetting_photos (application_id, kind, path, sha256, size,"
                " uploaded_at) VALUES (?, ?, ?, ?, ?, ?)",
                (application_id, kind, path, sha256, size, now),
            )
            return None if old is None else str(old[0])

    def photo(self, application_id: int, kind: str) -> tuple[str, str] | None:
        """(path, sha256) of an application's photo."""
        r = self._db.execute(
            "SELECT path, sha256 FROM vetting_photos WHERE application_id = ? AND kind = ?",
            (application_id, kind),
        ).fetchone()
        return None if r is None else (str(r[0]), str(r[1]))

    def expired_vetting_photos(self, decided_before: float) -> list[tuple[int, str, str, int]]:
        """(application, kind, path, establishment) of the photos of applications decided
        before ``decided_before``: past their retention."""
        rows = self._db.execute(
            "SELECT p.application_id, p.kind, p.path, a.establishment_id FROM vetting_photos p"
            " JOIN vetting_applications a ON a.id = p.application_id"
            " WHERE a.status IN ('approved', 'declined') AND a.decided_at < ?",
            (decided_before,),
        ).fetchall()
        return [(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    def drop_vetting_photo(self, application_id: int, kind: str) -> bool:
        """False when the row was already gone (another node's sweep dropped it)."""
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM vetting_photos WHERE application_id = ? AND kind = ?",
                (application_id, kind),
            )
        return cur.rowcount == 1

    def _draft(self, db, application_id: int) -> Row:
        r = db.execute(
            "SELECT * FROM vetting_applications WHERE id = ?", (application_id,)
        ).fetchone()
        if r is None:
            raise StoreError("application_not_found", "no such application")
        if r["status"] != "draft":
            raise StoreError("application_not_draft", "this application was already sent")
        return r

    def submit_application(self, application_id: int, now: float) -> Application:
        with self._tx() as db:
            self._draft(db, application_id)
            n = db.execute(
                "SELECT COUNT(*) FROM vetting_photos WHERE application_id = ?", (application_id,)
            ).fetchone()[0]
            if n < len(PHOTO_KINDS):
                raise StoreError(
                    "photos_missing", "add a photo of your identity document and of your face"
                )
            db.execute(
                "UPDATE vetting_applications SET status = 'submitted', submitted_at = ?"
                " WHERE id = ?",
                (now, application_id),
            )
        return self.application(application_id)  # type: ignore[return-value]

    def decide_application(
        self, application_id: int, staff_id: int, approve: bool, reason: str, now: float
    ) -> Application:
        """Approve (each named person verified and an approved contact) or decline."""
        with self._tx() as db:
            r = db.execute(
                "SELECT * FROM vetting_applications WHERE id = ?", (application_id,)
            ).fetchone()
            if r is None:
                raise StoreError("application_not_found", "no such application")
            if r["status"] != "submitted":
                raise StoreError("application_not_pending", "this application is not waiting")
            db.execute(
                "UPDATE vetting_applications SET status = ?, reason = ?, decided_by = ?,"
                " decided_at = ? WHERE id = ?",
                ("approved" if approve else "declined", reason, staff_id, now, application_id),
            )
            if approve:
                people = [r["visitor_id"], *self._members(db, application_id)]
                for vid in dict.fromkeys(people):
                    db.execute("UPDATE visitors SET identity_verified = 1 WHERE id = ?", (vid,))
                    self.approve_contact(r["prisoner_id"], vid, staff_id, now)  # type: ignore[attr-defined]
        return self.application(application_id)  # type: ignore[return-value]

    def _members(self, db, application_id: int) -> list[int]:
        return [
            int(x[0])
            for x in db.execute(
                "SELECT visitor_id FROM vetting_members WHERE application_id = ?", (application_id,)
            )
        ]
