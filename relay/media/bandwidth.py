"""Link quality per leg and bandwidth that fits the receiver (issue 17).

A forwarding relay passes the sender's encoding through untouched, so the sender must encode
for its viewer's link, not its own. Once a tick, for each party leg:

* **quality**: loss (uplink from aiortc's receiver statistics, downlink from the viewer's
  receiver reports less what the sender's uplink already lost), RTT and jitter (receiver reports), estimated downlink bandwidth (the
  viewer's REMB). Shown in the console's call row, observed in metrics (labels: role and
  direction only), and a leg whose own link stays poor is told so (``quality`` message).
* **cap**: the sending leg is sent a REMB of min(its viewer's estimate, the relay's own
  estimate of the sender's uplink), and aiortc's own REMBs to it are capped to the same.
  The viewer's estimate is its REMB, or, where it sends none, the forwarded rate cut in
  proportion to the loss its receiver reports.

Staff watchers are left out of the minimum: a watcher on a thin link must not degrade the
family's and the prisoner's picture. A watcher gets what the sender encodes for the other
party and its own NACKs and keyframe requests recover what it can (docs/network.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from protocol import aiortc_glue as glue
from relay import metrics
from relay.calls.call import Call, Leg
from relay.calls.registry import CallRegistry
from relay.config import Config
from relay.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_QUALITY: weakref.WeakKeyDictionary[Call, dict[str, dict[str, Any]]] = weakref.WeakKeyDictionary()


def call_quality(call: Call) -> dict[str, dict[str, Any]]:
    """The latest link quality of each party leg of ``call`` (the console's call row)."""
    return dict(_QUALITY.get(call, {}))


def _own_share(end_to_end: float, upstream: float) -> float:
    """The part of a viewer's reported loss its own downlink caused.

    The relay forwards what reached it, so a viewer's receiver report counts the sender's
    uplink losses too (as sequence gaps the relay passes on). Losses compose as survival
    probabilities, (1 - e2e) = (1 - up)(1 - down), so the downlink's share is what is left
    after the uplink's; without this a family's bad uplink would be reported as the
    prisoner's bad link."""
    if upstream >= 1.0:
        return 0.0
    return max(0.0, 1.0 - (1.0 - end_to_end) / (1.0 - upstream))


@dataclass
class _LegState:
    expected: int = 0
    received: int = 0
    bytes_to: int = 0
    """Bytes forwarded to this leg's video sender so far (for the loss-based estimate)."""
    at: float = 0.0
    poor_ticks: int = 0
    good_ticks: int = 0
    told_poor: bool = False
    last_cap: int | None = None
    last_cap_at: float = 0.0
    quality: dict[str, Any] = field(default_factory=dict)


class LinkMonitor:
    """One task for the process: reads every party leg's RTCP once a tick."""

    def __init__(self, registry: CallRegistry, config: Config) -> None:
        self.registry = registry
        self.config = config
        self._legs: weakref.WeakKeyDictionary[Leg, _LegState] = weakref.WeakKeyDictionary()
        self._task: asyncio.Task[None] | None = None
        self.rembs_sent = 0

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.link_tick_s)
            for live in list(self.registry.calls.values()):
                if live.policy.state == "ended":
                    continue
                try:
                    await self.tick(live.call)
                except Exception:  # a leg closing mid-read must not stop the monitor
                    log.debug("link read failed for call %s", live.call.id, exc_info=True)

    async def tick(self, call: Call) -> None:
        now = time.monotonic()
        qualities = {}
        for role, leg in list(call.legs.items()):
            qualities[role] = await self._quality(call, leg, now)
        _QUALITY[call] = qualities
        for leg in list(call.legs.values()):
            await self._cap(call, leg, now)

    # --- quality ---------------------------------------------------------------------------

    async def _quality(self, call: Call, leg: Leg, now: float) -> dict[str, Any]:
        state = self._legs.setdefault(leg, _LegState())
        cfg = self.config
        expected = received = 0
        up_jitter = 0.0
        for producer in leg.producers.values():
            e, r, j = glue.uplink_counts(producer.receiver)
            expected, received, up_jitter = expected + e, received + r, max(up_jitter, j)
        d_expected = expected - state.expected
        up_loss = (
            max(0.0, (d_expected - (received - state.received)) / d_expected)
            if d_expected > 0
            else 0.0
        )
        state.expected, state.received = expected, received
        down_loss, down_jitter, rtt = 0.0, 0.0, None
        for (source, _kind), sender in list(leg.senders.items()):
            report = await glue.downlink_report(sender)
            if report is None:
                continue
            down_loss = max(down_loss, _own_share(report["loss"], self._uplink_loss(call, source)))
            down_jitter = max(down_jitter, report["jitter_s"])
            if report["rtt_s"] is not None:
                rtt = max(rtt or 0.0, report["rtt_s"])
        down_bps = self._viewer_estimate(leg, state, down_loss, now)
        loss = max(up_loss, down_loss)
        if (
            loss >= cfg.link_poor_loss
            or (rtt or 0) >= cfg.link_poor_rtt_s
            or (down_bps is not None and down_bps < cfg.link_poor_bps)
        ):
            grade = "poor"
        elif loss >= cfg.link_fair_loss or (rtt or 0) >= cfg.link_poor_rtt_s / 2:
            grade = "fair"
        else:
            grade = "good"
        quality = {
            "grade": grade,
            "loss_up": round(up_loss, 4),
            "loss_down": round(down_loss, 4),
            "rtt_ms": None if rtt is None else round(rtt * 1000),
            "jitter_ms": round(max(up_jitter, down_jitter) * 1000, 1),
            "bandwidth_kbps": None if down_bps is None else round(down_bps / 1000),
        }
        state.quality = quality
        role = leg.role
        metrics.LINK_LOSS.labels(role, "up").observe(up_loss)
        metrics.LINK_LOSS.labels(role, "down").observe(down_loss)
        metrics.LINK_JITTER.labels(role, "up").observe(up_jitter)
        metrics.LINK_JITTER.labels(role, "down").observe(down_jitter)
        if rtt is not None:
            metrics.LINK_RTT.labels(role).observe(rtt)
        if down_bps is not None:
            metrics.LINK_BANDWIDTH.labels(role).observe(down_bps)
        self._tell(leg, state, grade)
        return quality

    def _uplink_loss(self, call: Call, source_role: str) -> float:
        """The loss on the sending leg's own uplink at its last tick (0 before one)."""
        source = call.legs.get(source_role)
        state = self._legs.get(source) if source is not None else None
        return float(state.quality.get("loss_up", 0.0)) if state is not None else 0.0

    def _viewer_estimate(
        self, viewer: Leg, state: _LegState, loss: float, now: float
    ) -> float | None:
        """What ``viewer``'s downlink takes: its REMB, else the forwarded rate cut by loss."""
        video = [s for (source, kind), s in viewer.senders.items() if kind == "video"]
        if not video:
            return None
        sender = video[0]
        remb = glue.viewer_remb(sender)
        sent = glue.sent_octets(sender)
        elapsed = now - state.at if state.at else 0.0
        rate = (sent - state.bytes_to) * 8 / elapsed if elapsed > 0 else 0.0
        state.bytes_to, state.at = sent, now
        if remb is not None and time.monotonic() - remb[1] <= self.config.remb_fresh_s:
            return float(remb[0])
        if loss > self.config.link_poor_loss and rate > 0:
            return rate * (1 - 0.5 * loss)
        return None

    def _tell(self, leg: Leg, state: _LegState, grade: str) -> None:
        """A gentle notice after a few poor ticks in a row; cleared after a few good ones."""
        if grade == "poor":
            state.poor_ticks, state.good_ticks = state.poor_ticks + 1, 0
        else:
            state.good_ticks, state.poor_ticks = state.good_ticks + 1, 0
        if not state.told_poor and state.poor_ticks >= self.config.link_poor_ticks:
            state.told_poor = True
            metrics.LINK_POOR.labels(leg.role).inc()
            leg.notify("quality", {"grade": "poor", **state.quality})
        elif state.told_poor and state.good_ticks >= self.config.link_clear_ticks:
            state.told_poor = False
            leg.notify("quality", {"grade": "good", **state.quality})

    # --- the cap ---------------------------------------------------------------------------

    async def _cap(self, call: Call, sender_leg: Leg, now: float) -> None:
        producer = sender_leg.producers.get("video")
        if producer is None:
            return
        receiver = producer.receiver
        if not self.config.remb_cap:
            glue.set_remb_cap(receiver, None)
            return
        # the other party only: watchers never drag the call down
        viewers = [leg for leg in call.legs.values() if leg is not sender_leg]
        estimates = []
        for viewer in viewers:
            state = self._legs.get(viewer)
            kbps = state.quality.get("bandwidth_kbps") if state else None
            if kbps is not None:
                estimates.append(kbps * 1000)
        if not estimates:
            glue.set_remb_cap(receiver, None)
            return
        own = glue.own_remb(receiver)
        cap = int(max(self.config.remb_min_bps, min(estimates + ([own] if own else []))))
        glue.set_remb_cap(receiver, cap)
        state = self._legs.setdefault(sender_leg, _LegState())
        changed = state.last_cap is None or abs(cap - state.last_cap) > 0.1 * state.last_cap
        if changed or now - state.last_cap_at >= self.config.link_tick_s:
            if await glue.send_remb(receiver, cap):
                state.last_cap, state.last_cap_at = cap, now
                self.rembs_sent += 1
                metrics.REMB_SENT.inc()
