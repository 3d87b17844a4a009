"""The notification outbox: messages queued in the same database as the change they tell
of, sent later by relay/notify/sender.py (so a request never waits on a mail server).

``dedupe`` makes queueing idempotent: one email per (event, recipient), whoever queues it
and however often the feeder re-reads an event after a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from relay.records.store.base import RecordsBase
from relay.records.store.engine import Row


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    to_addr: str
    language: str
    template: str
    params: dict[str, Any]
    attempts: int


class OutboxRecords(RecordsBase):
    def enqueue_message(
        self,
        dedupe: str,
        to_addr: str,
        language: str,
        template: str,
        params: dict[str, Any],
        now: float,
    ) -> bool:
        """Queue one message; False when that message was queued before."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO outbox (dedupe, to_addr, language, template, params, status,"
                " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)"
                " ON CONFLICT (dedupe) DO NOTHING",
                (dedupe, to_addr, language, template, json.dumps(params), now, now),
            )
            return cur.rowcount == 1

    def due_messages(self, now: float, limit: int) -> list[OutboxMessage]:
        rows = self._db.execute(
            "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (now, limit),
        ).fetchall()
        return [
            OutboxMessage(
                r["id"],
                r["to_addr"],
                r["language"],
                r["template"],
                json.loads(r["params"]),
                r["attempts"],
            )
            for r in rows
        ]

    def message_sent(self, message_id: int, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                " params = '{}' WHERE id = ?",  # links with one-use tokens are not kept
                (now, message_id),
            )

    def message_failed(self, message_id: int, error: str, retry_at: float | None) -> None:
        """A failed attempt: retried at ``retry_at``, or given up for good when None."""
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?,"
                " status = ?, next_attempt_at = COALESCE(?, next_attempt_at) WHERE id = ?",
                (error[:500], "failed" if retry_at is None else "pending", retry_at, message_id),
            )

    def outbox_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status")
        return {str(r[0]): int(r[1]) for r in rows}

    # ---- what the feeder reads ----------------------------------------------------------

    def booking_events_after(self, last_id: int, limit: int) -> list[Row]:
        return self._db.execute(
            "SELECT * FROM booking_events WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
        ).fetchall()

    def notify_cursor(self) -> int:
        return int(self._db.execute("SELECT last_event_id FROM notify_cursor").fetchone()[0])

    def set_notify_cursor(self, last_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE notify_cursor SET last_event_id = ?", (last_id,))

    def bookings_starting(self, start: float, end: float) -> list[int]:
        """Approved bookings starting in [start, end) (for reminders)."""
        rows = self._db.execute(
            "SELECT id FROM bookings WHERE status = 'approved' AND starts_at >= ?"
            " AND starts_at < ? ORDER BY starts_at",
            (start, end),
        )
        return [int(r[0]) for r in rows]

    def establishment_name(self, establishment_id: int) -> str:
        r = self._db.execute(
            "SELECT name FROM establishments WHERE id = ?", (establishment_id,)
        ).fetchone()
        return "" if r is None else str(r[0])
