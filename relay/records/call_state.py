"""The call_runtime table: what a restarted relay needs to carry a call on.

One row per booking: the call's state, its pause reasons and who it waits for (JSON lists),
its end time, a heartbeat and when it ended. relay/calls/runtime.py decides what to do with
them; this module only reads and writes them (the table is migration 3 in
relay/records/store/schema.py).

Many nodes: the row also names the node that writes it (``owner``, migration 10). The node
that creates a call takes the row; every later write of that node (state, heartbeat, end)
is conditional on still owning it, so a node cut off from Redis whose call another node has
re-placed and restored cannot overwrite the new owner's row, and learns from the refusal
that the call is no longer its own (docs/multinode.md, "Fencing").
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
            " WHERE booking_id = ?",
            (booking_id,),
        ).fetchone()
        if row is None:
            return None
        return SavedCall(set(json.loads(row[0])), set(json.loads(row[1])), row[2], row[3])

    def save(
        self,
        booking_id: int,
        state: str,
        pause_reasons: Iterable[str],
        awaiting_staff: Iterable[str],
        ends_at: float,
        now: float,
        ended_at: float | None,
        owner: str = "",
        take: bool = True,
    ) -> bool:
        """Write the call's row. ``take``: this node now runs the call (it created it here)
        and the row becomes its own; otherwise the write happens only while ``owner`` still
        holds the row. False when it did not happen (another node took the call)."""
        fence = "" if take else " WHERE call_runtime.owner IN (excluded.owner, '')"
        with transaction(self.conn):
            cur = self.conn.execute(
                "INSERT INTO call_runtime (booking_id, state, pause_reasons, awaiting_staff,"
                " ends_at, heartbeat_at, ended_at, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(booking_id) DO UPDATE SET state = excluded.state,"
                " pause_reasons = excluded.pause_reasons, awaiting_staff = excluded.awaiting_staff,"
                " heartbeat_at = excluded.heartbeat_at, ended_at = excluded.ended_at,"
                " owner = excluded.owner" + fence,
                (
                    booking_id,
                    state,
                    json.dumps(sorted(pause_reasons)),
                    json.dumps(sorted(awaiting_staff)),
                    ends_at,
                    now,
                    ended_at,
                    owner,
                ),
            )
            return cur.rowcount > 0

    def heartbeat(self, booking_ids: Iterable[int], now: float, owner: str = "") -> set[int]:
        """Refresh the heartbeat of those calls whose rows ``owner`` holds (all of them when
        ``owner`` is empty: one node); returns the ids another node has taken since."""
        ids = [int(b) for b in booking_ids]
        if not ids:
            return set()
        with transaction(self.conn):
            lost: set[int] = set()
            if owner:
                marks = ",".join("?" * len(ids))
                rows = self.conn.execute(
                    "SELECT booking_id FROM call_runtime WHERE owner NOT IN (?, '')"
                    f" AND booking_id IN ({marks})",
                    [owner, *ids],
                ).fetchall()
                lost = {int(r[0]) for r in rows}
            kept = [(now, bid) for bid in ids if bid not in lost]
            if kept:
                self.conn.executemany(
                    "UPDATE call_runtime SET heartbeat_at = ? WHERE booking_id = ?", kept
                )
            return lost

    def owner(self, booking_id: int) -> str | None:
        """The node that holds the call's row ('' from before migration 10; None: no row)."""
        row = self.conn.execute(
            "SELECT owner FROM call_runtime WHERE booking_id = ?", (booking_id,)
        ).fetchone()
        return None if row is None else str(row[0])

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
            f" WHERE ended_at IS NULL AND booking_id IN ({marks})",
            ids,
        ).fetchall()
        return {int(r[0]): (str(r[1]), set(json.loads(r[2])), set(json.loads(r[3]))) for r in rows}

    def mark_ended(
        self, booking_id: int, now: float, owner: str = "", seen_heartbeat: float | None = None
    ) -> bool:
        """End a call nobody came back to. With ``seen_heartbeat``: only if no node has
        refreshed the row since it was found stale (a node cut off from Redis, not from the
        records, is still running it). The row becomes ``owner``'s, so a late writer is
        fenced off. False when it was not ended here."""
        stale = "" if seen_heartbeat is None else " AND heartbeat_at <= ?"
        params: list[object] = [now, owner, booking_id]
        if seen_heartbeat is not None:
            params.append(seen_heartbeat)
        with transaction(self.conn):
            cur = self.conn.execute(
                "UPDATE call_runtime SET ended_at = ?, state = 'ended', owner = ?"
                " WHERE booking_id = ? AND ended_at IS NULL" + stale,
                params,
            )
            return cur.rowcount > 0
