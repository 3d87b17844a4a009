"""Connecting each call's legs to the face detector, and its decisions to the call's policy.

Vision decides nothing about a call: it reports counts, "over the approved count" and
"cleared", each already confirmed over several samples. The policy engine turns those into a
pause and a resume, and is the only writer of a call's face counts and alerts. Only the two
parties' cameras are watched (never a staff watcher).

A leg that rejoins gets a new sampler. Where a vision pause for that side is still in force,
the sampler starts in the over-limit state, so a clear picture on the new stream emits
"cleared" and lifts the pause (a fresh sampler would otherwise wait for an over-limit it has
never seen). Legal calls are counted but no still is kept (the policy withholds evidence).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from protocol.frames import EncodedFrame
from protocol.vocabulary import PARTY_ROLES
from relay.calls.call import Call
from relay.calls.identity_gate import IdentityGate
from relay.calls.policy import CallPolicy
from relay.calls.registry import CallRegistry
from relay.media.forwarder import Producer
from relay.records.audit import Evidence
from vision.decisions import VisionEvent
from vision.identity_check import IdentityEvent, LegIdentity
from vision.sampler import LegSampler
from vision.service import DetectorService

log = logging.getLogger(__name__)

Gallery = Callable[[Call, str], Awaitable[dict[str, list[np.ndarray]]]]
"""(call, role) -> the enrolled descriptors of the people approved for that side."""


def leg_key(call_id: int, role: str) -> str:
    """The detector service's key for a party's video leg of a call."""
    return f"{call_id}:{role}"


class VisionLink:
    """Registry hook: one sampler per party video stream of every call."""

    def __init__(self, service: DetectorService, registry: CallRegistry) -> None:
        self.service = service
        self.registry = registry
        self.gallery: Gallery | None = None
        """Set by relay/app.py when identity is installed: in-call re-checks of each side."""
        self.precall: IdentityGate | None = None
        """Set by relay/app.py: the check before the call gets each side's gallery first."""
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, call: Call, policy: CallPolicy) -> None:
        if not self.service.enabled:
            return
        call.add_tap(lambda role, kind, producer: self._watch(call, policy, role, kind, producer))

    def _watch(self, call: Call, policy: CallPolicy, role: str, kind: str, producer: Producer) -> None:
        if kind != "video" or role not in PARTY_ROLES:
            return
        leg = call.legs.get(role)
        approved = leg.approved_faces if leg is not None else 1
        sampler = self.service.open_leg(leg_key(call.id, role), approved,
                                        lambda event: self._on_event(policy, role, event))
        if policy.vision_paused(role):
            sampler.resume_over_limit()
        policy.approval_listeners.append(
            lambda changed, n: sampler.set_approved(n) if changed == role else None
        )
        live = self.registry.get(call.id)
        mime = (live.video_mime if live is not None else None) or "video/VP8"
        codec = mime.split("/", 1)[1].upper()

        def on_frame(frame: EncodedFrame) -> None:
            now = time.monotonic()
            sampler.offer_frame(codec, frame.data, frame.keyframe, now)
            if sampler.keyframe_wanted(now):
                producer.request_keyframe("vision")

        producer.frames(mime).subscribe(on_frame, keyframes_only=not sampler.needs_all_frames)
        policy.listeners.append(_closer(policy, sampler))
        if self.gallery is not None:
            task = asyncio.ensure_future(self._start_identity(call, policy, role, sampler))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _start_identity(self, call: Call, policy: CallPolicy, role: str,
                              sampler: LegSampler) -> None:
        """Load the side's enrolled faces, then re-identify what the sampler sees. A side with
        nobody enrolled is not re-identified (the count rule still holds)."""
        assert self.gallery is not None
        try:
            gallery = await self.gallery(call, role)
        except Exception:
            log.exception("identity: gallery for call %s %s could not be loaded", call.id, role)
            if self.precall is not None:
                self.precall.unavailable(call, policy, role)
            return
        if self.precall is not None and not sampler.closed:
            self.precall.start(call, policy, role, sampler, gallery,
                               lambda g: self._recheck(policy, role, sampler, g))
            return
        if not sampler.closed and gallery:
            self._recheck(policy, role, sampler, gallery)

    def _recheck(self, policy: CallPolicy, role: str, sampler: LegSampler,
                 gallery: dict[str, list[np.ndarray]]) -> None:
        """Re-identify what the sampler sees from now on (in-call re-checks)."""
        sampler.identity = LegIdentity(sampler.leg_key, gallery, self.service.config,
                                       start_unmatched=policy.identity_paused(role))
        sampler.on_identity = lambda event: self._on_identity(policy, role, event)

    def _on_event(self, policy: CallPolicy, role: str, event: VisionEvent) -> None:
        policy.vision_count(role, event.count)
        if event.kind == "over_limit":
            boxes = [list(map(float, b)) for b in event.boxes]
            evidence = Evidence(event.evidence_jpeg, boxes)  # the policy withholds it on legal calls
            policy.vision_over_limit(role, event.count, event.approved, evidence=evidence)
        elif event.kind == "cleared":
            policy.vision_cleared(role, event.count)


    def _on_identity(self, policy: CallPolicy, role: str, event: IdentityEvent) -> None:
        if event.kind == "unmatched":
            boxes = [list(map(float, b)) for b in event.boxes]
            matches = [{"person": p, "distance": d} for p, d in event.matches]
            policy.identity_unmatched(role, matches, evidence=Evidence(event.evidence_jpeg, boxes))
        else:
            policy.identity_matched(role)


def _closer(policy: CallPolicy, sampler: Any) -> Callable[[], None]:
    def close_when_ended() -> None:
        if policy.state == "ended":
            sampler.close()

    return close_when_ended
