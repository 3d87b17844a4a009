"""The call_runtime table: what a restarted relay needs to carry a call on.

One row per booking: the call's state, its pause reasons and who it waits for (JSON lists),
its end time, a heartbeat and when it ended. relay/calls/runtime.py decides what to do with
them; this module only reads and writes them (the table is migration 3 in
relay/records/store/schema.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from relay.records.store.base import transaction
from relay.records.store.engine import Database


@dataclass(frozen=True)
class SavedCall:
    """A call's row as a previous process left it."""

    pause_reasons: set[str]
    awaiting_staff: set[str]
    heartbeat_at: float
    ended_at: float | None


@dataclass(frozen=True)
class OpenCall:
    """A call that was not marked ended (its process stopped while it ran)."""

    booking_id: int
    ends_at: float
    heartbeat_at: float


class CallStateRecords:
    """Reads and writes call_runtime on the store's connection (event loop only)."""

    def __init__(self, conn: Database) -> None:
        self.conn = conn

    def load(self, booking_id: int) -> SavedCall | None:
        row = self.conn.execute(
            "SELECT pause_reasons, awaiting_staff, heartbeat_at, ended_at FROM call_runtime"
            " WHERE booking_id = ?", (booking_id,)
        ).fetchone()
        if row is None:
            return None
        return SavedCall(set(json.loads(row[0])), set(json.loads(row[1])), row[2], row[3])

    def save(self, booking_id: int, state: str, pause_reasons: Iterable[str],
             awaiting_staff: Iterable[str], ends_at: float, now: float,
             ended_at: float | None) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO call_runtime (booking_id, state, pause_reasons, awaiting_staff,"
                " ends_at, heartbeat_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(booking_id) DO UPDATE SET state = excluded.state,"
                " pause_reasons = excluded.pause_reasons, awaiting_staff = excluded.awaiting_staff,"
                " heartbeat_at = excluded.heartbeat_at, ended_at = excluded.ended_at",
                (booking_id, state, json.dumps(sorted(pause_reasons)),
                 json.dumps(sorted(awaiting_staff)), ends_at, now, ended_at),
            )

    def heartbeat(self, booking_ids: Iterable[int], now: float) -> None:
        with transaction(self.conn):
            self.conn.executemany(
                "UPDATE call_runtime SET heartbeat_at = ? WHERE booking_id = ?",
                [(now, bid) for bid in booking_ids],
            )

    def open_calls(self) -> list[OpenCall]:
        rows = self.conn.execute(
            "SELECT booking_id, ends_at, heartbeat_at FROM call_runtime WHERE ended_at IS NULL"
        ).fetchall()
        return [OpenCall(int(r[0]), r[1], r[2]) for r in rows]

    def running(self, booking_ids: Iterable[int]) -> dict[int, tuple[str, set[str], set[str]]]:
        """(state, pause reasons, awaiting staff) of those calls not marked ended: what a
        node's staff API shows of calls another node runs (docs/multinode.md)."""
        ids = [int(b) for b in booking_ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(
            "SELECT booking_id, state, pause_reasons, awaiting_staff FROM call_runtime"
            f" WHERE ended_at IS NULL AND booking_id IN ({marks})", ids
        ).fetchall()
        return {int(r[0]): (str(r[1]), set(json.loads(r[2])), set(json.loads(r[3])))
                for r in rows}

    def mark_ended(self, booking_id: int, now: float) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE call_runtime SET ended_at = ?, state = 'ended' WHERE booking_id = ?",
                (now, booking_id),
            )
