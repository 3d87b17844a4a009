"""Family accounts: an email and password for the person behind a visitor record, their
sessions (the staff mechanism, relay/records/store/sessions.py), one-use email tokens, and
the household of under-18s they add.

Passwords are argon2id hashes made by relay/auth.py (the one owner of password hashing);
callers hash outside the store, in a thread, because argon2 is slow on purpose. Email tokens
(verification, reset) are random, short-lived, single-use and stored as SHA-256 only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay import auth
from relay.records.store.base import RecordsBase
from relay.records.store.engine import Row
from relay.records.store.sessions import ACCOUNT_SESSIONS
from relay.records.store.values import StoreError, Visitor, age_on

ADULT_AGE = 18
"""Household members added by an account holder are children: under this age."""


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    email_verified: bool
    visitor_id: int
    language: str


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _account(r: Row) -> Account:
    return Account(r["id"], r["email"], bool(r["email_verified"]), r["visitor_id"], r["language"])


class AccountRecords(RecordsBase):
    def register_account(
        self,
        email: str,
        password_hash: str,
        name: str,
        date_of_birth: str,
        language: str,
        now: float,
    ) -> int | None:
        """A new, unverified account and its holder's visitor record (identity unverified
        until vetting). None when the email is taken: the caller must not say so."""
        email = normalise_email(email)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM accounts WHERE email = ?", (email,)).fetchone():
                return None
            cur = db.execute(
                "INSERT INTO visitors (name, date_of_birth, identity_verified, secret_hash,"
                " created_at) VALUES (?, ?, 0, ?, ?) RETURNING id",
                (name, date_of_birth, auth.hash_secret(auth.new_secret()), now),
            )
            cur = db.execute(
                "INSERT INTO accounts (email, password_hash, visitor_id, language, created_at)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                (email, password_hash, int(cur.fetchone()[0]), language, now),
            )
            return int(cur.fetchone()[0])

    def add_verified_account(
        self, email: str, password_hash: str, visitor_id: int, now: float
    ) -> int:
        """An account for an existing, vetted visitor (the demo; staff-registered visitors
        who are given a sign-in later)."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO accounts (email, password_hash, email_verified, visitor_id,"
                " language, created_at) VALUES (?, ?, 1, ?, 'en', ?) RETURNING id",
                (normalise_email(email), password_hash, visitor_id, now),
            )
            return int(cur.fetchone()[0])

    def account(self, account_id: int) -> Account | None:
        r = self._db.execute(
            "SELECT * FROM accounts WHERE id = ? AND closed_at IS NULL", (account_id,)
        ).fetchone()
        return None if r is None else _account(r)

    def account_by_email(self, email: str) -> tuple[Account | None, str | None]:
        """The account and its password hash (None, None when there is none)."""
        r = self._db.execute(
            "SELECT * FROM accounts WHERE email = ? AND closed_at IS NULL",
            (normalise_email(email),),
        ).fetchone()
        return (None, None) if r is None else (_account(r), r["password_hash"])

    def account_for_visitor(self, visitor_id: int) -> Account | None:
        """The account a visitor belongs to: their own, or the one whose household they are in."""
        r = self._db.execute(
            "SELECT a.* FROM accounts a WHERE a.closed_at IS NULL AND (a.visitor_id = ?"
            " OR a.id = (SELECT account_id FROM household_members WHERE visitor_id = ?))"
            " ORDER BY a.visitor_id = ? DESC LIMIT 1",
            (visitor_id, visitor_id, visitor_id),
        ).fetchone()
        return None if r is None else _account(r)

    def set_language(self, account_id: int, language: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE accounts SET language = ? WHERE id = ?", (language, account_id))

    # ---- one-use email tokens -----------------------------------------------------------

    def issue_account_token(self, account_id: int, purpose: str, now: float, ttl_s: float) -> str:
        token = auth.new_secret()
        with self._tx() as db:
            db.execute("DELETE FROM account_tokens WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT INTO account_tokens (token_hash, account_id, purpose, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (auth.hash_secret(token), account_id, purpose, now + ttl_s),
            )
        return token

    def use_account_token(self, token: str, purpose: str, now: float) -> int | None:
        """The account a live, unused token of ``purpose`` belongs to; the token is spent."""
        h = auth.hash_secret(token)
        with self._tx() as db:
            r = db.execute(
                "SELECT account_id FROM account_tokens WHERE token_hash = ? AND purpose = ?"
                " AND used_at IS NULL AND expires_at > ?",
                (h, purpose, now),
            ).fetchone()
            if r is None:
                return None
            db.execute("UPDATE account_tokens SET used_at = ? WHERE token_hash = ?", (now, h))
            return int(r[0])

    def mark_email_verified(self, account_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE accounts SET email_verified = 1 WHERE id = ?", (account_id,))

    def set_account_password(self, account_id: int, password_hash: str) -> None:
        """A new password signs the account out everywhere and spends its reset tokens."""
        with self._tx() as db:
            db.execute(
                "UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, account_id)
            )
            db.execute(
                "DELETE FROM account_tokens WHERE account_id = ? AND purpose = 'reset'",
                (account_id,),
            )
            ACCOUNT_SESSIONS.delete_all(db, account_id)

    # ---- sessions -----------------------------------------------------------------------

    def create_account_session(self, account_id: int, now: float) -> str:
        return ACCOUNT_SESSIONS.create(self._db, account_id, now)

    def session_account(self, token: str, now: float) -> Account | None:
        aid = ACCOUNT_SESSIONS.owner_of(self._db, token, now)
        return None if aid is None else self.account(aid)

    def delete_account_session(self, token: str) -> None:
        ACCOUNT_SESSIONS.delete(self._db, token)

    def sign_out_everywhere(self, account_id: int) -> None:
        ACCOUNT_SESSIONS.delete_all(self._db, account_id)

    # ---- household ----------------------------------------------------------------------

    def add_household_child(
        self, account_id: int, name: str, date_of_birth: str, relationship: str, now: float
    ) -> int:
        """An under-18 the account holder brings to calls: a visitor linked to the account."""
        if age_on(date_of_birth, now) >= ADULT_AGE:
            raise StoreError(
                "not_a_child",
                "only children under 18 are added to a household; "
                "an adult registers an account of their own",
            )
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO visitors (name, date_of_birth, identity_verified, secret_hash,"
                " created_at) VALUES (?, ?, 0, ?, ?) RETURNING id",
                (name, date_of_birth, auth.hash_secret(auth.new_secret()), now),
            )
            vid = int(cur.fetchone()[0])
            db.execute(
                "INSERT INTO household_members (visitor_id, account_id, relationship, added_at)"
                " VALUES (?, ?, ?, ?)",
                (vid, account_id, relationship, now),
            )
            return vid

    def household(self, account_id: int) -> list[tuple[Visitor, str]]:
        """The account's children with their relationship to the holder."""
        rows = self._db.execute(
            "SELECT v.*, h.relationship FROM household_members h"
            " JOIN visitors v ON v.id = h.visitor_id WHERE h.account_id = ? ORDER BY v.id",
            (account_id,),
        ).fetchall()
        return [
            (
                Visitor(r["id"], r["name"], r["date_of_birth"], bool(r["identity_verified"])),
                r["relationship"],
            )
            for r in rows
        ]

    def linked_visitors(self, account_id: int) -> set[int]:
        """Whom the account may bring on a call: its holder and the holder's children."""
        acc = self.account(account_id)
        if acc is None:
            return set()
        return {acc.visitor_id, *(v.id for v, _ in self.household(account_id))}

    def consent_to_join(self, visitor_id: int, for_visitor_id: int, now: float) -> None:
        """``visitor_id`` (an adult) agrees to be named on calls ``for_visitor_id`` books."""
        if visitor_id == for_visitor_id:
            return
        with self._tx() as db:
            db.execute(
                "INSERT INTO party_consents (visitor_id, for_visitor_id, consented_at)"
                " VALUES (?, ?, ?) ON CONFLICT (visitor_id, for_visitor_id) DO NOTHING",
                (visitor_id, for_visitor_id, now),
            )

    def withdraw_consent(self, visitor_id: int, for_visitor_id: int) -> None:
        with self._tx() as db:
            db.execute(
                "DELETE FROM party_consents WHERE visitor_id = ? AND for_visitor_id = ?",
                (visitor_id, for_visitor_id),
            )

    def companions(self, visitor_id: int) -> list[Visitor]:
        """Adults who agreed to come on ``visitor_id``'s calls."""
        rows = self._db.execute(
            "SELECT v.* FROM party_consents c JOIN visitors v ON v.id = c.visitor_id"
            " WHERE c.for_visitor_id = ? ORDER BY v.id",
            (visitor_id,),
        ).fetchall()
        return [
            Visitor(r["id"], r["name"], r["date_of_birth"], bool(r["identity_verified"]))
            for r in rows
        ]

    def family_party(
        self, caller_vid: int, main_visitor_id: int | None, visitor_ids: list[int]
    ) -> list[int]:
        """Who may be on a booking a family member requests: themselves (always the main
        visitor), the children of their household and adults who agreed to come. Anyone else is refused with the same
        answer whoever they are, so a request tells nothing of another person's vetting state
        or age. Another adult comes only once they have agreed (``consent_to_join``)."""
        if main_visitor_id not in (None, caller_vid):
            raise StoreError(
                "main_visitor_must_be_you", "you are the main visitor on a call you book"
            )
        acc = self.account_for_visitor(caller_vid)
        linked = {caller_vid, *(v.id for v in self.companions(caller_vid))}
        if acc is not None and acc.visitor_id == caller_vid:
            linked |= self.linked_visitors(acc.id)
        if any(v not in linked for v in visitor_ids):
            raise StoreError(
                "visitor_not_in_household", "you can only bring the children in your household"
            )
        return list(dict.fromkeys([caller_vid, *visitor_ids]))

    def family_contacts(self, visitor_ids: list[int]) -> list[dict[str, Any]]:
        """The approvals these visitors hold, with the prisoner's number and name."""
        if not visitor_ids:
            return []
        marks = ",".join("?" for _ in visitor_ids)
        rows = self._db.execute(
            "SELECT c.prisoner_id, p.number AS prisoner_number, p.name AS prisoner_name,"
            " c.visitor_id, c.status FROM approved_contacts c"
            f" JOIN prisoners p ON p.id = c.prisoner_id WHERE c.visitor_id IN ({marks})"
            " ORDER BY p.name, c.visitor_id",
            visitor_ids,
        ).fetchall()
        return [dict(r) for r in rows]

    # ---- data protection ----------------------------------------------------------------

    def account_export(self, account_id: int) -> dict[str, Any]:
        """What is held about the account holder and their household (their data export)."""
        acc = self.account(account_id)
        if acc is None:
            raise StoreError("account_not_found", "no such account")
        me = self._db.execute("SELECT * FROM visitors WHERE id = ?", (acc.visitor_id,)).fetchone()
        row = self._db.execute("SELECT created_at FROM accounts WHERE id = ?", (account_id,))
        people = [acc.visitor_id, *(v.id for v, _ in self.household(account_id))]
        marks = ",".join("?" for _ in people)
        contacts = self._db.execute(
            "SELECT c.visitor_id, c.status, c.approved_at, c.revoked_at, p.number, p.name"
            f" FROM approved_contacts c JOIN prisoners p ON p.id = c.prisoner_id"
            f" WHERE c.visitor_id IN ({marks}) ORDER BY c.id",
            people,
        ).fetchall()
        bookings = self._db.execute(
            "SELECT DISTINCT b.id, b.starts_at, b.ends_at, b.status, b.reason, p.number"
            " FROM bookings b JOIN booking_visitors bv ON bv.booking_id = b.id"
            f" JOIN prisoners p ON p.id = b.prisoner_id WHERE bv.visitor_id IN ({marks})"
            " ORDER BY b.starts_at",
            people,
        ).fetchall()
        return {
            "account": {
                "email": acc.email,
                "email_verified": acc.email_verified,
                "language": acc.language,
                "created_at": row.fetchone()[0],
            },
            "you": {
                "name": me["name"],
                "date_of_birth": me["date_of_birth"],
                "identity_verified": bool(me["identity_verified"]),
            },
            "household": [
                {"name": v.name, "date_of_birth": v.date_of_birth, "relationship": rel}
                for v, rel in self.household(account_id)
            ],
            "contacts": [dict(r) for r in contacts],
            "bookings": [dict(r) for r in bookings],
        }
