"""The check before the call: a party leg's media reaches the other side only once a face on
its camera matches one of the side's enrolled people (docs/identity.md).

A registry hook, like relay/calls/vision_link.py. The moment a party leg's first producer
appears (before any media is wired to the other side) the policy holds the call with the
reason ``identity_check:<role>``: nothing of either side reaches the other, so an impostor
neither shows nor sees. VisionLink hands over the leg's sampler and the side's gallery once
it is loaded; every sample is then checked (vision/identity_precall.py, identity thread) and
the result goes to the policy, which guides the joining page, alerts staff after repeated
failures and lifts the hold when the check passes. Then the in-call re-checks start.

A side with nobody enrolled (known at once, from the enrolment rows) is not held: it joins
unchecked, audited and shown to staff as "not checked", unless the establishment's
``unenrolled_needs_staff`` (default: the relay's ``identity_unenrolled_needs_staff``) holds it
for staff. A gallery that fails to load, or a
leg that never sends video, stays held: staff admit by hand (``admit``), audited with the
last frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocol.vocabulary import PARTY_ROLES
from relay.calls.call import Call, Leg
from relay.calls.policy import CallPolicy
from relay.config import Config
from vision.identity_precall import PrecallCheck, PrecallResult
from vision.sampler import LegSampler
from vision.service import DetectorService

log = logging.getLogger(__name__)

Gallery = dict[str, list[np.ndarray]]
StartRechecks = Callable[[Gallery], None]
Enrolled = Callable[[str, int], bool]
"""(kind, subject id) -> whether that person has an enrolled face (a quick row lookup)."""
ADMITTED_BY_STAFF = "admitted_by_staff"
"""The gallery key of the faces a member of staff admitted by hand (this call only)."""


@dataclass
class _Open:
    sampler: LegSampler
    check: PrecallCheck | None
    gallery: Gallery
    then: StartRechecks


class IdentityGate:
    def __init__(
        self, service: DetectorService, config: Config, store: Any, enrolled: Enrolled
    ) -> None:
        self.service = service
        self.config = config
        self.store = store
        self.enrolled = enrolled
        self._held: dict[tuple[int, str], Leg] = {}
        self._open: dict[tuple[int, str], _Open] = {}

    def __call__(self, call: Call, policy: CallPolicy) -> None:
        if not self.service.enabled:
            return  # no detector, no check: docs/identity.md says so
        call.add_tap(lambda role, kind, producer: self._hold(call, policy, role))
        policy.listeners.append(lambda: self._forget(call, policy))

    def _hold(self, call: Call, policy: CallPolicy, role: str) -> None:
        leg = call.legs.get(role)
        if role not in PARTY_ROLES or leg is None or self._held.get((call.id, role)) is leg:
            return
        self._held[(call.id, role)] = leg
        self._open.pop((call.id, role), None)
        if self._anyone_enrolled(call, role):
            policy.identity_check_hold(role)
        elif self._unenrolled_needs_staff(call):
            policy.identity_check_hold(role, needs_staff=True)
        else:
            policy.identity_check_skipped(role)

    def _unenrolled_needs_staff(self, call: Call) -> bool:
        """The establishment's setting (read with the call's admission), else the relay's."""
        setting = getattr(call.policy_settings, "unenrolled_needs_staff", None)
        if setting is None:
            return self.config.identity_unenrolled_needs_staff
        return bool(setting)

    def _anyone_enrolled(self, call: Call, role: str) -> bool:
        booking = self.store.booking(call.id)
        if booking is None:
            return False
        if role == "prison":
            return self.enrolled("prisoner", booking.prisoner_id)
        visitors = {booking.main_visitor_id, *booking.visitor_ids}
        return any(self.enrolled("visitor", v) for v in visitors)

    def _forget(self, call: Call, policy: CallPolicy) -> None:
        if policy.state == "ended":
            for role in PARTY_ROLES:
                self._held.pop((call.id, role), None)
                entry = self._open.pop((call.id, role), None)
                if entry is not None:
                    self.service.close_precall(entry.sampler)

    # --- from VisionLink ---------------------------------------------------------------

    def start(
        self,
        call: Call,
        policy: CallPolicy,
        role: str,
        sampler: LegSampler,
        gallery: Gallery,
        then: StartRechecks,
    ) -> None:
        """The leg's video is sampled and its side's gallery loaded: check, or decide."""
        if sampler.closed or not policy.identity_paused_for_check(role):
            if gallery:
                then(gallery)
            return
        if not gallery:  # held, but no descriptor loaded: staff admit by hand
            self._open[(call.id, role)] = _Open(sampler, None, {}, then)
            policy.identity_check_unavailable(role)
            return
        required = None
        if role == "family":
            booking = self.store.booking(call.id)
            required = f"visitor:{booking.main_visitor_id}" if booking is not None else None
        check = PrecallCheck(sampler.leg_key, gallery, self.service.config, required=required)
        self._open[(call.id, role)] = _Open(sampler, check, gallery, then)
        self.service.open_precall(
            sampler, check, lambda result: self._result(call, policy, role, result)
        )

    def unavailable(self, call: Call, policy: CallPolicy, role: str) -> None:
        policy.identity_check_unavailable(role)

    def _result(self, call: Call, policy: CallPolicy, role: str, result: PrecallResult) -> None:
        entry = self._open.get((call.id, role))
        if entry is None or entry.check is None:
            return
        policy.identity_check_result(role, result)
        if result.admitted:
            del self._open[(call.id, role)]
            entry.then(entry.gallery)

    # --- staff -------------------------------------------------------------------------

    def admit(self, call: Call, policy: CallPolicy, role: str, staff: str, note: str) -> bool:
        """Admit a held side by hand. The faces of its last check join the side's gallery
        for this call, so the in-call re-checks do not pause on the person staff let in."""
        if not policy.identity_check_admit(role, staff, note):
            return False
        entry = self._open.pop((call.id, role), None)
        if entry is None:
            return True
        self.service.close_precall(entry.sampler)
        gallery = dict(entry.gallery)
        last = entry.check.last if entry.check is not None else None
        if last is not None and last.vectors:
            gallery[ADMITTED_BY_STAFF] = list(last.vectors)
        if gallery and not entry.sampler.closed:
            entry.then(gallery)
        return True

    def faces_now(self, call: Call, role: str) -> list[dict[str, Any]] | None:
        """The latest in-call re-check's faces of ``role`` (None: no re-checks running)."""
        entry = self._held.get((call.id, role))
        if entry is None:
            return None
        sampler = self.service.sampler_for(f"{call.id}:{role}")
        ident = sampler.identity if sampler is not None else None
        if ident is None:
            return None
        return [
            {"box": [float(v) for v in box], "person": person, "distance": distance}
            for box, person, distance in ident.last
        ]
