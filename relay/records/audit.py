"""A tamper-evident audit trail: every record carries the hash of the one before.

Joins, leaves, state changes, vision decisions, staff actions and recording accesses are
appended here. Editing or deleting any record breaks the chain at that point, which
``python -m relay.records.audit verify`` reports. A pause for an unapproved person keeps its evidence
frame (JPEG with the boxes drawn) in ``audit_evidence``, linked from the record; the evidence
hash is part of the record's hash, so swapping the picture is detected too.

The head (last id and hash) is also kept in its own row, so cutting records off the end is
detected; an operator who wants protection against someone rewriting the whole file can ship
the head hash elsewhere (it is logged on every verify).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay.records.store.base import transaction
from relay.records.store.engine import Database, describe, is_url, open_database

GENESIS = "0" * 64  # the head of an empty trail (migration 2 in relay/records/store/schema.py)


def _digest(prev: str, rid: int, at: float, booking_id: int | None, establishment_id: int | None,
            kind: str, actor: str, detail: str, evidence_sha: str | None) -> str:
    body = json.dumps(
        [prev, rid, repr(at), booking_id, establishment_id, kind, actor, detail, evidence_sha],
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class Evidence:
    jpeg: bytes | None
    boxes: list[Any]


class AuditLog:
    """Appends to the chain; one writer (the relay's event loop), each append a transaction."""

    def __init__(self, conn: Database) -> None:
        self.conn = conn

    def append(
        self,
        kind: str,
        detail: dict[str, Any],
        *,
        booking_id: int | None = None,
        establishment_id: int | None = None,
        actor: str = "relay",
        evidence: Evidence | None = None,
        at: float | None = None,
    ) -> int:
        at = time.time() if at is None else at
        text = json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)
        c = self.conn
        with transaction(c):
            last_id, last_hash = c.execute(
                "SELECT last_id, last_hash FROM audit_head WHERE one = 1"
            ).fetchone()
            evidence_id = evidence_sha = None
            if evidence is not None:
                evidence_sha = hashlib.sha256(evidence.jpeg or b"").hexdigest()
                evidence_id = c.execute(
                    "INSERT INTO audit_evidence (booking_id, at, jpeg, boxes, sha256)"
                    " VALUES (?, ?, ?, ?, ?) RETURNING id",
                    (booking_id, at, evidence.jpeg, json.dumps(evidence.boxes), evidence_sha),
                ).fetchone()[0]
            rid = last_id + 1
            digest = _digest(last_hash, rid, at, booking_id, establishment_id, kind, actor, text,
                             evidence_sha)
            c.execute(
                "INSERT INTO audit (id, at, booking_id, establishment_id, kind, actor, detail,"
                " evidence_id, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rid, at, booking_id, establishment_id, kind, actor, text, evidence_id,
                 last_hash, digest),
            )
            c.execute("UPDATE audit_head SET last_id = ?, last_hash = ? WHERE one = 1",
                      (rid, digest))
        return rid

    def for_booking(self, booking_id: int, limit: int = 500) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT id, at, kind, actor, detail, evidence_id FROM audit WHERE booking_id = ?"
            " ORDER BY id LIMIT ?",
            (booking_id, limit),
        ).fetchall()
        return [
            {"id": r[0], "at": r[1], "kind": r[2], "actor": r[3], "detail": json.loads(r[4]),
             "evidence_id": r[5]}
            for r in rows
        ]

    def evidence(self, evidence_id: int) -> tuple[int | None, bytes | None, list[Any]] | None:
        row = self.conn.execute(
            "SELECT booking_id, jpeg, boxes FROM audit_evidence WHERE id = ?", (evidence_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1], json.loads(row[2]))


@dataclass(frozen=True)
class Verdict:
    ok: bool
    records: int
    head_hash: str
    problem: str = ""


def verify(conn: Database) -> Verdict:
    """Walk the chain from the start; the first record that does not add up is reported."""
    prev, expected_id, count = GENESIS, 1, 0
    rows = conn.execute(
        "SELECT a.id, a.at, a.booking_id, a.establishment_id, a.kind, a.actor, a.detail,"
        " a.prev_hash, a.hash, a.evidence_id, e.jpeg, e.sha256"
        " FROM audit a LEFT JOIN audit_evidence e ON e.id = a.evidence_id ORDER BY a.id"
    )
    for (rid, at, bid, eid, kind, actor, detail, prev_hash, digest, ev_id, jpeg, ev_sha) in rows:
        if rid != expected_id:
            return Verdict(False, count, prev, f"record {expected_id} is missing (found {rid})")
        if prev_hash != prev:
            return Verdict(False, count, prev, f"record {rid} does not follow record {rid - 1}")
        if ev_id is not None and (ev_sha is None or hashlib.sha256(jpeg or b"").hexdigest() != ev_sha):
            return Verdict(False, count, prev, f"record {rid}: its evidence was changed or removed")
        if _digest(prev, rid, at, bid, eid, kind, actor, detail, ev_sha) != digest:
            return Verdict(False, count, prev, f"record {rid} was altered")
        prev, expected_id, count = digest, rid + 1, count + 1
    head = conn.execute("SELECT last_id, last_hash FROM audit_head WHERE one = 1").fetchone()
    if head is None or head[0] != count or head[1] != prev:
        return Verdict(False, count, prev, "records were removed from the end of the trail")
    return Verdict(True, count, prev)


def main(argv: list[str] | None = None) -> int:
    from relay.config import Config

    parser = argparse.ArgumentParser(prog="python -m relay.records.audit")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="check the audit chain; exit 1 if it was tampered with")
    v.add_argument("--db", default=None,
                   help="SQLite file or postgresql:// URL (default: the config's database)")
    args = parser.parse_args(argv)
    db: str | Path = args.db or Config.from_env().database_target
    if not is_url(db):
        db = Path(db)
        if not db.exists():
            print(f"no database at {db}", file=sys.stderr)
            return 2
    try:
        conn = open_database(db, read_only=True)  # a verify never writes
    except ConnectionError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"verifying {describe(db)}", file=sys.stderr)
    try:
        verdict = verify(conn)
    finally:
        conn.close()
    if verdict.ok:
        print(f"audit trail intact: {verdict.records} records, head {verdict.head_hash}")
        return 0
    print(f"AUDIT TRAIL BROKEN after {verdict.records} good records: {verdict.problem}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
