"""Laptop enrolment and device keys: how the laptop page (``/laptop``) signs in; and the
kiosk PINs prisoners use on it to request calls.

Staff enrol a laptop in the console and get a one-time enrolment code that lives a few
minutes; the laptop page exchanges it once for a long-lived device key, which the browser
keeps. Only SHA-256 hashes of codes and keys are stored. Revoking a laptop revokes all its
device keys (and any unused code) at once; the live call on it is ended by the lifecycle.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from relay import auth
from relay.records.store.base import RecordsBase
from relay.records.store.values import Laptop, StoreError

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""No 0/O, 1/I/L: a code a person reads off the console and types on the laptop."""
CODE_LENGTH = 8


@dataclass(frozen=True)
class Enrolment:
    laptop_id: int
    code: str  # shown once, "ABCD-EFGH"
    expires_at: float


@dataclass(frozen=True)
class LaptopStatus:
    laptop: Laptop
    keys: int  # device keys in force
    enrolled_at: float | None  # the newest key in force


@dataclass(frozen=True)
class LaptopCall:
    """A call booked on a laptop, as the laptop page shows it (visitors' names, times)."""

    booking_id: int
    call_type: str
    starts_at: float
    ends_at: float
    status: str
    visitors: tuple[str, ...]


@dataclass(frozen=True)
class KioskPin:
    pin_hash: str
    failures: int
    locked_at: float | None

    @property
    def locked(self) -> bool:
        return self.locked_at is not None


