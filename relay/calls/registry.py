"""The process's live calls, and how a leg's offer becomes a wired peer connection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCSessionDescription

from protocol import messages as m
from protocol.aiortc_glue import (
    adopt_transceiver,
    announce_address,
    close_peer_connection,
    close_refused,
    new_peer_connection,
    offered_mimes,
    restrict_codecs,
    share_media_port,
)
from protocol.vocabulary import PARTY_ROLES
from relay import metrics
from relay.calls.call import AdmissionLike, Call, Leg, Notify
from relay.calls.policy import CallPolicy
from relay.config import Config
from relay.media.forwarder import Producer

log = logging.getLogger(__name__)

CallHook = Callable[[Call, CallPolicy], None]
"""Runs when a call is created: attaches recorder, vision and metrics to it."""
AdmissionCheck = Callable[[AdmissionLike], None]
"""Runs before a party's join creates a new call; raises ProtocolError to refuse it (vision
capacity: relay/calls/vision_health.py). Calls already running are never checked again."""


@dataclass
class LiveCall:
    call: Call
    policy: CallPolicy
    video_mime: str | None = None

    @property
    def faces(self) -> dict[str, int]:
        """Latest face count per party role (written by the policy engine alone)."""
        return dict(self.policy.faces)

    @property
    def alerts(self) -> int:
        """Vision over-limit confirmations so far (counted by the policy engine)."""
        return self.policy.alerts


class CallRegistry:
    def __init__(
        self,
        config: Config,
        audit: Callable[[int, str, dict[str, Any]], None] | None = None,
        on_outcome: Callable[[int, str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.calls: dict[int, LiveCall] = {}
        self.hooks: list[CallHook] = []
        self.admission_checks: list[AdmissionCheck] = []
        self.accepting = True
        self._audit = audit
        self._on_outcome = on_outcome
        self._joining: set[tuple[int, str]] = set()

    def get(self, booking_id: int) -> LiveCall | None:
        return self.calls.get(booking_id)

    async def finish(self, live: LiveCall) -> None:
        """Close the connections of a call its policy has ended (from outside a leg)."""
        if live.policy.state == "ended":
            await self._finish(live)

    def forget(self, booking_id: int) -> None:
        """Drop an ended call so the booking's next join starts a new one (rescheduled)."""
        live = self.calls.get(booking_id)
        if live is not None and live.policy.state == "ended":
            del self.calls[booking_id]

    def hand_over(self, booking_id: int) -> bool:
        """Many nodes: another node runs this call now. Its legs are told to reconnect and
        the local copy is dropped without a word to the shared records (the policy's
        ``hand_over``); a later join here starts from those records. False when there
        was no running call to hand over."""
        live = self.calls.get(booking_id)
        if live is None or live.policy.state == "ended" or live.policy.fenced:
            return False
        del self.calls[booking_id]
        live.policy.hand_over()
        return True

    def _live_call(self, admission: AdmissionLike) -> LiveCall:
        live = self.calls.get(admission.booking_id)
        if live is not None and live.policy.state != "ended":
            return live
        if live is not None:
            raise m.ProtocolError(m.E_CALL_ENDED, "this call has ended")
        if admission.role in PARTY_ROLES:
            for check in self.admission_checks:
                check(admission)
        call = Call(admission, self.config.keyframe_throttle_s)
        bid = call.id
        audit = (lambda kind, detail: self._audit(bid, kind, detail)) if self._audit else None
        outcome = (
            (lambda result, reason: self._on_outcome(bid, result, reason))
            if self._on_outcome
            else None
        )
        policy = CallPolicy(call, self.config, audit=audit, on_outcome=outcome)
        live = LiveCall(call, policy)
        self.calls[bid] = live
        for hook in self.hooks:
            hook(call, policy)
        return live

    def calls_with_media(self) -> int:
        """Calls not ended with a party connected, joining, or within its reconnect grace."""
        joining = {bid for bid, _role in self._joining}
        return sum(
            1
            for bid, live in self.calls.items()
            if live.policy.state != "ended"
            and (any(r in live.call.legs for r in PARTY_ROLES) or live.policy._grace
                 or bid in joining)
        )

    async def join(
        self, admission: AdmissionLike, offer_sdp: str, notify: Notify
    ) -> tuple[LiveCall, Leg, str]:
        """Negotiate a leg's peer connection and wire it in; returns the answer SDP."""
        if not self.accepting:
            raise m.ProtocolError(m.E_SHUTTING_DOWN, "the relay is shutting down; try again")
        live = self._live_call(admission)
        call, role = live.call, admission.role
        key = (call.id, role)
        if role in PARTY_ROLES and (role in call.legs or key in self._joining):
            raise m.ProtocolError(
                m.E_LEG_CONNECTED, f"the {role} side of this call is already connected"
            )
        self._joining.add(key)
        pc = new_peer_connection()
        metrics.watch_connection(pc, role)
        try:
            leg = Leg(
                role=role,
                participant=admission.participant,
                display_name=admission.display_name,
                pc=pc,
                notify=notify,
                approved_faces=admission.approved_faces,
            )
            answer = await self._negotiate(live, leg, offer_sdp)
            rejoined = role in PARTY_ROLES and role in live.policy._grace
            if live.policy.fenced:  # handed over while this leg negotiated: a retry finds it
                raise m.ProtocolError(m.E_CLUSTER, "this call moved to another relay node")
            if live.policy.state == "ended":
                raise m.ProtocolError(m.E_CALL_ENDED, "this call has ended")
            if leg.is_watcher:
                call.add_watcher(leg)
            else:
                call.add_party(leg)
            live.policy.leg_joined(role, rejoined=rejoined)
            return live, leg, answer
        except BaseException:
            await close_refused(pc)
            raise
        finally:
            self._joining.discard(key)

    async def _negotiate(self, live: LiveCall, leg: Leg, offer_sdp: str) -> str:
        pc = leg.pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc raises many kinds for bad SDP
            raise m.ProtocolError(m.E_BAD_SDP, f"the offer could not be used: {exc}"[:300]) from None
        transceivers = pc.getTransceivers()
        audio = [t for t in transceivers if t.kind == "audio"]
        video = [t for t in transceivers if t.kind == "video"]
        wanted = 2 if leg.is_watcher else 1
        if len(video) != wanted or len(audio) not in (0, wanted) or len(audio) + len(video) != len(transceivers):
            raise m.ProtocolError(
                m.E_BAD_SDP,
                f"a {leg.role} offer carries {wanted} video and {wanted} (or no) audio sections",
            )
        mime = live.video_mime or self._choose_video_codec(video[0])
        for t in video:
            if not restrict_codecs(t, mime):
                raise m.ProtocolError(m.E_BAD_SDP, f"the offer lacks {mime}, which this call uses")
        for t in audio:
            if not restrict_codecs(t, "audio/opus"):
                raise m.ProtocolError(m.E_BAD_SDP, "the offer lacks audio/opus")
        live.video_mime = mime
        call = live.call
        if leg.is_watcher:
            for source, t in zip(PARTY_ROLES, video, strict=True):
                _, sender = adopt_transceiver(t, None, None)
                leg.senders[(source, "video")] = sender
                t.direction = "sendonly"
            for source, t in zip(PARTY_ROLES, audio, strict=False):
                _, sender = adopt_transceiver(t, None, None)
                # legal calls: staff may see, never hear
                t.direction = "inactive" if call.is_legal else "sendonly"
                if not call.is_legal:
                    leg.senders[(source, "audio")] = sender
        else:
            other = "prison" if leg.role == "family" else "family"
            for t in (*audio, *video):
                receiver, sender = adopt_transceiver(t, None, None)
                leg.producers[t.kind] = Producer(
                    t.kind,
                    receiver,
                    self.config.keyframe_throttle_s,
                    f"{leg.role}_to_{other}",
                )
                leg.senders[(other, t.kind)] = sender
                t.direction = "sendrecv"
        share_media_port(pc)  # one UDP port for every leg, when configured (issue 17)
        try:
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:  # e.g. a section without a direction: aiortc's ValueError
            raise m.ProtocolError(m.E_BAD_SDP, f"no answer to this offer: {exc}"[:300]) from None
        return announce_address(pc.localDescription.sdp, self.config.announced_address)

    def _choose_video_codec(self, transceiver: Any) -> str:
        offered = {mime.lower() for mime in offered_mimes(transceiver)}
        for mime in self.config.video_codecs:
            if mime.lower() in offered:
                return mime
        raise m.ProtocolError(
            m.E_BAD_SDP, f"no supported video codec offered (this relay uses {self.config.video_codecs})"
        )

    async def leave(self, live: LiveCall, leg: Leg, dropped: bool) -> None:
        live.call.remove(leg)
        await close_peer_connection(leg.pc)
        live.policy.leg_left(leg.role, dropped=dropped)
        if live.policy.state == "ended":
            await self._finish(live)

    async def _finish(self, live: LiveCall) -> None:
        """Close every remaining connection of an ended call (watchers included).

        The ended call stays in ``calls``: a late join gets "call_ended" from here.
        """
        for leg in live.call.everyone():
            live.call.remove(leg)
            await close_peer_connection(leg.pc)

    def update_call_gauges(self) -> None:
        counts: dict[tuple[str, str], int] = {}
        for live in self.calls.values():
            key = (live.policy.state, str(live.call.establishment_id))
            counts[key] = counts.get(key, 0) + 1
        metrics.CALLS.clear()
        for (state, est), n in counts.items():
            metrics.CALLS.labels(state, est).set(n)
