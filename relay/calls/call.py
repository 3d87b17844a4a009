"""Calls and their legs: who is connected, and the media wiring between them.

A call is two legs (family, prison) plus any number of receive-only staff watchers. The
call's state is decided by its ``CallPolicy`` alone (relay/calls/policy.py); this module only wires
producers to consumers and keeps the registry of calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import RTCPeerConnection

from protocol.aiortc_glue import ForwardingSender
from relay import metrics
from relay.media.forwarder import Consumer, Producer

log = logging.getLogger(__name__)


class AdmissionLike(Protocol):
    """What the store's admission check returns (relay.records.store.Admission)."""

    booking_id: int
    establishment_id: int
    call_type: str
    starts_at: float
    ends_at: float
    role: str
    participant: str
    display_name: str
    approved_faces: int
    policy: Any


Notify = Callable[[str, dict[str, Any]], None]
"""Send one protocol message (type, fields) to a leg's client; never raises."""


@dataclass(eq=False)
class Leg:
    role: str
    participant: str
    display_name: str
    pc: RTCPeerConnection
    notify: Notify
    approved_faces: int = 0
    producers: dict[str, Producer] = field(default_factory=dict)
    # outgoing senders keyed by (source role, kind)
    senders: dict[tuple[str, str], ForwardingSender] = field(default_factory=dict)
    consumers: list[Consumer] = field(default_factory=list)

    @property
    def is_watcher(self) -> bool:
        return self.role == "watcher"

    def log_extra(self, call: Call) -> dict[str, Any]:
        return {"call_id": call.id, "leg": self.role}


def _direction(source_role: str, target: Leg) -> str:
    if target.is_watcher:
        return "to_watcher"
    return f"{source_role}_to_{target.role}"


class Call:
    """One booked call: its legs and the forwarding between them."""

    def __init__(self, admission: AdmissionLike, keyframe_throttle_s: float) -> None:
        self.id = admission.booking_id
        self.establishment_id = admission.establishment_id
        self.call_type = admission.call_type
        self.starts_at = admission.starts_at
        self.ends_at = admission.ends_at
        self.policy_settings = admission.policy
        self.legs: dict[str, Leg] = {}
        self.watchers: list[Leg] = []
        self.media_paused = False
        self.held: frozenset[str] = frozenset()
        """Party roles held by their check before the call, not admitted yet (``set_held``,
        the policy engine's decision): the recorder writes none of their media."""
        self.keyframe_throttle_s = keyframe_throttle_s
        self.taps: list[Callable[[str, str, Producer], None]] = []
        """Called (role, kind, producer) when a leg's producer appears: recorder, vision."""

    @property
    def is_legal(self) -> bool:
        return self.call_type == "legal"

    def set_paused(self, paused: bool) -> None:
        """Pause or resume every party producer (the policy engine's decision, applied)."""
        self.media_paused = paused
        for leg in self.legs.values():
            self._apply_pause(leg)

    def set_held(self, roles: frozenset[str]) -> None:
        """The party roles held by their check before the call (the policy's decision)."""
        self.held = roles

    def _apply_pause(self, leg: Leg) -> None:
        for producer in leg.producers.values():
            if self.media_paused:
                producer.pause()
            else:
                producer.resume()

    def everyone(self) -> list[Leg]:
        return [*self.legs.values(), *self.watchers]

    def broadcast(self, mtype: str, **fields: Any) -> None:
        for leg in self.everyone():
            leg.notify(mtype, fields)

    # --- wiring ------------------------------------------------------------------------

    def add_party(self, leg: Leg) -> None:
        """A family or prison leg whose producers and senders exist (not yet negotiated)."""
        self.legs[leg.role] = leg
        metrics.LEGS_CONNECTED.labels(leg.role).inc()
        self._apply_pause(leg)  # a leg joining a paused call starts paused
        for kind, producer in leg.producers.items():
            for tap in self.taps:
                tap(leg.role, kind, producer)
        for other in self.everyone():
            if other is not leg:
                self._connect(leg, other)
                if not other.is_watcher:
                    self._connect(other, leg)

    def add_watcher(self, leg: Leg) -> None:
        self.watchers.append(leg)
        metrics.LEGS_CONNECTED.labels(leg.role).inc()
        for party in self.legs.values():
            self._connect(party, leg)

    def _connect(self, source: Leg, target: Leg) -> None:
        for kind, producer in source.producers.items():
            sender = target.senders.get((source.role, kind))
            if sender is None:
                continue
            consumer = Consumer(
                producer,
                sender,
                _direction(source.role, target),
                follows_pause=not target.is_watcher,
            )
            target.consumers.append(consumer)

    def remove(self, leg: Leg) -> None:
        """Unwire a leg that left or dropped; its peer connection is closed by the caller."""
        if leg.is_watcher:
            if leg not in self.watchers:
                return
            self.watchers.remove(leg)
        elif self.legs.get(leg.role) is leg:
            del self.legs[leg.role]
            for other in self.everyone():
                for consumer in list(other.consumers):
                    if consumer.producer in leg.producers.values():
                        consumer.close()
                        other.consumers.remove(consumer)
        else:
            return
        metrics.LEGS_CONNECTED.labels(leg.role).dec()
        for consumer in leg.consumers:
            consumer.close()
        leg.consumers.clear()

    def request_keyframes(self, reason: str) -> None:
        for leg in self.legs.values():
            producer = leg.producers.get("video")
            if producer is not None:
                producer.request_keyframe(reason)

    def add_tap(self, tap: Callable[[str, str, Producer], None]) -> None:
        self.taps.append(tap)
        for leg in self.legs.values():
            for kind, producer in leg.producers.items():
                tap(leg.role, kind, producer)

