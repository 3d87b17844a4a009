"""The one authority over a call's state.

scheduled -> waiting (one side joined) -> live <-> paused -> ended, each change with a reason.
Everything else follows: the call's producers are paused and resumed from here (the forwarder
holds no pause logic of its own); clients, staff and the audit trail get the events. Vision's
face counts and alerts for a live call are written here too, and only here. The call ends at
its slot's end whatever time it started; warnings go out before that. A party that drops may rejoin within a grace window; if it does
not, the call ends as a technical failure (which gives the allowance back).

Pauses are a set of reasons (vision on either side, staff, slot not started). Media flows only
when the set is empty, so a staff resume does not undo a vision pause still in force, and a
vision "cleared" needs ``resume_after_clear_s`` of calm before it lifts its reason (or a
staff resume, where the establishment says staff must resume).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from protocol.vocabulary import PARTY_ROLES
from relay import metrics
from relay.calls.call import Call
from relay.calls.identity_state import SideIdentity
from relay.config import Config
from relay.records.audit import Evidence

log = logging.getLogger(__name__)

Audit = Callable[[str, dict[str, Any]], None]
Outcome = Callable[[str, str], None]

REASON_TEXT = {
    "vision:family": "someone who is not on the booking appeared on the family side's camera",
    "vision:prison": "someone other than the prisoner appeared on the prison side's camera",
    "identity:family": "someone not on the booking appeared on the family side's camera",
    "identity:prison": "someone not on the booking appeared on the prison side's camera",
    "identity_check:family": "waiting for the family side's identity check",
    "identity_check:prison": "waiting for the prison side's identity check",
    "staff": "a member of staff paused the call",
    "before_start": "the call has not started yet",
}
END_TEXT = {
    "time_limit": "the booked time is over",
    "staff": "a member of staff ended the call",
    "left": "the other side left the call",
    "leg_lost": "the other side's connection was lost and did not come back",
    "shutdown": "the relay stopped",
    "booking_cancelled": "the booking was cancelled",
    "approval_revoked": "a visitor's approval for this call was withdrawn",
    "booking_rescheduled": "the booking was moved to another time",
    "laptop_revoked": "staff withdrew the prison laptop from use",
}
RESTART_TEXT = "the relay is restarting; you will be reconnected in a moment"
STREAM_TEXT = {
    "video": "their video has stopped",
    "audio": "their sound has stopped",
}
"""What the far side is told when a stream stops arriving (relay/calls/media_health.py)."""
TECHNICAL_ENDS = frozenset({"leg_lost", "shutdown"})


class CallPolicy:
    def __init__(
        self,
        call: Call,
        config: Config,
        audit: Audit | None = None,
        on_outcome: Outcome | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.call = call
        self.config = config
        self.state = "scheduled"
        self.reason = "created"
        self.pause_reasons: set[str] = set()
        self.ended = asyncio.Event()
        self.fenced = False
        """Another node runs this call now (``hand_over``): this copy writes nothing more."""
        self.still_owner: Callable[[], bool] = lambda: True
        """Many nodes: whether this node still holds the call's records (relay/calls/
        runtime.py). Asked before an end, so a node whose call was re-placed elsewhere while
        it was cut off hands it over instead of ending it (and writing its outcome)."""
        self.outcome_guard: Callable[[Callable[[], None]], None] = lambda write: write()
        """Many nodes: runs the end's outcome write, in one transaction with a last check
        that this node still holds the call (relay/calls/runtime.py)."""
        audit = audit or (lambda kind, detail: None)
        on_outcome = on_outcome or (lambda outcome, reason: None)
        self._audit: Audit = lambda kind, detail: None if self.fenced else audit(kind, detail)
        self._on_outcome: Outcome = (
            lambda result, reason: None if self.fenced else on_outcome(result, reason)
        )
        self._clock = clock
        self._timers: list[asyncio.TimerHandle] = []
        self._grace: dict[str, asyncio.TimerHandle] = {}
        self._clear_timers: dict[str, asyncio.TimerHandle] = {}
        self._awaiting_staff: set[str] = set()
        self.went_live = False
        self.interrupted = False
        """The process is going away and its legs were told to reconnect (``interrupt``)."""
        """Both sides were connected at some point: the call happened (allowance used)."""
        self.faces: dict[str, int] = {}
        """Latest confirmed face count per party role, from vision."""
        self.alerts = 0
        """Vision over-limit confirmations so far."""
        self.approval_listeners: list[Callable[[str, int], None]] = []
        """Called (role, approved faces) when a side's approved count changes (vision)."""
        self.messages_sent = 0
        """Staff messages sent into the call so far (each page shows them until dismissed)."""
        self.last_message: dict[str, Any] | None = None
        """The latest staff message, given again to a side that (re)joins after it was sent:
        a phone that lost its connection for a moment must not miss "please keep the child
        in view". Pages ignore a number they have shown already."""
        self.stalled_streams: set[str] = set()
        """Party streams ("family:video") that stopped arriving while live (media health)."""
        self.vision_behind: set[str] = set()
        """Party roles whose face checks are falling behind (vision health): staff are told."""
        self.listeners: list[Callable[[], None]] = []
        """Called after every change of state or pause reasons (persistence, metrics)."""
        self.identity: dict[str, SideIdentity] = {}
        """Each party side's check before the call (relay/calls/identity_gate.py)."""
        self._staff_must_resume = bool(getattr(call.policy_settings, "staff_must_resume", False))
        self._schedule()

    @property
    def awaiting_staff(self) -> set[str]:
        return set(self._awaiting_staff)

    def restore(self, pause_reasons: set[str], awaiting_staff: set[str]) -> None:
        """Pauses that were in force before a relay restart stay in force."""
        self.pause_reasons |= pause_reasons
        self._awaiting_staff |= awaiting_staff & pause_reasons
        self._apply("restored")

    def _changed(self) -> None:
        if not self.fenced:
            self._notify_listeners()

    def _notify_listeners(self) -> None:
        for listener in self.listeners:
            try:
                listener()
            except Exception:  # persistence trouble must not stop the call's own logic
                log.exception("policy listener failed for call %s", self.call.id)

    # --- time ----------------------------------------------------------------------------

    def seconds_left(self) -> float:
        return max(0.0, self.call.ends_at - self._clock())

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        now = self._clock()
        if now < self.call.starts_at:
            self.pause_reasons.add("before_start")
            self._timers.append(loop.call_later(self.call.starts_at - now, self._slot_started))
        for before in self.config.warn_before_end_s:
            delay = self.call.ends_at - before - now
            if delay > 0:
                self._timers.append(loop.call_later(delay, self._warn))
        self._timers.append(loop.call_later(max(0.0, self.call.ends_at - now), self.end, "time_limit"))
        self._apply()

    def _slot_started(self) -> None:
        self._lift("before_start", "slot_started")

    def _warn(self) -> None:
        if self.state == "ended":
            return
        left = round(self.seconds_left())
        self._audit("warning", {"seconds_left": left})
        self.call.broadcast("warning", seconds_left=left, ends_at=self.call.ends_at)

    # --- legs ----------------------------------------------------------------------------

    def leg_joined(self, role: str, rejoined: bool = False) -> None:
        timer = self._grace.pop(role, None)
        if timer is not None:
            timer.cancel()
        self._audit("rejoin" if rejoined else "join", {"role": role})
        if role != "watcher":
            self._apply("rejoined" if rejoined else f"{role}_joined")
            self.call.request_keyframes("join")
            leg = self.call.legs.get(role)
            if self.last_message is not None and leg is not None:
                leg.notify("notice", {**self.last_message, "replayed": True})
        else:
            self.call.request_keyframes("watch")

    def leg_left(self, role: str, dropped: bool) -> None:
        """A party left on purpose (``dropped`` False) or its connection was lost."""
        if self.state == "ended" or self.fenced:
            return
        self._audit("drop" if dropped else "leave", {"role": role})
        if role == "watcher":
            return
        if not dropped:
            self.end("left")
            return
        grace = min(self.config.reconnect_grace_s, self.seconds_left())
        loop = asyncio.get_running_loop()
        self._grace[role] = loop.call_later(grace, self.end, "leg_lost")
        self._apply(f"{role}_reconnecting")

    # --- pausing -------------------------------------------------------------------------

    def staff_pause(self, staff: str, note: str = "") -> None:
        self._audit("staff_pause", {"staff": staff, "note": note})
        self._add("staff", "staff_pause")

    def staff_resume(self, staff: str) -> set[str]:
        """Lift the staff pause and any vision pause awaiting staff; returns what still holds
        (a vision pause whose picture has not cleared, the slot not started)."""
        self._audit("staff_resume", {"staff": staff})
        reasons = {"staff"} | {r for r in self._awaiting_staff}
        self._awaiting_staff.clear()
        for r in reasons:
            self.pause_reasons.discard(r)
        self._apply("staff_resume")
        if not self.pause_reasons:
            self.call.request_keyframes("resume")
        return set(self.pause_reasons)

    def staff_end(self, staff: str) -> None:
        self._audit("staff_end", {"staff": staff})
        self.end("staff")

    def vision_count(self, role: str, count: int) -> None:
        """Vision's latest confirmed face count for one side (shown to staff)."""
        if self.state != "ended":
            self.faces[role] = count

    def vision_paused(self, role: str) -> bool:
        """A vision pause for ``role`` is in force (a new sampler must start over the limit,
        or a rejoined leg's clear picture would never lift it)."""
        return f"vision:{role}" in self.pause_reasons

    def set_approved_faces(self, role: str, approved: int, why: str) -> None:
        """A side's approved head count changed mid-call (a visitor's approval revoked)."""
        leg = self.call.legs.get(role)
        if self.state == "ended" or leg is None:
            return
        leg.approved_faces = max(0, approved)
        self._audit("approved_faces", {"role": role, "approved": leg.approved_faces, "why": why})
        for listener in self.approval_listeners:
            listener(role, leg.approved_faces)
        self.call.broadcast("state", **self.describe())
        self._changed()

    def vision_over_limit(self, role: str, count: int, approved: int, evidence: Any = None) -> None:
        key = f"vision:{role}"
        timer = self._clear_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self.alerts += 1
        self.faces[role] = count
        detail: dict[str, Any] = {"role": role, "count": count, "approved": approved}
        if self.call.is_legal:
            # legal calls: faces are counted and the pause audited, but no picture is kept
            detail["evidence_withheld"] = "legal call"
        else:
            detail["evidence"] = evidence
        self._audit("vision_over_limit", detail)
        if key not in self.pause_reasons:
            metrics.PAUSES.labels("vision").inc()
        self._add(key, "vision_over_limit")

    def vision_cleared(self, role: str, count: int) -> None:
        key = f"vision:{role}"
        self._audit("vision_cleared", {"role": role, "count": count})
        self._clear_later(key, "vision_cleared")

    def identity_paused(self, role: str) -> bool:
        """An identity pause for ``role`` is in force (a rejoined leg starts unmatched)."""
        return f"identity:{role}" in self.pause_reasons

    def identity_unmatched(self, role: str, matches: list[Any], evidence: Any = None) -> None:
        """Vision confirmed (M of N checks) a face on ``role``'s camera that matches nobody
        enrolled for the booking: pause, like the count rule, with the evidence."""
        key = f"identity:{role}"
        timer = self._clear_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self.alerts += 1
        detail: dict[str, Any] = {"role": role, "matches": matches}
        if self.call.is_legal:
            detail["evidence_withheld"] = "legal call"
        else:
            detail["evidence"] = evidence
        self._audit("identity_unmatched", detail)
        if key not in self.pause_reasons:
            metrics.PAUSES.labels("vision").inc()
        self._add(key, "identity_unmatched")

    def identity_matched(self, role: str) -> None:
        """Every face on ``role``'s camera matches again: lifted by the count rule's rules."""
        self._audit("identity_matched", {"role": role})
        self._clear_later(f"identity:{role}", "identity_matched")

    def _clear_later(self, key: str, why: str) -> None:
        """A vision reason's picture is clear: lift it after ``resume_after_clear_s`` of calm,
        or wait for staff where the establishment says staff must resume."""
        if key not in self.pause_reasons:
            return
        if self._staff_must_resume:
            self._awaiting_staff.add(key)
            self.call.broadcast("state", **self.describe("awaiting_staff"))
            self._changed()
            return
        loop = asyncio.get_running_loop()
        old = self._clear_timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._clear_timers[key] = loop.call_later(
            self.config.resume_after_clear_s, self._lift, key, why
        )

    # --- the check before the call (relay/calls/identity_gate.py) -----------------------

    def identity_paused_for_check(self, role: str) -> bool:
        """``role`` is held by its check before the call."""
        return f"identity_check:{role}" in self.pause_reasons

    def held_for_check(self) -> frozenset[str]:
        """The party roles not admitted yet: held by their check before the call. The check
        is not part of the call, so their media is not recorded (``Call.held``, read by the
        recorder); in-call pauses are (evidence matters most then)."""
        return frozenset(r for r in PARTY_ROLES if f"identity_check:{r}" in self.pause_reasons)

    def identity_check_hold(self, role: str, needs_staff: bool = False) -> None:
        """A party leg joined: hold the call's media until its face is checked (or, where
        ``needs_staff``, until staff admit it: nobody enrolled where the establishment says
        staff must then admit)."""
        self.identity[role] = SideIdentity(status="needs_staff" if needs_staff else "checking")
        self._audit("identity_check_started", {"role": role, "needs_staff": needs_staff})
        if needs_staff:
            self._identity_alert(role, "nobody_enrolled", [])
        self._tell_identity(role)
        self._add(f"identity_check:{role}", "identity_check")

    def identity_check_skipped(self, role: str) -> None:
        """Nobody approved for ``role`` is enrolled: the leg joins unchecked, audited and
        shown to staff as not checked (never silently)."""
        if self.state == "ended":
            return
        self.identity[role] = SideIdentity(status="not_checked")
        self._audit("identity_check_skipped", {"role": role, "why": "nobody_enrolled"})
        self._tell_identity(role)
        if f"identity_check:{role}" in self.pause_reasons:  # restored from before a restart
            self._lift(f"identity_check:{role}", "identity_check_skipped")
        else:
            self._changed()

    def identity_check_result(self, role: str, result: Any) -> None:
        """One check of ``role``'s camera (vision.identity_precall.PrecallResult): guidance
        to the leg, an alert to staff after too many failures, admission when it passes."""
        side = self.identity.get(role)
        key = f"identity_check:{role}"
        if side is None or key not in self.pause_reasons or self.state == "ended":
            return
        side.checks, side.failures, side.finding = result.checks, result.failures, result.finding
        side.faces = [{"box": [float(v) for v in f.box], "person": f.person,
                       "distance": f.distance} for f in result.faces]
        side.evidence_jpeg = None if self.call.is_legal else result.evidence_jpeg
        matches = [{"person": f["person"], "distance": f["distance"]} for f in side.faces]
        if result.admitted:
            side.status, side.finding = "matched", None
            self._audit("identity_check_passed", {"role": role, "matches": matches,
                                                  "checks": side.checks})
            self._tell_identity(role)
            self._lift(key, "identity_check_passed")
            return
        if not side.alerted and side.failures >= self.config.identity_precall_alert_after:
            self._identity_alert(role, "no_match", matches)
        self._tell_identity(role)
        self._changed()

    def identity_check_unavailable(self, role: str) -> None:
        """The check cannot run (the gallery did not load): held for staff, never passed."""
        side = self.identity.get(role)
        if side is None or self.state == "ended" or side.status == "needs_staff":
            return
        side.status = "needs_staff"
        self._identity_alert(role, "check_unavailable", [])
        self._tell_identity(role)
        self._changed()

    def identity_check_admit(self, role: str, staff: str, note: str = "") -> bool:
        """A member of staff admits ``role`` by hand; audited with the last frame (withheld on
        legal calls). False when that side is not held by its check."""
        key = f"identity_check:{role}"
        side = self.identity.get(role)
        if side is None or key not in self.pause_reasons or self.state == "ended":
            return False
        detail: dict[str, Any] = {"role": role, "staff": staff, "note": note,
                                  "checks": side.checks, "failures": side.failures,
                                  "matches": [{"person": f["person"], "distance": f["distance"]}
                                              for f in side.faces]}
        if self.call.is_legal:
            detail["evidence_withheld"] = "legal call"
        else:
            boxes = [f["box"] for f in side.faces]
            detail["evidence"] = Evidence(side.evidence_jpeg, boxes) if side.evidence_jpeg else None
        side.status, side.admitted_by, side.finding = "admitted", staff, None
        self._audit("identity_check_admitted", detail)
        self._tell_identity(role)
        self._lift(key, "identity_check_admitted")
        return True

    def _identity_alert(self, role: str, why: str, matches: list[Any]) -> None:
        side = self.identity[role]
        side.alerted = True
        self.alerts += 1
        detail: dict[str, Any] = {"role": role, "why": why, "failures": side.failures,
                                  "matches": matches}
        self._audit("identity_check_alert", detail)

    def _tell_identity(self, role: str) -> None:
        """The joining leg's own guidance (the other side only sees the pause reason)."""
        leg = self.call.legs.get(role)
        side = self.identity.get(role)
        if leg is not None and side is not None:
            leg.notify("identity_check", {"role": role, **side.public()})

    # --- staff messages ----------------------------------------------------------------

    def staff_message(self, staff: str, text: str) -> int:
        """A short message from staff into the call ("please keep the child in view"): both
        sides show it until they dismiss it; audited with the call. Returns its number."""
        if self.state == "ended":
            return 0
        self.messages_sent += 1
        self._audit("staff_message", {"staff": staff, "text": text, "number": self.messages_sent})
        self.last_message = {"id": self.messages_sent, "text": text, "sender": "staff"}
        self.call.broadcast("notice", **self.last_message)
        return self.messages_sent

    # --- media health (relay/calls/media_health.py observes, this records and tells) ------

    def stream_stalled(self, role: str, kind: str) -> None:
        """A side's stream stopped arriving: both pages and staff are told; the sender's page
        restarts its track."""
        key = f"{role}:{kind}"
        if self.state == "ended" or key in self.stalled_streams:
            return
        self.stalled_streams.add(key)
        self._audit("media_stalled", {"role": role, "kind": kind})
        self.call.broadcast("media", role=role, kind=kind, stalled=True,
                            message=STREAM_TEXT.get(kind, kind))
        self._changed()

    def stream_recovered(self, role: str, kind: str) -> None:
        key = f"{role}:{kind}"
        if key not in self.stalled_streams:
            return
        self.stalled_streams.discard(key)
        if self.state == "ended":
            return
        self._audit("media_recovered", {"role": role, "kind": kind})
        self.call.broadcast("media", role=role, kind=kind, stalled=False, message="")
        self._changed()

    # --- vision health (relay/calls/vision_health.py observes, this records) --------------

    def vision_checks_behind(self, role: str, rate: float, latency_p95_s: float | None) -> None:
        """A side's face checks fell behind (the detector is overloaded): the call goes on,
        staff see it on the console and in the audit trail."""
        if self.state == "ended" or role in self.vision_behind:
            return
        self.vision_behind.add(role)
        self._audit("vision_behind", {"role": role, "samples_per_s": round(rate, 2),
                                      "decision_latency_p95_s": latency_p95_s})

    def vision_checks_caught_up(self, role: str) -> None:
        if role not in self.vision_behind:
            return
        self.vision_behind.discard(role)
        if self.state != "ended":
            self._audit("vision_caught_up", {"role": role})

    def _add(self, reason: str, why: str) -> None:
        if self.state == "ended":
            return
        if reason == "staff" and reason not in self.pause_reasons:
            metrics.PAUSES.labels("staff").inc()
        self.pause_reasons.add(reason)
        self._apply(why)

    def _lift(self, reason: str, why: str) -> None:
        self._clear_timers.pop(reason, None)
        if reason not in self.pause_reasons or self.state == "ended":
            return
        self.pause_reasons.discard(reason)
        self._apply(why)
        if not self.pause_reasons:
            self.call.request_keyframes("resume")

    def interrupt(self) -> None:
        """The relay process is going away (a deploy): the call is not over.

        Legs are told, their sockets close, and they rejoin the next process with the same
        token; relay/calls/runtime.py carries the call's state across (or ends it as a technical
        failure if nobody returns).
        """
        if self.state == "ended" or self.interrupted or self.fenced:
            return
        self.interrupted = True  # once: a draining node tells its legs before shutdown does
        for timer in [*self._timers, *self._grace.values(), *self._clear_timers.values()]:
            timer.cancel()
        self._audit("relay_shutdown", {"state": self.state})
        self.call.broadcast("restarting", message=RESTART_TEXT)

    def hand_over(self) -> None:
        """Many nodes: the call was re-placed on another node while this one was cut off
        from Redis, and that node runs it now. The legs are told the relay is restarting
        (they rejoin through the front address and land on the owner); this copy ends
        nothing and writes nothing from now on (no audit, no outcome, no runtime row):
        the owner writes them (docs/multinode.md, "Fencing")."""
        if self.state == "ended" or self.fenced:
            return
        self.fenced = True
        for timer in [*self._timers, *self._grace.values(), *self._clear_timers.values()]:
            timer.cancel()
        self._timers.clear()
        self._grace.clear()
        self._clear_timers.clear()
        self.call.broadcast("restarting", message=RESTART_TEXT)
        # over here, not over: what this node holds for the call (recorder segment, vision
        # samplers) closes as at an end; the listeners that write shared records look at
        # ``fenced`` and write nothing
        self.state, self.reason = "ended", "handed_over"
        self.call.set_paused(True)
        self._notify_listeners()
        self.ended.set()

    # --- state ---------------------------------------------------------------------------

    def _derive(self) -> str:
        if len(self.call.legs) < 2:
            return "waiting" if self.call.legs else "scheduled"
        return "paused" if self.pause_reasons else "live"

    def _apply(self, why: str | None = None) -> None:
        if self.state == "ended" or self.fenced:
            return
        self.call.set_paused(bool(self.pause_reasons))
        self.call.set_held(self.held_for_check())
        new = self._derive()
        if new in ("live", "paused"):
            self.went_live = True
        if new != self.state or why in ("staff_pause", "vision_over_limit", "identity_unmatched",
                                        "identity_check", "identity_check_passed",
                                        "identity_check_skipped", "identity_check_admitted"):
            old, self.state = self.state, new
            if why:
                self.reason = why
            if old != new:
                self._audit("state", {"from": old, "to": new, "reason": self.reason})
                log.info("call %s: %s -> %s (%s)", self.call.id, old, new, self.reason,
                         extra={"call_id": self.call.id})
            self.call.broadcast("state", **self.describe())
        self._changed()

    def describe(self, note: str | None = None) -> dict[str, Any]:
        reasons = sorted(self.pause_reasons)
        return {
            "state": self.state,
            "reason": self.reason,
            "paused_because": [REASON_TEXT.get(r, r) for r in reasons],
            "pause_reasons": reasons,
            "awaiting_staff": note == "awaiting_staff" or bool(self._awaiting_staff),
            "ends_at": self.call.ends_at,
            "seconds_left": round(self.seconds_left()),
        }

    def end(self, reason: str) -> None:
        if self.state == "ended" or self.fenced or not self.still_owner():
            return
        for timer in [*self._timers, *self._grace.values(), *self._clear_timers.values()]:
            timer.cancel()
        self._timers.clear()
        self._grace.clear()
        self._clear_timers.clear()
        old, self.state, self.reason = self.state, "ended", reason
        self.call.set_paused(True)
        technical = reason in TECHNICAL_ENDS
        self._audit("state", {"from": old, "to": "ended", "reason": reason})
        log.info("call %s ended: %s", self.call.id, reason, extra={"call_id": self.call.id})
        self.call.broadcast(
            "state", state="ended", reason=reason, message=END_TEXT.get(reason, reason),
            ends_at=self.call.ends_at, seconds_left=0,
        )
        self._changed()
        try:
            outcome = "failed" if technical else "completed"
            self.outcome_guard(lambda: self._on_outcome(outcome, reason))
        except Exception:  # the outcome is bookkeeping: never let it break the end itself
            log.exception("recording the outcome of call %s failed", self.call.id)
        self.ended.set()
