"""Shared test helpers: a relay on loopback, pre-encoded clips, admissions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from protocol import messages as m
from protocol.media import encode_tone, encode_video, moving_pattern


@dataclass(frozen=True)
class Policy:
    record_social: bool = True
    staff_must_resume: bool = False
    retention_days: int = 90


@dataclass(frozen=True)
class SimpleAdmission:
    booking_id: int
    role: str
    establishment_id: int = 1
    call_type: str = "social"
    starts_at: float = field(default_factory=lambda: time.time() - 1)
    ends_at: float = field(default_factory=lambda: time.time() + 600)
    participant: str = "visitor:1"
    display_name: str = "Test"
    approved_faces: int = 1
    policy: Any = field(default_factory=Policy)


class TokenTable:
    """Relay admission for core tests that are not about vetting: token -> admission."""

    def __init__(self) -> None:
        self.table: dict[str, SimpleAdmission] = {}

    def add(self, token: str, admission: SimpleAdmission) -> str:
        self.table[token] = admission
        return token

    async def __call__(self, token: str, now: float, remote: str) -> SimpleAdmission:
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
