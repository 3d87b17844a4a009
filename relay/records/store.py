"""The establishment's records: establishments, laptops, prisoners, visitors, approvals,
staff, bookings; and the admission check the signalling server makes when a leg joins.

SQLite by default, behind the ``Store`` class: every public method takes and returns plain
values/dataclasses and no SQL leaks out, so a server database could replace it later.

Why a synchronous ``sqlite3`` connection used directly on the event loop (no thread)?
Every call here is one short transaction over a few indexed rows of a local WAL file: tens of
microseconds to a millisecond, which is less than a thread hop costs (and than the GIL
handover it brings on a two-core machine). One connection used from one thread also makes
every write naturally serialised: the capacity and allowance checks run inside the same
``BEGIN IMMEDIATE`` transaction as the insert they guard, so two requests cannot both take
the last laptop. ``busy_timeout`` is kept small so another process holding the write lock
(an admin script) can stall the loop only briefly. Nothing slow (argon2 password hashing)
happens inside a store method's transaction. If a server database ever replaces this, it
would be an async implementation of the same methods.

Schema changes are numbered SQL scripts in ``MIGRATIONS`` (append, never edit), applied in
order on open, each in its own transaction together with its ``schema_version`` row.

Times are UTC epoch seconds (REAL). The monthly allowance counts calendar months in UTC.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol.tokens import JoinClaims
from relay import auth

log = logging.getLogger("relay.records.store")

CALL_TYPES = ("social", "legal")
BOOKING_STATUSES = ("requested", "approved", "declined", "cancelled", "completed", "failed")
STAFF_ROLES = ("officer", "admin")
SESSION_IDLE_S = 30 * 60
"""A staff session ends after this long without a request..."""
SESSION_MAX_S = 10 * 3600
"""...and in any case this long after logging in (one shift)."""

from relay.records.audit import MIGRATION as AUDIT_MIGRATION  # noqa: E402

RUNTIME_MIGRATION = """
CREATE TABLE call_runtime (
    booking_id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    pause_reasons TEXT NOT NULL,
    awaiting_staff TEXT NOT NULL,
    ends_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    ended_at REAL
);
"""
"""relay/calls/runtime.py's table (kept here: runtime.py imports the registry, which needs no store)."""