def normalise_code(code: str) -> str:
    """What a person typed, as stored: capitals, no spaces or dashes."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


class LaptopRecords(RecordsBase):
    def laptop(self, laptop_id: int) -> Laptop | None:
        r = self._db.execute(
            "SELECT * FROM laptops WHERE id = ? AND active = 1", (laptop_id,)
        ).fetchone()
        return None if r is None else Laptop(r["id"], r["establishment_id"], r["label"], r["room"])

    def laptop_statuses(self, establishment_id: int) -> list[LaptopStatus]:
        rows = self._db.execute(
            "SELECT l.*, (SELECT COUNT(*) FROM laptop_keys k WHERE k.laptop_id = l.id"
            " AND k.revoked_at IS NULL) AS n_keys, (SELECT MAX(k.created_at) FROM laptop_keys k"
            " WHERE k.laptop_id = l.id AND k.revoked_at IS NULL) AS enrolled_at"
            " FROM laptops l WHERE l.establishment_id = ? AND l.active = 1 ORDER BY l.id",
            (establishment_id,),
        ).fetchall()
        return [
            LaptopStatus(
                Laptop(r["id"], r["establishment_id"], r["label"], r["room"]),
                int(r["n_keys"]),
                r["enrolled_at"],
            )
            for r in rows
        ]

    def start_enrolment(
        self, laptop_id: int, staff_id: int, now: float, lifetime_s: float
    ) -> Enrolment:
        """A fresh one-time code for ``laptop_id``; earlier unused codes stop working."""
        raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        with self._tx() as db:
            db.execute(
                "UPDATE laptop_enrolments SET used_at = ? WHERE laptop_id = ? AND used_at IS NULL",
                (now, laptop_id),
            )
            db.execute(
                "INSERT INTO laptop_enrolments (laptop_id, code_hash, created_by, created_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?)",
                (laptop_id, auth.hash_secret(raw), staff_id, now, now + lifetime_s),
            )
        half = CODE_LENGTH // 2
        return Enrolment(laptop_id, f"{raw[:half]}-{raw[half:]}", now + lifetime_s)

    def redeem_enrolment(self, code: str, now: float) -> tuple[Laptop, str]:
        """Exchange a code (once, before it expires) for (laptop, device key "<id>.<secret>")."""
        digest = auth.hash_secret(normalise_code(code))
        secret = auth.new_secret()
        with self._tx() as db:
            r = db.execute(
                "SELECT e.id, e.laptop_id FROM laptop_enrolments e JOIN laptops l"
                " ON l.id = e.laptop_id WHERE e.code_hash = ? AND e.used_at IS NULL"
                " AND e.expires_at > ? AND l.active = 1",
                (digest, now),
            ).fetchone()
            if r is None:
                raise StoreError("bad_enrolment_code", "unknown, used or expired enrolment code")
            db.execute("UPDATE laptop_enrolments SET used_at = ? WHERE id = ?", (now, r["id"]))
            cur = db.execute(
                "INSERT INTO laptop_keys (laptop_id, key_hash, created_at) VALUES (?, ?, ?)"
                " RETURNING id",
                (r["laptop_id"], auth.hash_secret(secret), now),
            )
            key_id = int(cur.fetchone()[0])
        laptop = self.laptop(r["laptop_id"])
        assert laptop is not None
        return laptop, f"{key_id}.{secret}"

    def check_device_key(self, key: str) -> tuple[Laptop | None, bool]:
        """(the laptop, False) for a key in force; (None, True) for a revoked one; else
        (None, False). Constant work for unknown ids."""
        ident, _, secret = key.partition(".")
        row = None
        if ident.isdigit() and len(ident) < 19:
            row = self._db.execute(
                "SELECT k.key_hash, k.revoked_at, k.laptop_id FROM laptop_keys k WHERE k.id = ?",
                (int(ident),),
            ).fetchone()
        if not auth.secret_matches(row["key_hash"] if row else None, secret):
            return None, False
        if row["revoked_at"] is not None:
            return None, True
        return self.laptop(row["laptop_id"]), False

    def revoke_laptop_keys(self, laptop_id: int, staff_id: int, now: float) -> int:
        """Revoke every device key and unused code of a laptop; returns the keys revoked."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE laptop_keys SET revoked_at = ?, revoked_by = ? WHERE laptop_id = ?"
                " AND revoked_at IS NULL",
                (now, staff_id, laptop_id),
            )
            db.execute(
                "UPDATE laptop_enrolments SET used_at = ? WHERE laptop_id = ? AND used_at IS NULL",
                (now, laptop_id),
            )
            return int(cur.rowcount)

    def laptop_calls(self, laptop_id: int, start: float, end: float) -> list[LaptopCall]:
        """Calls booked on the laptop that overlap [start, end), with the visitors' names."""
        rows = self._db.execute(
            "SELECT id, call_type, starts_at, ends_at, status FROM bookings WHERE laptop_id = ?"
            " AND starts_at < ? AND ends_at > ? AND status IN ('approved', 'completed',"
            " 'failed', 'cancelled') ORDER BY starts_at, id",
            (laptop_id, end, start),
        ).fetchall()
        out = []
        for r in rows:
            names = tuple(
                v[0]
                for v in self._db.execute(
                    "SELECT v.name FROM booking_visitors bv JOIN visitors v ON v.id = bv.visitor_id"
                    " WHERE bv.booking_id = ? ORDER BY v.id",
                    (r["id"],),
                )
            )
            out.append(
                LaptopCall(
                    r["id"], r["call_type"], r["starts_at"], r["ends_at"], r["status"], names
                )
            )
        return out

    # --- kiosk PINs (argon2 hashes, made and checked outside the store: slow) -------------

    def set_kiosk_pin(self, prisoner_id: int, pin_hash: str, staff_id: int, now: float) -> None:
        """A new PIN from staff; it also lifts a lock and forgets earlier failures."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO kiosk_pins (prisoner_id, pin_hash, failures, locked_at, set_by,"
                " set_at) VALUES (?, ?, 0, NULL, ?, ?) ON CONFLICT (prisoner_id) DO UPDATE SET"
                " pin_hash = excluded.pin_hash, failures = 0, locked_at = NULL,"
                " set_by = excluded.set_by, set_at = excluded.set_at",
                (prisoner_id, pin_hash, staff_id, now),
            )

    def kiosk_pin(self, prisoner_id: int) -> KioskPin | None:
        r = self._db.execute(
            "SELECT pin_hash, failures, locked_at FROM kiosk_pins WHERE prisoner_id = ?",
            (prisoner_id,),
        ).fetchone()
        return None if r is None else KioskPin(r["pin_hash"], r["failures"], r["locked_at"])

    def kiosk_pin_failed(self, prisoner_id: int, now: float, tries: int) -> KioskPin:
        """Count a wrong PIN; the ``tries``-th in a row locks the prisoner's kiosk access."""
        with self._tx() as db:
            db.execute(
                "UPDATE kiosk_pins SET failures = failures + 1, locked_at = CASE WHEN"
                " locked_at IS NULL AND failures + 1 >= ? THEN ? ELSE locked_at END"
                " WHERE prisoner_id = ?",
                (tries, now, prisoner_id),
            )
        pin = self.kiosk_pin(prisoner_id)
        assert pin is not None
        return pin

    def kiosk_pin_ok(self, prisoner_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE kiosk_pins SET failures = 0 WHERE prisoner_id = ?", (prisoner_id,))

    def unlock_kiosk_pin(self, prisoner_id: int) -> bool:
        """Staff lift a lock (the PIN stays); False when there was no PIN."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE kiosk_pins SET failures = 0, locked_at = NULL WHERE prisoner_id = ?",
                (prisoner_id,),
            )
            return cur.rowcount > 0
