"""Shared test helpers: a relay on loopback, pre-encoded clips, admissions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bench.small_clips import tone_clip as tone_clip  # re-exported: the tests take them from here
from bench.small_clips import video_clip as video_clip
from protocol import messages as m
from relay.records.store import Admission, EstablishmentPolicy

T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T]], timeout: float, what: str,
                interval: float = 0.25) -> T:
    """The first truthy value ``check()`` returns within ``timeout`` seconds; fails naming
    ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def establishment(**settings: Any) -> EstablishmentPolicy:
    """A test establishment's policy: the store's defaults, with ``settings`` changed."""
    return EstablishmentPolicy(establishment_id=1, name="HMP Test", **settings)


def admission(
    booking_id: int,
    role: str,
    *,
    call_type: str = "social",
    participant: str = "visitor:1",
    display_name: str = "Test",
    approved_faces: int = 1,
    policy: EstablishmentPolicy | None = None,
    seconds: float = 600.0,
) -> Admission:
    """What the store admits a leg with, for a call open from a second ago (core tests that
    are not about vetting)."""
    now = time.time()
    return Admission(booking_id, 1, call_type, now - 1, now + seconds, role, participant,
                     display_name, approved_faces, policy or establishment())


class TokenTable:
    """Relay admission for core tests that are not about vetting: token -> admission."""

    def __init__(self) -> None:
        self.table: dict[str, admission] = {}

    def add(self, token: str, admitted: Admission) -> str:
        self.table[token] = admitted
        return token

    async def __call__(self, token: str, now: float, remote: str) -> Admission:
        try:
            return self.table[token]
        except KeyError:
            raise m.ProtocolError("token_bad_signature", "this join link is not valid") from None


class RealTimeSender:
    """Offers a clip's frames to a vision leg in real time, as a sender would (the health
    figures and the sampling are on the wall clock), and answers the relay's keyframe
    request the way the tests' senders do: by starting the clip again (its first frame is
    a keyframe)."""

    def __init__(self, leg: Any, clip: list[Any], fps: float) -> None:
        self.leg, self.clip, self.fps = leg, clip, fps
        self.t0 = time.monotonic()
        self.i = 0

    async def play_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            f = self.clip[self.i % len(self.clip)]
            keyframe = f.keyframe or self.i % len(self.clip) == 0
            self.leg.offer_frame("VP8", f.data, keyframe, time.monotonic() - self.t0)
            self.i += 1
            await asyncio.sleep(max(0.0, self.t0 + self.i / self.fps - time.monotonic()))

    def answer_keyframe_request(self) -> None:
        if self.leg.keyframe_wanted(time.monotonic() - self.t0):
            self.i -= self.i % len(self.clip)