MIGRATIONS: list[str] = [
    # 1: the booking records
    """
    CREATE TABLE establishments (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        call_minutes INTEGER NOT NULL DEFAULT 30,
        allowed_call_minutes TEXT NOT NULL DEFAULT '30,60',
        monthly_allowance_minutes INTEGER NOT NULL DEFAULT 60,
        max_visitors INTEGER NOT NULL DEFAULT 4,
        min_main_visitor_age INTEGER NOT NULL DEFAULT 18,
        record_social INTEGER NOT NULL DEFAULT 1,
        retention_days INTEGER NOT NULL DEFAULT 90,
        staff_must_resume INTEGER NOT NULL DEFAULT 0,
        is_demo INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE laptops (
        id INTEGER PRIMARY KEY,
        establishment_id INTEGER NOT NULL REFERENCES establishments(id),
        label TEXT NOT NULL,
        room TEXT NOT NULL DEFAULT '',
        secret_hash TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX laptops_est ON laptops(establishment_id);
    CREATE TABLE prisoners (
        id INTEGER PRIMARY KEY,
        establishment_id INTEGER NOT NULL REFERENCES establishments(id),
        number TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        video_call_eligible INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX prisoners_est ON prisoners(establishment_id);
    CREATE TABLE visitors (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        date_of_birth TEXT NOT NULL,
        identity_verified INTEGER NOT NULL DEFAULT 0,
        secret_hash TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE staff (
        id INTEGER PRIMARY KEY,
        establishment_id INTEGER NOT NULL REFERENCES establishments(id),
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('officer', 'admin')),
        active INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE staff_sessions (
        token_hash TEXT PRIMARY KEY,
        staff_id INTEGER NOT NULL REFERENCES staff(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE approved_contacts (
        id INTEGER PRIMARY KEY,
        prisoner_id INTEGER NOT NULL REFERENCES prisoners(id),
        visitor_id INTEGER NOT NULL REFERENCES visitors(id),
        status TEXT NOT NULL CHECK (status IN ('approved', 'revoked')),
        approved_by INTEGER REFERENCES staff(id),
        approved_at REAL NOT NULL,
        revoked_by INTEGER REFERENCES staff(id),
        revoked_at REAL,
        UNIQUE (prisoner_id, visitor_id)
    );
    CREATE INDEX contacts_visitor ON approved_contacts(visitor_id);
    CREATE TABLE bookings (
        id INTEGER PRIMARY KEY,
        establishment_id INTEGER NOT NULL REFERENCES establishments(id),
        prisoner_id INTEGER NOT NULL REFERENCES prisoners(id),
        call_type TEXT NOT NULL CHECK (call_type IN ('social', 'legal')),
        starts_at REAL NOT NULL,
        ends_at REAL NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('requested', 'approved', 'declined', 'cancelled', 'completed', 'failed')),
        requested_by TEXT NOT NULL CHECK (requested_by IN ('family', 'prisoner', 'staff')),
        main_visitor_id INTEGER NOT NULL REFERENCES visitors(id),
        laptop_id INTEGER REFERENCES laptops(id),
        created_at REAL NOT NULL,
        decided_by INTEGER REFERENCES staff(id),
        decided_at REAL,
        reason TEXT NOT NULL DEFAULT '',
        CHECK (ends_at > starts_at)
    );
    CREATE INDEX bookings_est_time ON bookings(establishment_id, starts_at);
    CREATE INDEX bookings_prisoner_time ON bookings(prisoner_id, starts_at);
    CREATE TABLE booking_visitors (
        booking_id INTEGER NOT NULL REFERENCES bookings(id) ON DELETE CASCADE,
        visitor_id INTEGER NOT NULL REFERENCES visitors(id),
        PRIMARY KEY (booking_id, visitor_id)
    );
    CREATE INDEX booking_visitors_visitor ON booking_visitors(visitor_id);
    CREATE TABLE booking_events (
        id INTEGER PRIMARY KEY,
        booking_id INTEGER NOT NULL REFERENCES bookings(id) ON DELETE CASCADE,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX booking_events_booking ON booking_events(booking_id);
    """,
    # 2: the hash-chained audit trail and its evidence frames (relay/records/audit.py)
    AUDIT_MIGRATION,
    # 3: what a restarted relay needs to carry calls on (relay/calls/runtime.py)
    RUNTIME_MIGRATION,
]


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class EstablishmentPolicy:
    establishment_id: int
    name: str
    call_minutes: int = 30
    allowed_call_minutes: tuple[int, ...] = (30, 60)
    monthly_allowance_minutes: int = 60
    max_visitors: int = 4
    min_main_visitor_age: int = 18
    record_social: bool = True
    retention_days: int = 90
    staff_must_resume: bool = False
    capacity: int = 0
    """Active laptops/rooms: how many calls may overlap."""


@dataclass(frozen=True)
class Booking:
    id: int
    establishment_id: int
    prisoner_id: int
    prisoner_number: str
    call_type: str
    starts_at: float
    ends_at: float
    status: str
    requested_by: str
    main_visitor_id: int
    visitor_ids: tuple[int, ...]
    laptop_id: int | None
    reason: str

    @property
    def minutes(self) -> int:
        return round((self.ends_at - self.starts_at) / 60)


@dataclass(frozen=True)
class Staff:
    id: int
    establishment_id: int
    username: str
    role: str


@dataclass(frozen=True)
class Laptop:
    id: int
    establishment_id: int
    label: str
    room: str


@dataclass(frozen=True)
class Visitor:
    id: int
    name: str
    date_of_birth: str
    identity_verified: bool


@dataclass(frozen=True)
class Contact:
    id: int
    prisoner_id: int
    visitor_id: int
    status: str
    approved_by: int | None
    approved_at: float
    revoked_by: int | None
    revoked_at: float | None


@dataclass(frozen=True)
class Admission:
    booking_id: int
    establishment_id: int
    call_type: str  # "social" | "legal"
    starts_at: float
    ends_at: float
    role: str
    participant: str
    display_name: str
    approved_faces: int  # family leg: visitors on the booking; prison: 1; watcher: 0
    policy: EstablishmentPolicy


