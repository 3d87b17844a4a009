"""Establishments, their policies, laptops, prisoners and visitors."""

from __future__ import annotations

import datetime as dt
import logging

from relay import auth
from relay.records.store.base import RecordsBase
from relay.records.store.engine import Row
from relay.records.store.values import (
    EstablishmentPolicy,
    Laptop,
    StoreError,
    Visitor,
    policy_defaults,
)

log = logging.getLogger("relay.records.store")


class PeopleRecords(RecordsBase):
    def create_establishment(self, name: str, now: float, **policy: object) -> int:
        """A new establishment; unnamed policy fields take ``EstablishmentPolicy``'s defaults."""
        fields: dict[str, object] = {**policy_defaults(), "is_demo": 0}
        allowed = policy.pop("allowed_call_minutes", fields.pop("allowed_call_minutes"))
        unknown = set(policy) - set(fields)
        if unknown:
            raise TypeError(f"unknown policy fields: {sorted(unknown)}")
        fields.update(policy)
        fields = {k: v if v is None else int(v) for k, v in fields.items()}  # type: ignore[call-overload]
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        with self._tx() as db:
            cur = db.execute(
                f"INSERT INTO establishments (name, allowed_call_minutes, created_at, {cols})"
                f" VALUES (?, ?, ?, {marks}) RETURNING id",
                (name, ",".join(str(int(m)) for m in allowed), now, *fields.values()),
            )
            return int(cur.fetchone()[0])

    def establishment_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM establishments").fetchone()[0])

    def find_establishment(self, name: str) -> int | None:
        row = self._db.execute("SELECT id FROM establishments WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def policy(self, establishment_id: int) -> EstablishmentPolicy:
        r = self._db.execute(
            "SELECT e.*, (SELECT COUNT(*) FROM laptops l WHERE l.establishment_id = e.id"
            " AND l.active = 1) AS capacity FROM establishments e WHERE e.id = ?",
            (establishment_id,),
        ).fetchone()
        if r is None:
            raise StoreError("establishment_not_found", "no such establishment")
        return EstablishmentPolicy(
            establishment_id=r["id"],
            name=r["name"],
            call_minutes=r["call_minutes"],
            allowed_call_minutes=tuple(int(m) for m in r["allowed_call_minutes"].split(",") if m),
            monthly_allowance_minutes=r["monthly_allowance_minutes"],
            max_visitors=r["max_visitors"],
            min_main_visitor_age=r["min_main_visitor_age"],
            record_social=bool(r["record_social"]),
            retention_days=r["retention_days"],
            staff_must_resume=bool(r["staff_must_resume"]),
            capacity=r["capacity"],
            unenrolled_needs_staff=(
                None if r["unenrolled_needs_staff"] is None else bool(r["unenrolled_needs_staff"])
            ),
        )

    def set_unenrolled_needs_staff(self, establishment_id: int, value: bool | None) -> None:
        """Whether a side with nobody enrolled waits for staff here; None: the relay's
        default again. Takes effect from the next call that joins."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE establishments SET unenrolled_needs_staff = ? WHERE id = ?",
                (None if value is None else int(value), establishment_id),
            )
            if cur.rowcount == 0:
                raise StoreError("establishment_not_found", "no such establishment")

    def add_laptop(self, establishment_id: int, label: str, room: str = "") -> tuple[int, str]:
        """Returns (laptop id, credential secret); only the secret's hash is kept."""
        secret = auth.new_secret()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO laptops (establishment_id, label, room, secret_hash)"
                " VALUES (?, ?, ?, ?) RETURNING id",
                (establishment_id, label, room, auth.hash_secret(secret)),
            )
            return int(cur.fetchone()[0]), secret

    def rotate_laptop_secret(self, laptop_id: int) -> str:
        secret = auth.new_secret()
        with self._tx() as db:
            db.execute(
                "UPDATE laptops SET secret_hash = ? WHERE id = ?",
                (auth.hash_secret(secret), laptop_id),
            )
        return secret

    def set_laptop_active(self, laptop_id: int, active: bool) -> None:
        with self._tx() as db:
            db.execute("UPDATE laptops SET active = ? WHERE id = ?", (int(active), laptop_id))

    def check_laptop(self, laptop_id: int, secret: str) -> Laptop | None:
        r = self._db.execute(
            "SELECT * FROM laptops WHERE id = ? AND active = 1", (laptop_id,)
        ).fetchone()
        if not auth.secret_matches(r["secret_hash"] if r else None, secret):
            return None
        return Laptop(r["id"], r["establishment_id"], r["label"], r["room"])

    def laptops(self, establishment_id: int) -> list[Laptop]:
        rows = self._db.execute(
            "SELECT * FROM laptops WHERE establishment_id = ? AND active = 1 ORDER BY id",
            (establishment_id,),
        )
        return [Laptop(r["id"], r["establishment_id"], r["label"], r["room"]) for r in rows]

    def add_prisoner(
        self, establishment_id: int, number: str, name: str, eligible: bool = True
    ) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO prisoners (establishment_id, number, name, video_call_eligible)"
                " VALUES (?, ?, ?, ?) RETURNING id",
                (establishment_id, number, name, int(eligible)),
            )
            return int(cur.fetchone()[0])

    def set_prisoner_eligible(self, prisoner_id: int, eligible: bool) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE prisoners SET video_call_eligible = ? WHERE id = ?",
                (int(eligible), prisoner_id),
            )

    def prisoner(self, prisoner_id: int) -> Row | None:
        return self._db.execute("SELECT * FROM prisoners WHERE id = ?", (prisoner_id,)).fetchone()

    def prisoner_by_number(self, number: str) -> Row | None:
        return self._db.execute("SELECT * FROM prisoners WHERE number = ?", (number,)).fetchone()

    def prisoners(self, establishment_id: int) -> list[Row]:
        return self._db.execute(
            "SELECT * FROM prisoners WHERE establishment_id = ? ORDER BY number",
            (establishment_id,),
        ).fetchall()

    def is_approved_contact(self, prisoner_id: int, visitor_id: int) -> bool:
        r = self._db.execute(
            "SELECT 1 FROM approved_contacts WHERE prisoner_id = ? AND visitor_id = ?"
            " AND status = 'approved'",
            (prisoner_id, visitor_id),
        ).fetchone()
        return r is not None

    def add_visitor(
        self, name: str, date_of_birth: str, identity_verified: bool, now: float
    ) -> tuple[int, str]:
        """Register a vetted visitor. Returns (visitor id, access secret); the app's access
        key is ``f"{id}.{secret}"`` (see ``check_visitor``)."""
        dt.date.fromisoformat(date_of_birth)  # ValueError on a bad date
        secret = auth.new_secret()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO visitors (name, date_of_birth, identity_verified, secret_hash,"
                " created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
                (name, date_of_birth, int(identity_verified), auth.hash_secret(secret), now),
            )
            return int(cur.fetchone()[0]), secret

    def set_visitor_verified(self, visitor_id: int, verified: bool) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE visitors SET identity_verified = ? WHERE id = ?",
                (int(verified), visitor_id),
            )

    def visitor(self, visitor_id: int) -> Visitor | None:
        r = self._db.execute("SELECT * FROM visitors WHERE id = ?", (visitor_id,)).fetchone()
        if r is None:
            return None
        return Visitor(r["id"], r["name"], r["date_of_birth"], bool(r["identity_verified"]))

    def check_visitor(self, visitor_id: int, secret: str) -> Visitor | None:
        r = self._db.execute(
            "SELECT secret_hash FROM visitors WHERE id = ?", (visitor_id,)
        ).fetchone()
        if not auth.secret_matches(r["secret_hash"] if r else None, secret):
            return None
        return self.visitor(visitor_id)

