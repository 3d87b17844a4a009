"""The one owner of a call's life: every booking change that affects a call goes through here.

Cancel (family main visitor, kiosk, staff), revoke of a visitor's approval, reschedule, the
outcome of an ended call (the policy's end, staff's correction, a restart's give-up) and staff
end: each updates the store AND drives the live call, if there is one, through its policy
engine, which stays the only writer of a call's state. Before this, the API wrote bookings
and the policy ran the call, and the two disagreed (a revoked visitor stayed on the call; a
cancelled call carried on, free).

Allowance rule for a change mid-call: a call that went live (both sides were connected at
some point) has happened. Cancelling or revoking it then ends it early and records it as
"completed" with the reason (``booking_cancelled``, ``approval_revoked``): the minutes count.
Before it went live, the booking is "cancelled" and the minutes are given back.

With many nodes (docs/multinode.md) a change to a call another node runs is handed to that
node's lifecycle over the bus and waited for (``remote``); a revocation asks every node which
of its calls are affected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from relay.calls.registry import CallRegistry, LiveCall
from relay.records.store import Booking, Store, StoreError
from relay.records.store.contacts import Revocation

log = logging.getLogger(__name__)


class RemoteCalls(Protocol):
    """Many nodes (relay/cluster/remote_calls.py): calls this process does not run."""

    async def owner_elsewhere(self, booking_id: int) -> str | None:
        """The live node (not this one) that runs the call, or None."""

    async def ask(self, node_id: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Have that node's lifecycle do ``op``; raises when it does not confirm."""

    async def ask_all(self, op: str, args: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Every other live node's answer to ``op`` (those that answered in time)."""


class CallLifecycle:
    def __init__(self, store: Store, registry: CallRegistry,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.remote: RemoteCalls | None = None
        """Set with many nodes: a change to a call another node runs is done by that node
        (its lifecycle, on the shared records), so the one-owner rule holds per call."""

    async def _elsewhere(self, booking_id: int) -> str | None:
        if self.remote is None or self._running(booking_id) is not None:
            return None
        return await self.remote.owner_elsewhere(booking_id)

    def _running(self, booking_id: int) -> LiveCall | None:
        live = self.registry.get(booking_id)
        if live is None or live.policy.state == "ended":
            return None
        return live

    async def _end(self, live: LiveCall, reason: str) -> None:
        live.policy.end(reason)
        await self.registry.finish(live)

    # --- booking changes -------------------------------------------------------------------

    async def cancel(self, booking_id: int, actor: str, now: float, reason: str = "") -> Booking:
        """Cancel a booking; a call in progress ends at once (reason ``booking_cancelled``)."""
        node = await self._elsewhere(booking_id)
        if node is not None:
            assert self.remote is not None
            await self.remote.ask(node, "cancel", {"booking_id": booking_id, "actor": actor,
                                                   "now": now, "reason": reason})
            return self.store.booking(booking_id)  # type: ignore[return-value]
        live = self._running(booking_id)
        used = live is not None and live.policy.went_live
        booking = self.store.cancel_booking(booking_id, actor, now, reason, used=used)
        if live is not None:
            await self._end(live, "booking_cancelled")
        return booking

    async def revoke(self, contact_id: int, staff_id: int | None, now: float) -> Revocation:
        """Revoke a visitor's approval. A booking the visitor was essential to stops (its live
        call ends, reason ``approval_revoked``); where another approved visitor is left, the
        call carries on with one approved face fewer on the family side."""
        contact = self.store.contact(contact_id)
        if contact is None:
            raise StoreError("contact_not_found", "no such approval")
        participant = f"visitor:{contact.visitor_id}"
        found = self.calls_with(participant)
        in_call, holding = set(found["in_call"]), set(found["holding"])
        owners: dict[int, str] = {}
        if self.remote is not None:  # the calls other nodes run count too
            for node, answer in (await self.remote.ask_all("calls_with",
                                                           {"participant": participant})).items():
                in_call |= set(answer.get("in_call", []))
                holding |= set(answer.get("holding", []))
                owners.update({int(b): node for b in answer.get("running", [])})
        result = self.store.revoke_contact(contact_id, staff_id, now, in_call, holding)
        for bid in result.stopped:
            await self._on_owner(bid, owners, "end", {"reason": "approval_revoked"})
        for bid in result.reduced:
            await self._on_owner(bid, owners, "reduce_family", {"why": "approval_revoked"})
        return result

    def calls_with(self, participant: str) -> dict[str, list[int]]:
        """This node's running calls: those that went live, and those whose family leg is
        ``participant`` (what a revocation needs to know)."""
        found: dict[str, list[int]] = {"in_call": [], "holding": [], "running": []}
        for bid, live in self.registry.calls.items():
            if live.policy.state == "ended":
                continue
            found["running"].append(bid)
            if live.policy.went_live:
                found["in_call"].append(bid)
            family = live.call.legs.get("family")
            if family is not None and family.participant == participant:
                found["holding"].append(bid)
        return found

    async def _on_owner(self, booking_id: int, owners: dict[int, str], op: str,
                        args: dict[str, Any]) -> None:
        if booking_id in owners and self.remote is not None:
            await self.remote.ask(owners[booking_id], op, {"booking_id": booking_id, **args})
        else:
            await self.apply(op, booking_id, args)

    async def apply(self, op: str, booking_id: int, args: dict[str, Any]) -> None:
        """A change decided elsewhere (a revocation) to a call running here."""
        live = self._running(booking_id)
        if live is None:
            return
        if op == "end":
            await self._end(live, str(args.get("reason", "")))
        elif op == "reduce_family":
            family = live.call.legs.get("family")
            if family is not None:
                live.policy.set_approved_faces("family", family.approved_faces - 1,
                                               str(args.get("why", "")))

    async def reschedule(self, booking_id: int, starts_at: float, minutes: int, actor: str,
                         now: float, keep_approval: bool) -> Booking:
        """Move a booking. The store refuses a call that has started; a call whose legs are
        waiting before the slot ends (its old links stop working) and is forgotten, so the
        new slot's join starts a fresh call with the new times."""
        node = await self._elsewhere(booking_id)
        if node is not None:
            assert self.remote is not None
            await self.remote.ask(node, "reschedule", {
                "booking_id": booking_id, "starts_at": starts_at, "minutes": minutes,
                "actor": actor, "now": now, "keep_approval": keep_approval})
            return self.store.booking(booking_id)  # type: ignore[return-value]
        booking = self.store.reschedule_booking(booking_id, starts_at, minutes, actor, now,
                                                keep_approval=keep_approval)
        live = self._running(booking_id)
        if live is not None:
            await self._end(live, "booking_rescheduled")
        self.registry.forget(booking_id)
        return booking

    async def laptop_revoked(self, laptop_id: int, everywhere: bool = True) -> list[int]:
        """A laptop's device keys were revoked: the call on it ends at once (reason
        ``laptop_revoked``) if its prison leg is connected from that laptop or the call has
        gone live (a dropped laptop must not rejoin with the token it holds). Returns the
        bookings ended."""
        participant = f"laptop:{laptop_id}"
        ended = []
        for bid, live in list(self.registry.calls.items()):
            if live.policy.state == "ended":
                continue
            prison = live.call.legs.get("prison")
            booking = self.store.booking(bid)
            on_laptop = booking is not None and booking.laptop_id == laptop_id
            if (prison is not None and prison.participant == participant) or (
                on_laptop and live.policy.went_live
            ):
                await self._end(live, "laptop_revoked")
                ended.append(bid)
        if everywhere and self.remote is not None:  # and on the other nodes, each its own
            for answer in (await self.remote.ask_all("laptop_revoked",
                                                     {"laptop_id": laptop_id})).values():
                ended += [int(b) for b in answer.get("ended", [])]
        return ended

    async def staff_end(self, live: LiveCall, staff: str) -> None:
        live.policy.staff_end(staff)
        await self.registry.finish(live)

    # --- outcomes --------------------------------------------------------------------------

    def outcome(self, booking_id: int, result: str, reason: str) -> None:
        """How an ended call went (the policy's end, a restart's give-up). A booking that a
        change already closed (cancelled before it went live, ended early) keeps that
        record: the change said what happened."""
        booking = self.store.booking(booking_id)
        if booking is None:
            log.warning("outcome %s for unknown booking %s", result, booking_id)
            return
        if booking.status == "cancelled" or (
            booking.status == "completed" and booking.reason in ("booking_cancelled",
                                                                 "approval_revoked")
        ):
            return
        self.store.mark_call_outcome(booking_id, result, reason, self.clock())

    def staff_outcome(self, booking_id: int, result: str, reason: str, now: float) -> Booking:
        """Staff correct a call's outcome (e.g. "failed": give the minutes back). Refused
        while the call is still running: end it first."""
        if self._running(booking_id) is not None:
            raise StoreError("call_in_progress", "the call is still running; end it first")
        self.store.mark_call_outcome(booking_id, result, reason, now)
        return self.store.booking(booking_id)  # type: ignore[return-value]

    # --- erasure (relay/records/erasure.py) ------------------------------------------------

    async def remove_visitor(self, visitor_id: int, staff_id: int | None, now: float) -> Removal:
        """A visitor's record is being erased. Each approval is revoked by ``revoke``'s rules
        (a booking they are essential to stops; its live call ends, ``approval_revoked``),
        a coming booking still naming them as main visitor is cancelled (a live one ends,
        ``booking_cancelled``), and they are taken off the party of the others."""
        actor = "system" if staff_id is None else f"staff:{staff_id}"
        removal = Removal()
        for cid in self.store.approved_contact_ids(visitor_id=visitor_id):
            removal.stopped += (await self.revoke(cid, staff_id, now)).stopped
        for bid in self.store.coming_bookings(now, main_visitor_id=visitor_id):
            await self.cancel(bid, actor, now, "visitor_erased")
            removal.stopped.append(bid)
        removal.reduced = self.store.drop_from_coming_bookings(visitor_id, actor, now)
        return removal

    async def remove_prisoner(self, prisoner_id: int, staff_id: int, now: float) -> Removal:
        """A prisoner's record is being erased: every coming booking is cancelled (a live
        call ends, ``booking_cancelled``), then every approval of theirs is revoked."""
        removal = Removal()
        for bid in self.store.coming_bookings(now, prisoner_id=prisoner_id):
            await self.cancel(bid, f"staff:{staff_id}", now, "prisoner_erased")
            removal.stopped.append(bid)
        for cid in self.store.approved_contact_ids(prisoner_id=prisoner_id):
            await self.revoke(cid, staff_id, now)
        return removal


@dataclass
class Removal:
    """What taking a person off the coming calls did (``remove_visitor``, ``remove_prisoner``)."""

    stopped: list[int] = field(default_factory=list)
    """Bookings cancelled or, if their call had gone live, ended early."""
    reduced: list[int] = field(default_factory=list)
    """Bookings that carry on without the visitor."""
