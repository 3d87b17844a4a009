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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from relay.calls.registry import CallRegistry, LiveCall
from relay.records.store import Booking, Store, StoreError
from relay.records.store.contacts import Revocation

log = logging.getLogger(__name__)


class CallLifecycle:
    def __init__(self, store: Store, registry: CallRegistry,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock

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
        in_call: set[int] = set()
        holding: set[int] = set()
        for bid, live in self.registry.calls.items():
            if live.policy.state == "ended":
                continue
            if live.policy.went_live:
                in_call.add(bid)
            family = live.call.legs.get("family")
            if family is not None and family.participant == participant:
                holding.add(bid)
        result = self.store.revoke_contact(contact_id, staff_id, now, in_call, holding)
        for bid in result.stopped:
            live = self._running(bid)
            if live is not None:
                await self._end(live, "approval_revoked")
        for bid in result.reduced:
            live = self._running(bid)
            family = live.call.legs.get("family") if live is not None else None
            if live is not None and family is not None:
                live.policy.set_approved_faces("family", family.approved_faces - 1,
                                               "approval_revoked")
        return result

    async def reschedule(self, booking_id: int, starts_at: float, minutes: int, actor: str,
                         now: float, keep_approval: bool) -> Booking:
        """Move a booking. The store refuses a call that has started; a call whose legs are
        waiting before the slot ends (its old links stop working) and is forgotten, so the
        new slot's join starts a fresh call with the new times."""
        booking = self.store.reschedule_booking(booking_id, starts_at, minutes, actor, now,
                                                keep_approval=keep_approval)
        live = self._running(booking_id)
        if live is not None:
            await self._end(live, "booking_rescheduled")
        self.registry.forget(booking_id)
        return booking

    async def laptop_revoked(self, laptop_id: int) -> list[int]:
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
