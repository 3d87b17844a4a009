"""Vision health on a live node: export it, tell staff when a call's checks fall behind,
and refuse a new call the detector cannot take (issue 20).

Once a tick the detector service's figures (vision/health.py) become per-node gauges (no
per-call labels), each call's policy engine is told which of its sides are behind or have
caught up (the console shows it on the call's row and in a banner; the audit trail keeps
it), and the admission state is set. A new call is refused with ``vision_capacity`` when the
node already watches ``vision_max_legs`` legs, or, unless ``vision_admit_when_behind``, while
some legs' checks are behind. Calls already running are never cut for it.

A leg that fell behind is declared caught up only once it has been judged keeping up for a
whole health window: checks held up and then finished in a burst briefly fill the window's
count while it still holds the gap, and staff should not see the alert flap.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Counter, Gauge

from protocol import messages as m
from protocol.vocabulary import PARTY_ROLES
from relay.calls.call import AdmissionLike
from relay.calls.registry import CallRegistry
from relay.calls.vision_link import leg_key
from relay.config import Config
from relay.tasks import cancel_and_wait, every
from vision.health import VisionHealth
from vision.service import DetectorService

log = logging.getLogger(__name__)

E_VISION_CAPACITY = "vision_capacity"

LEGS = Gauge("relay_vision_legs", "Party video legs watched by the face detector")
CONFIGURED_RATE = Gauge(
    "relay_vision_configured_samples_per_leg_per_second",
    "Samples per leg per second the settings ask for (1 / sample_interval_s)",
)
RATE_MIN = Gauge(
    "relay_vision_leg_samples_per_second_min",
    "Lowest checks per second of any leg with video for the whole health window",
)
RATE_MEAN = Gauge(
    "relay_vision_leg_samples_per_second_mean",
    "Mean checks per second per leg with video for the whole health window",
)
LATENCY_P95 = Gauge(
    "relay_vision_decision_latency_p95_seconds",
    "Sampling-to-decision latency p95 over the health window, every leg",
)
QUEUE_DEPTH = Gauge("relay_vision_queue_depth", "Samples waiting for the detector")
IN_FLIGHT = Gauge("relay_vision_in_flight", "Decodes, waiting samples and detections under way")
BEHIND = Gauge("relay_vision_legs_behind", "Legs whose checks are behind (rate or latency)")
CAPACITY = Gauge("relay_vision_capacity_legs", "Legs this node admits calls for (0: no limit)")
ADMITTING = Gauge("relay_vision_admitting", "1 while new calls are admitted, 0 while refused")
BEHIND_EPISODES = Counter("relay_vision_behind_total", "Times a leg's checks fell behind", ["role"])


class VisionWatch:
    """One per relay process, started and stopped with the app."""

    def __init__(self, service: DetectorService, registry: CallRegistry, config: Config) -> None:
        self.service = service
        self.registry = registry
        self.config = config
        self.last: VisionHealth | None = None
        self.refusing = ""
        """Why new calls are refused now ("" while admitting), from the last tick."""
        self._behind: set[str] = set()
        self._keeping_up_since: dict[str, float] = {}
        """Behind legs judged keeping up since then (time.monotonic()), not yet caught up."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.service.enabled:
            CAPACITY.set(self.config.vision_max_legs)
            CONFIGURED_RATE.set(1.0 / self.config.sample_interval_s)
            ADMITTING.set(1)
            self._task = asyncio.ensure_future(
                every(self.config.vision_health_tick_s, self.tick, "vision health tick")
            )

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def tick(self) -> VisionHealth:
        cfg = self.config
        health = self.service.health(
            cfg.vision_health_window_s, cfg.vision_min_rate_fraction, cfg.vision_max_latency_s
        )
        self.last = health
        LEGS.set(health.legs)
        RATE_MIN.set(health.rate_min if health.rate_min is not None else float("nan"))
        RATE_MEAN.set(health.rate_mean if health.rate_mean is not None else float("nan"))
        LATENCY_P95.set(health.latency_p95_s if health.latency_p95_s is not None else float("nan"))
        QUEUE_DEPTH.set(health.queue_depth)
        IN_FLIGHT.set(health.in_flight)
        BEHIND.set(len(health.behind))
        self._tell_calls(health, time.monotonic())
        self.refusing = self._refusal(health)
        ADMITTING.set(0 if self.refusing else 1)
        return health

    def _tell_calls(self, health: VisionHealth, now: float) -> None:
        judged = {leg.leg_key: leg for leg in health.judged}
        behind_now: set[str] = set()
        for bid, live in list(self.registry.calls.items()):
            if live.policy.state == "ended":
                continue
            for role in PARTY_ROLES:
                key = leg_key(bid, role)
                leg = judged.get(key)
                if leg is not None and leg.behind:
                    behind_now.add(key)
                    self._keeping_up_since.pop(key, None)
                    if key not in self._behind:
                        BEHIND_EPISODES.labels(role).inc()
                        log.warning(
                            "call %s: %s side's face checks are behind (%.2f/s, p95 %s s)",
                            bid,
                            role,
                            leg.rate,
                            leg.latency_p95_s,
                            extra={"call_id": bid},
                        )
                    live.policy.vision_checks_behind(role, leg.rate, leg.latency_p95_s)
                elif key in self._behind and key not in self.service.legs:
                    live.policy.vision_checks_caught_up(role)  # its sampler is gone (it left)
                    self._keeping_up_since.pop(key, None)
                elif key in self._behind and leg is not None:
                    since = self._keeping_up_since.setdefault(key, now)
                    if now - since >= self.config.vision_health_window_s:
                        live.policy.vision_checks_caught_up(role)
                        del self._keeping_up_since[key]
                    else:
                        behind_now.add(key)  # keeping up, not yet for a whole window
                elif key in self._behind:
                    behind_now.add(key)  # no verdict this tick (a gap in its video): keep it
        self._behind = behind_now
        for key in set(self._keeping_up_since) - behind_now:
            del self._keeping_up_since[key]

    def _refusal(self, health: VisionHealth) -> str:
        if health.behind and not self.config.vision_admit_when_behind:
            return f"face checks are behind on {len(health.behind)} of {health.legs} watched legs"
        return ""

    def check_admission(self, admission: AdmissionLike) -> None:
        """Registry admission check: refuse a new call the detector cannot take."""
        if not self.service.enabled:
            return
        cap = self.config.vision_max_legs
        reason = self.refusing
        if not reason and cap and 2 * (self.registry.calls_with_media() + 1) > cap:
            reason = f"this relay already checks the most calls it can ({cap // 2})"
        if reason:
            raise m.ProtocolError(
                E_VISION_CAPACITY,
                f"the call cannot start on this relay now: {reason}; try again in a minute",
            )
