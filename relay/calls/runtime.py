"""What the relay keeps in the store so a restart (even kill -9) does not lose a call.

A call's slot times live with its booking, so a restarted relay gives a rejoining leg the
original end time by itself. What else must survive is kept here: the call's state and pause
reasons (a call paused for an unapproved person stays paused across a restart) and a
heartbeat, so the audit trail can show the gap. At start-up, calls that were running are
looked at: one whose slot is over, or that nobody rejoins within the grace window, ends as
a technical failure, which gives the allowance back.

Many nodes: each row names the node that writes it, and this node's writes are fenced on it
(relay/records/call_state.py): a call another node has taken is handed over, not ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from relay.calls.policy import CallPolicy
from relay.calls.registry import CallRegistry
from relay.config import Config
from relay.node import node_id
from relay.records.call_state import CallStateRecords
from relay.records.store.base import transaction
from relay.records.store.engine import Database

log = logging.getLogger(__name__)


HEARTBEAT_S = 2.0

Audit = Callable[[int, str, dict[str, Any]], None]
Outcome = Callable[[int, str, str], None]


class CallRuntime:
    def __init__(
        self,
        conn: Database,
        registry: CallRegistry,
        config: Config,
        audit: Audit,
        outcome: Outcome,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = CallStateRecords(conn)
        self.registry = registry
        self.config = config
        self.audit = audit
        self.outcome = outcome
        self.clock = clock
        self.restarted: dict[int, float] = {}  # booking -> last heartbeat before the restart
        self._task: asyncio.Task[None] | None = None
        self._checks: list[asyncio.TimerHandle] = []
        self.claim: Callable[[int], Awaitable[bool]] | None = None
        """Many nodes (relay/cluster/): take a call whose node is gone before giving it up;
        False while another live node owns it (then it is not this node's to end)."""
        self.release: Callable[[int], Awaitable[None]] | None = None
        """Many nodes: give a claimed call's placement back once it is ended."""
        self._claims: set[asyncio.Task[None]] = set()
        self.handed_over = False
        """Many nodes, draining: the calls are another node's now, which writes their rows;
        this node's legs leaving must not overwrite them."""
        self.node = node_id(config)
        """The name this node writes its calls' rows under (the fence: call_state.py)."""
        self.on_lost: Callable[[int], None] = lambda booking_id: None
        """Called with each call handed over because another node took its row (metrics)."""

    # --- live calls ------------------------------------------------------------------------

    def __call__(self, call: Any, policy: CallPolicy) -> None:
        """Registry hook: restore what survived a restart, then keep it up to date."""
        row = self.records.load(call.id)
        if row is not None and row.ended_at is None:
            reasons = row.pause_reasons - {"before_start"}
            gap = max(0.0, self.clock() - row.heartbeat_at)
            self.audit(
                call.id,
                "relay_restart",
                {"gap_s": round(gap, 1), "restored_pauses": sorted(reasons)},
            )
            policy.restore(reasons, row.awaiting_staff)
        policy.listeners.append(lambda: self.save(policy))
        policy.still_owner = lambda: self._still_owner(call.id)
        policy.outcome_guard = lambda write: self._outcome_if_owner(call.id, write)
        self.save(policy, take=True)  # created here: this node runs it now

    def save(self, policy: CallPolicy, take: bool = False) -> None:
        if self.handed_over or policy.fenced:
            return
        now = self.clock()
        ended = now if policy.state == "ended" else None
        if not self.records.save(
            policy.call.id,
            policy.state,
            policy.pause_reasons,
            policy.awaiting_staff,
            policy.call.ends_at,
            now,
            ended,
            owner=self.node,
            take=take,
        ):
            asyncio.get_running_loop().call_soon(self._lost, policy.call.id)

    def _still_owner(self, booking_id: int) -> bool:
        """Before an end: does this node still hold the row? Not: hand the call over."""
        try:
            owner = self.records.owner(booking_id)
        except Exception:  # the records cannot say: end as before (the end time is shared)
            log.warning("could not read who runs call %s; ending it here", booking_id)
            return True
        if owner in (None, "", self.node):
            return True
        asyncio.get_running_loop().call_soon(self._lost, booking_id)
        return False

    def _outcome_if_owner(self, booking_id: int, write: Callable[[], None]) -> None:
        """The end's outcome, under the database's one write lock with the owner read, so
        no other node can take the call between the check and the write."""
        with transaction(self.records.conn):
            owner = self.records.owner(booking_id)
            if owner not in (None, "", self.node):
                log.warning("call %s: %s runs it now and records its outcome", booking_id, owner)
                return
            write()

    def _lost(self, booking_id: int) -> None:
        """Another node took this call's row (it re-placed and restored the call while this
        node was cut off from Redis): its legs go there, this copy writes nothing more."""
        if self.registry.hand_over(booking_id) and not self.handed_over:  # not a drain
            log.warning(
                "call %s: another node runs it now; its legs were sent on",
                booking_id,
                extra={"call_id": booking_id},
            )
            self.on_lost(booking_id)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            ids = [bid for bid, live in self.registry.calls.items() if live.policy.state != "ended"]
            if ids and not self.handed_over:
                for lost in self.records.heartbeat(ids, self.clock(), owner=self.node):
                    self._lost(lost)

    # --- start-up --------------------------------------------------------------------------

    def recover(self) -> list[int]:
        """Look at calls a previous process left running; returns their booking ids."""
        now = self.clock()
        rows = [(r.booking_id, r.ends_at, r.heartbeat_at) for r in self.records.open_calls()]
        loop = asyncio.get_running_loop()
        for booking_id, ends_at, heartbeat in rows:
            self.restarted[booking_id] = heartbeat
            if ends_at <= now:
                self._give_up_if_mine(booking_id, "relay_restart_after_slot", heartbeat)
            else:
                wait = min(self.config.reconnect_grace_s, ends_at - now)
                self._checks.append(loop.call_later(wait, self._check_returned, booking_id))
        if rows:
            log.info("restart: %d call(s) were running", len(rows))
        return [r[0] for r in rows]

    def _check_returned(self, booking_id: int) -> None:
        if self.registry.get(booking_id) is None:
            self._give_up_if_mine(booking_id, "relay_restart_no_return", self.restarted[booking_id])

    def _give_up_if_mine(self, booking_id: int, reason: str, seen_heartbeat: float) -> None:
        if self.claim is None:
            self._give_up(booking_id, reason, seen_heartbeat)
            return
        task = asyncio.ensure_future(self._claim_and_give_up(booking_id, reason, seen_heartbeat))
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    async def _claim_and_give_up(self, booking_id: int, reason: str, seen: float) -> None:
        assert self.claim is not None
        if await self.claim(booking_id) and self.registry.get(booking_id) is None:
            self._give_up(booking_id, reason, seen)
            if self.release is not None:
                await self.release(booking_id)

    def sweep_orphans(self, lost_after_s: float) -> None:
        """Many nodes: calls whose node died and that nobody rejoined (no heartbeat for
        ``lost_after_s``) end as technical failures, on whichever node claims them first."""
        cutoff = self.clock() - lost_after_s
        for row in self.records.open_calls():
            if row.heartbeat_at < cutoff and self.registry.get(row.booking_id) is None:
                self._give_up_if_mine(row.booking_id, "node_lost_no_return", row.heartbeat_at)

    def _give_up(self, booking_id: int, reason: str, seen_heartbeat: float) -> None:
        """Nobody came back after a restart: a technical failure. The booking's record is
        written by the lifecycle's outcome (``outcome``), never here. Only while the row's
        heartbeat is still the stale one seen: a node cut off from Redis but not from the
        records that still runs the call keeps it alive, and it is not ended under it."""
        if not self.records.mark_ended(
            booking_id, self.clock(), owner=self.node, seen_heartbeat=seen_heartbeat
        ):
            log.info("call %s is running again somewhere; not given up", booking_id)
            return
        self.audit(booking_id, "state", {"from": "interrupted", "to": "ended", "reason": reason})
        try:
            self.outcome(booking_id, "failed", reason)
        except Exception:
            log.exception("could not record the outcome of call %s", booking_id)

    async def start(self) -> None:
        self.recover()
        self._task = asyncio.ensure_future(self._heartbeat())

    async def stop(self) -> None:
        for check in self._checks:
            check.cancel()
        if self._task is not None:
            self._task.cancel()
        for task in list(self._claims):
            task.cancel()
