"""Staff accounts and their login sessions."""

from __future__ import annotations

import hmac
import logging

from relay import auth
from relay.records.store.base import RecordsBase
from relay.records.store.engine import IntegrityError
from relay.records.store.sessions import STAFF_SESSIONS
from relay.records.store.values import STAFF_ROLES, Staff, StoreError

log = logging.getLogger("relay.records.store")


class StaffRecords(RecordsBase):
    def add_staff(self, establishment_id: int, username: str, password: str, role: str) -> int:
        if role not in STAFF_ROLES:
            raise StoreError("bad_role", "role must be officer or admin")
        pw_hash = auth.hash_password(password)  # slow: outside the transaction
        try:
            with self._tx() as db:
                cur = db.execute(
                    "INSERT INTO staff (establishment_id, username, password_hash, role)"
                    " VALUES (?, ?, ?, ?) RETURNING id",
                    (establishment_id, username, pw_hash, role),
                )
                return int(cur.fetchone()[0])
        except IntegrityError:
            raise StoreError("username_taken", "that username exists") from None

    def set_staff_password(self, staff_id: int, password: str) -> None:
        pw_hash = auth.hash_password(password)
        with self._tx() as db:
            db.execute("UPDATE staff SET password_hash = ? WHERE id = ?", (pw_hash, staff_id))
            db.execute("DELETE FROM staff_sessions WHERE staff_id = ?", (staff_id,))

    def staff_by_username(self, username: str) -> Staff | None:
        r = self._db.execute(
            "SELECT * FROM staff WHERE username = ? AND active = 1", (username,)
        ).fetchone()
        return None if r is None else Staff(r["id"], r["establishment_id"], r["username"], r["role"])

    def staff_password_hash(self, username: str) -> tuple[Staff | None, str | None]:
        r = self._db.execute(
            "SELECT * FROM staff WHERE username = ? AND active = 1", (username,)
        ).fetchone()
        if r is None:
            return None, None
        return Staff(r["id"], r["establishment_id"], r["username"], r["role"]), r["password_hash"]

    def check_staff_password(self, username: str, password: str) -> Staff | None:
        """Argon2 verification (~50 ms of CPU): the API runs this in a thread."""
        staff, pw_hash = self.staff_password_hash(username)
        return staff if auth.verify_password(pw_hash, password) else None

    def create_session(self, staff_id: int, now: float) -> str:
        return STAFF_SESSIONS.create(self._db, staff_id, now)

    def session_staff(self, token: str, now: float) -> Staff | None:
        """The staff member behind a session cookie; slides the idle expiry."""
        sid = STAFF_SESSIONS.owner_of(self._db, token, now)
        if sid is None:
            return None
        r = self._db.execute("SELECT * FROM staff WHERE id = ? AND active = 1", (sid,)).fetchone()
        return None if r is None else Staff(r["id"], r["establishment_id"], r["username"], r["role"])

    def delete_session(self, token: str) -> None:
        STAFF_SESSIONS.delete(self._db, token)

    def session_ref_live(self, staff_id: int, ref: str) -> bool:
        """Whether the staff session named by ``ref`` (``auth.session_ref``) still exists:
        a watch token works only while the session that asked for it does (logout or a
        disabled account end it; an expired session, once purged)."""
        rows = self._db.execute(
            "SELECT ss.token_hash FROM staff_sessions ss JOIN staff s ON s.id = ss.staff_id"
            " WHERE ss.staff_id = ? AND s.active = 1",
            (staff_id,),
        ).fetchall()
        return any(
            hmac.compare_digest(auth.session_ref_of_hash(r["token_hash"]), ref) for r in rows
        )
