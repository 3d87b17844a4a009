"""Shared test helpers: a relay on loopback, pre-encoded clips, admissions."""

from __future__ import annotations

import time
from typing import Any

from protocol import messages as m
from protocol.media import encode_tone, encode_video, moving_pattern
from relay.records.store import Admission, EstablishmentPolicy


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


_CLIPS: dict[Any, Any] = {}


def video_clip(seed: int = 0, frames: int = 60, keyframe_interval: int = 30):
    key = ("v", seed, frames, keyframe_interval)
    if key not in _CLIPS:
        _CLIPS[key] = encode_video(
            moving_pattern(320, 240, frames, seed=seed),
            bitrate=400_000,
            keyframe_interval=keyframe_interval,
        )
    return _CLIPS[key]


def tone_clip(frequency: float = 440.0):
    key = ("a", frequency)
    if key not in _CLIPS:
        _CLIPS[key] = encode_tone(1.0, frequency)
    return _CLIPS[key]
