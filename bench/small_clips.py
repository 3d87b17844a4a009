"""Short encoded media for test calls and fault scenarios: a moving VP8 pattern and a tone,
each encoded once per process (encoding is slow on two cores)."""

from __future__ import annotations

from typing import Any

from protocol.media import encode_tone, encode_video, moving_pattern

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
