"""Login sessions, one mechanism for staff and family accounts.

A session id is 32 random bytes handed to the browser as an HttpOnly cookie; only its
SHA-256 is stored (relay/auth.py says why a plain hash is enough). A session ends after
``SESSION_IDLE_S`` without a request and in any case ``SESSION_MAX_S`` after it began.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay import auth
from relay.records.store.base import transaction
from relay.records.store.engine import Database
from relay.records.store.values import SESSION_IDLE_S, SESSION_MAX_S


@dataclass(frozen=True)
class SessionTable:
    """A table ``(token_hash, <owner>, created_at, expires_at)``; names are constants."""

    table: str
    owner: str

    def create(self, db: Database, owner_id: int, now: float) -> str:
        token = auth.new_secret()
        with transaction(db):
            db.execute(f"DELETE FROM {self.table} WHERE expires_at <= ?", (now,))
            db.execute(
                f"INSERT INTO {self.table} (token_hash, {self.owner}, created_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (auth.hash_secret(token), owner_id, now, now + SESSION_IDLE_S),
            )
        return token

    def owner_of(self, db: Database, token: str, now: float) -> int | None:
        """The owner id behind a live session; slides the idle expiry."""
        h = auth.hash_secret(token)
        r = db.execute(
            f"SELECT {self.owner}, created_at FROM {self.table}"
            " WHERE token_hash = ? AND expires_at > ?",
            (h, now),
        ).fetchone()
        if r is None:
            return None
        new_exp = min(now + SESSION_IDLE_S, r[1] + SESSION_MAX_S)
        with transaction(db):
            db.execute(f"UPDATE {self.table} SET expires_at = ? WHERE token_hash = ?", (new_exp, h))
        return int(r[0])

    def delete(self, db: Database, token: str) -> None:
        with transaction(db):
            db.execute(f"DELETE FROM {self.table} WHERE token_hash = ?", (auth.hash_secret(token),))

    def delete_all(self, db: Database, owner_id: int) -> None:
        """Sign out everywhere."""
        with transaction(db):
            db.execute(f"DELETE FROM {self.table} WHERE {self.owner} = ?", (owner_id,))


STAFF_SESSIONS = SessionTable("staff_sessions", "staff_id")
ACCOUNT_SESSIONS = SessionTable("account_sessions", "account_id")