class StoreError(Exception):
    """A refused request. ``code`` is stable; the API maps it to an HTTP status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AdmissionRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def month_bounds(ts: float) -> tuple[float, float]:
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    start = dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC)
    nxt = dt.datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=dt.UTC)
    return start.timestamp(), nxt.timestamp()


def age_on(date_of_birth: str, ts: float) -> int:
    born = dt.date.fromisoformat(date_of_birth)
    on = dt.datetime.fromtimestamp(ts, dt.UTC).date()
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


# --------------------------------------------------------------------------- the store


class Store:
    """The records. Open with ``Store.open(path)``; use from one thread (the event loop)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._db = conn

    @property
    def connection(self) -> sqlite3.Connection:
        """For modules that keep their own tables in this database (audit, recordings)."""
        return self._db

    # ---- lifecycle ------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Store:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=0.5)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=500")
        store = cls(conn)
        store._migrate()
        return store

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        db = self._db
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT (datetime('now')))"
        )
        for version, script in enumerate(MIGRATIONS, start=1):
            row = db.execute("SELECT 1 FROM schema_version WHERE version = ?", (version,))
            if row.fetchone():
                continue
            try:
                # executescript runs the whole script; BEGIN/COMMIT make it one transaction.
                db.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\n;"
                    f"INSERT INTO schema_version (version) VALUES ({version});\nCOMMIT;"
                )
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            log.info("store schema migrated to version %d", version)

    def schema_version(self) -> int:
        row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def _event(self, db, booking_id: int, now: float, actor: str, event: str, detail="") -> None:
        db.execute(
            "INSERT INTO booking_events (booking_id, at, actor, event, detail)"
            " VALUES (?, ?, ?, ?, ?)",
            (booking_id, now, actor, event, detail),
        )

    # ---- establishments and people --------------------------------------------------

    def create_establishment(self, name: str, now: float, **policy: object) -> int:
        allowed = policy.pop("allowed_call_minutes", (30, 60))
        fields = {
            "call_minutes": 30,
            "monthly_allowance_minutes": 60,
            "max_visitors": 4,
            "min_main_visitor_age": 18,
            "record_social": 1,
            "retention_days": 90,
            "staff_must_resume": 0,
            "is_demo": 0,
        }
        unknown = set(policy) - set(fields)
        if unknown:
            raise TypeError(f"unknown policy fields: {sorted(unknown)}")
        fields.update({k: int(v) for k, v in policy.items()})  # type: ignore[call-overload]
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        with self._tx() as db:
            cur = db.execute(
                f"INSERT INTO establishments (name, allowed_call_minutes, created_at, {cols})"
                f" VALUES (?, ?, ?, {marks})",
                (name, ",".join(str(int(m)) for m in allowed), now, *fields.values()),
            )
            return int(cur.lastrowid)

    def establishment_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM establishments").fetchone()[0])

    def find_establishment(self, name: str) -> int | None:
        row = self._db.execute("SELECT id FROM establishments WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def policy(self, establishment_id: int) -> EstablishmentPolicy:
        r = self._db.execute(
            "SELECT e.*, (SELECT COUNT(*) FROM laptops l WHERE l.establishment_id = e.id"
            " AND l.active) AS capacity FROM establishments e WHERE e.id = ?",
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
        )

    def add_laptop(self, establishment_id: int, label: str, room: str = "") -> tuple[int, str]:
        """Returns (laptop id, credential secret); only the secret's hash is kept."""
        secret = auth.new_secret()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO laptops (establishment_id, label, room, secret_hash)"
                " VALUES (?, ?, ?, ?)",
                (establishment_id, label, room, auth.hash_secret(secret)),
            )
            return int(cur.lastrowid), secret

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
            "SELECT * FROM laptops WHERE id = ? AND active", (laptop_id,)
        ).fetchone()
        if not auth.secret_matches(r["secret_hash"] if r else None, secret):
            return None
        return Laptop(r["id"], r["establishment_id"], r["label"], r["room"])

    def laptops(self, establishment_id: int) -> list[Laptop]:
        rows = self._db.execute(
            "SELECT * FROM laptops WHERE establishment_id = ? AND active ORDER BY id",
            (establishment_id,),
        )
        return [Laptop(r["id"], r["establishment_id"], r["label"], r["room"]) for r in rows]

    def add_prisoner(
        self, establishment_id: int, number: str, name: str, eligible: bool = True
    ) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO prisoners (establishment_id, number, name, video_call_eligible)"
                " VALUES (?, ?, ?, ?)",
                (establishment_id, number, name, int(eligible)),
            )
            return int(cur.lastrowid)

    def set_prisoner_eligible(self, prisoner_id: int, eligible: bool) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE prisoners SET video_call_eligible = ? WHERE id = ?",
                (int(eligible), prisoner_id),
            )

    def prisoner(self, prisoner_id: int) -> sqlite3.Row | None:
        return self._db.execute("SELECT * FROM prisoners WHERE id = ?", (prisoner_id,)).fetchone()

    def prisoner_by_number(self, number: str) -> sqlite3.Row | None:
        return self._db.execute("SELECT * FROM prisoners WHERE number = ?", (number,)).fetchone()

    def prisoners(self, establishment_id: int) -> list[sqlite3.Row]:
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
                " created_at) VALUES (?, ?, ?, ?, ?)",
                (name, date_of_birth, int(identity_verified), auth.hash_secret(secret), now),
            )
            return int(cur.lastrowid), secret

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

    # ---- staff ---------------------------------------------------------------------

    def add_staff(self, establishment_id: int, username: str, password: str, role: str) -> int:
        if role not in STAFF_ROLES:
            raise StoreError("bad_role", "role must be officer or admin")
        pw_hash = auth.hash_password(password)  # slow: outside the transaction
        try:
            with self._tx() as db:
                cur = db.execute(
                    "INSERT INTO staff (establishment_id, username, password_hash, role)"
                    " VALUES (?, ?, ?, ?)",
                    (establishment_id, username, pw_hash, role),
                )
                return int(cur.lastrowid)
        except sqlite3.IntegrityError:
            raise StoreError("username_taken", "that username exists") from None

    def set_staff_password(self, staff_id: int, password: str) -> None:
        pw_hash = auth.hash_password(password)
        with self._tx() as db:
            db.execute("UPDATE staff SET password_hash = ? WHERE id = ?", (pw_hash, staff_id))
            db.execute("DELETE FROM staff_sessions WHERE staff_id = ?", (staff_id,))

    def staff_by_username(self, username: str) -> Staff | None:
        r = self._db.execute(
            "SELECT * FROM staff WHERE username = ? AND active", (username,)
        ).fetchone()
        return None if r is None else Staff(r["id"], r["establishment_id"], r["username"], r["role"])

    def staff_password_hash(self, username: str) -> tuple[Staff | None, str | None]:
        r = self._db.execute(
            "SELECT * FROM staff WHERE username = ? AND active", (username,)
        ).fetchone()
        if r is None:
            return None, None
        return Staff(r["id"], r["establishment_id"], r["username"], r["role"]), r["password_hash"]

    def check_staff_password(self, username: str, password: str) -> Staff | None:
        """Argon2 verification (~50 ms of CPU): the API runs this in a thread."""
        staff, pw_hash = self.staff_password_hash(username)
        return staff if auth.verify_password(pw_hash, password) else None

    def create_session(self, staff_id: int, now: float) -> str:
        token = auth.new_secret()
        with self._tx() as db:
            db.execute("DELETE FROM staff_sessions WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT INTO staff_sessions (token_hash, staff_id, created_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (auth.hash_secret(token), staff_id, now, now + SESSION_IDLE_S),
            )
        return token

    def session_staff(self, token: str, now: float) -> Staff | None:
        """The staff member behind a session cookie; slides the idle expiry."""
        h = auth.hash_secret(token)
        r = self._db.execute(
            "SELECT s.*, ss.created_at AS s_created FROM staff_sessions ss"
            " JOIN staff s ON s.id = ss.staff_id"
            " WHERE ss.token_hash = ? AND ss.expires_at > ? AND s.active",
            (h, now),
        ).fetchone()
        if r is None:
            return None
        new_exp = min(now + SESSION_IDLE_S, r["s_created"] + SESSION_MAX_S)
        with self._tx() as db:
            db.execute(
                "UPDATE staff_sessions SET expires_at = ? WHERE token_hash = ?", (new_exp, h)
            )
        return Staff(r["id"], r["establishment_id"], r["username"], r["role"])

    def delete_session(self, token: str) -> None:
        with self._tx() as db:
            db.execute(
                "DELETE FROM staff_sessions WHERE token_hash = ?", (auth.hash_secret(token),)
            )

    # ---- approvals ------------------------------------------------------------------

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

    # ---- bookings -------------------------------------------------------------------

    def booking(self, booking_id: int) -> Booking | None:
        r = self._db.execute(
            "SELECT b.*, p.number AS prisoner_number FROM bookings b"
            " JOIN prisoners p ON p.id = b.prisoner_id WHERE b.id = ?",
            (booking_id,),
        ).fetchone()
        return None if r is None else self._booking(r)

    def _booking(self, r: sqlite3.Row) -> Booking:
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
        """Minutes of social calls approved or completed in the UTC calendar month of
        ``month_of`` (failed calls give their minutes back; cancelled/declined never count)."""
        start, end = month_bounds(month_of)
        r = self._db.execute(
            "SELECT COALESCE(SUM(ends_at - starts_at), 0) FROM bookings WHERE prisoner_id = ?"
            " AND call_type = 'social' AND status IN ('approved', 'completed')"
            " AND starts_at >= ? AND starts_at < ? AND id != ?",
            (prisoner_id, start, end, exclude or 0),
        ).fetchone()
        return round(r[0] / 60)

    def _free_laptop(
        self, db, establishment_id: int, starts_at: float, ends_at: float, exclude: int,
        prefer: int | None = None,
    ) -> int | None:
        rows = db.execute(
            "SELECT l.id FROM laptops l WHERE l.establishment_id = ? AND l.active"
            " AND NOT EXISTS (SELECT 1 FROM bookings b WHERE b.laptop_id = l.id"
            " AND b.status = 'approved' AND b.id != ? AND b.starts_at < ? AND b.ends_at > ?)"
            " ORDER BY l.id",
            (establishment_id, exclude, ends_at, starts_at),
        ).fetchall()
        free = [int(r[0]) for r in rows]
        if prefer is not None and prefer in free:
            return prefer
        return free[0] if free else None

    def _check(
        self,
        db,
        *,
        prisoner: sqlite3.Row,
        call_type: str,
        starts_at: float,
        ends_at: float,
        main_visitor_id: int,
        visitor_ids: Sequence[int],
        exclude: int,
        approving: bool,
    ) -> EstablishmentPolicy:
        """Every booking rule; raises StoreError with the first rule broken."""
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
        if call_type == "social":
            used = self.allowance_used(prisoner["id"], starts_at, exclude=exclude)
            if used + minutes > policy.monthly_allowance_minutes:
                raise StoreError(
                    "allowance_exceeded",
                    f"{used} of {policy.monthly_allowance_minutes} minutes this month used",
                )
        if self._free_laptop(db, policy.establishment_id, starts_at, ends_at, exclude) is None:
            raise StoreError("slot_full", "every room is booked at that time")
        return policy

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
                exclude=0, approving=False,
            )
            cur = db.execute(
                "INSERT INTO bookings (establishment_id, prisoner_id, call_type, starts_at,"
                " ends_at, status, requested_by, main_visitor_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, 'requested', ?, ?, ?)",
                (prisoner["establishment_id"], prisoner_id, call_type, starts_at, ends_at,
                 requested_by, main_visitor_id, now),
            )
            bid = int(cur.lastrowid)
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
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (est[0], prisoner_id, call_type, starts_at, ends_at, status, requested_by,
                 main_visitor_id, laptop_id, now),
            )
            bid = int(cur.lastrowid)
            db.executemany(
                "INSERT INTO booking_visitors (booking_id, visitor_id) VALUES (?, ?)",
                [(bid, v) for v in party],
            )
            self._event(db, bid, now, "system", "created", status)
        return bid

    def _load_for_update(self, db, booking_id: int) -> sqlite3.Row:
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
            self._check(
                db, prisoner=prisoner, call_type=b["call_type"], starts_at=b["starts_at"],
                ends_at=b["ends_at"], main_visitor_id=b["main_visitor_id"],
                visitor_ids=self._party(db, booking_id), exclude=booking_id, approving=True,
            )
            lid = self._free_laptop(
                db, b["establishment_id"], b["starts_at"], b["ends_at"], booking_id, laptop_id
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

    def cancel_booking(self, booking_id: int, actor: str, now: float, reason: str = "") -> Booking:
        with self._tx() as db:
            b = self._load_for_update(db, booking_id)
            if b["status"] not in ("requested", "approved") or b["ends_at"] <= now:
                raise StoreError("booking_not_active", f"the booking is {b['status']}")
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
            self._check(
                db, prisoner=prisoner, call_type=b["call_type"], starts_at=starts_at,
                ends_at=ends_at, main_visitor_id=b["main_visitor_id"],
                visitor_ids=self._party(db, booking_id), exclude=booking_id,
                approving=keep_approval,
            )
            status, lid = "requested", None
            if keep_approval and b["status"] == "approved":
                status = "approved"
                lid = self._free_laptop(
                    db, b["establishment_id"], starts_at, ends_at, booking_id, b["laptop_id"]
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

    # ---- admission ------------------------------------------------------------------

    def admit(self, claims: JoinClaims, now: float) -> Admission:
        """Re-check a (signature-verified) token against the live records. Raises
        AdmissionRefused with a stable code; every refusal is logged (never the token)."""
        try:
            return self._admit(claims, now)
        except AdmissionRefused as exc:
            log.warning(
                "admission refused code=%s booking=%s participant=%s role=%s",
                exc.code, claims.booking_id, claims.participant, claims.role,
            )
            raise

    def _admit(self, claims: JoinClaims, now: float) -> Admission:
        db = self._db
        kind, _, ident = claims.participant.partition(":")
        expected_kind = {"family": "visitor", "prison": "laptop", "watcher": "staff"}.get(
            claims.role
        )
        if expected_kind is None or kind != expected_kind or not ident.isdigit():
            raise AdmissionRefused("token_malformed", "participant does not match role")
        pid = int(ident)
        r = db.execute(
            "SELECT b.*, p.name AS prisoner_name, p.video_call_eligible FROM bookings b"
            " JOIN prisoners p ON p.id = b.prisoner_id WHERE b.id = ?",
            (claims.booking_id,),
        ).fetchone()
        if r is None:
            raise AdmissionRefused("booking_not_found", "no such booking")
        party = self._party(db, r["id"])
        if kind == "visitor":
            if pid not in party:
                raise AdmissionRefused("wrong_booking", "this visitor is not on that booking")
            c = db.execute(
                "SELECT c.status, v.name, v.identity_verified FROM visitors v"
                " LEFT JOIN approved_contacts c ON c.visitor_id = v.id AND c.prisoner_id = ?"
                " WHERE v.id = ?",
                (r["prisoner_id"], pid),
            ).fetchone()
            if c is None or c["status"] != "approved":
                raise AdmissionRefused("approval_revoked", "this visitor is no longer approved")
            if not c["identity_verified"]:
                raise AdmissionRefused("visitor_not_verified", "identity not verified")
            display = c["name"]
            faces = len(party)
        elif kind == "laptop":
            lap = db.execute("SELECT * FROM laptops WHERE id = ?", (pid,)).fetchone()
            if lap is None or r["laptop_id"] != pid:
                raise AdmissionRefused("wrong_booking", "that booking is not on this laptop")
            if not lap["active"]:
                raise AdmissionRefused("laptop_disabled", "this laptop is disabled")
            display = r["prisoner_name"]
            faces = 1
        else:
            st = db.execute("SELECT * FROM staff WHERE id = ?", (pid,)).fetchone()
            if st is None or not st["active"] or st["establishment_id"] != r["establishment_id"]:
                raise AdmissionRefused("wrong_booking", "that call is not in your establishment")
            display = st["username"]
            faces = 0
        status = r["status"]
        if status == "cancelled":
            raise AdmissionRefused("booking_cancelled", "this call was cancelled")
        if status == "declined":
            raise AdmissionRefused("booking_declined", "this call was declined")
        if status == "requested":
            raise AdmissionRefused("booking_not_approved", "this call is not approved yet")
        if status in ("completed", "failed"):
            raise AdmissionRefused("call_ended", "this call has ended")
        if kind == "laptop" and not r["video_call_eligible"]:
            raise AdmissionRefused("prisoner_not_eligible", "video calls are suspended")
        if abs(claims.exp - r["ends_at"]) > 1.0 or claims.nbf >= r["starts_at"] + 1.0:
            raise AdmissionRefused("token_stale", "the call was moved; get a new link")
        if now < claims.nbf:
            raise AdmissionRefused("token_not_yet_valid", "the waiting room is not open yet")
        if now >= claims.exp or now >= r["ends_at"]:
            raise AdmissionRefused("token_expired", "the call's slot has ended")
        return Admission(
            booking_id=r["id"],
            establishment_id=r["establishment_id"],
            call_type=r["call_type"],
            starts_at=r["starts_at"],
            ends_at=r["ends_at"],
            role=claims.role,
            participant=claims.participant,
            display_name=display,
            approved_faces=faces,
            policy=self.policy(r["establishment_id"]),
        )


def _contact(r: sqlite3.Row) -> Contact:
    return Contact(
        id=r["id"],
        prisoner_id=r["prisoner_id"],
        visitor_id=r["visitor_id"],
        status=r["status"],
        approved_by=r["approved_by"],
        approved_at=r["approved_at"],
        revoked_by=r["revoked_by"],
        revoked_at=r["revoked_at"],
    )


def _actor(staff_id: int | None) -> str:
    return "system" if staff_id is None else f"staff:{staff_id}"
