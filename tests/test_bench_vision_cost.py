"""bench.vision_cost reports each step of vision's per-leg cost, from real decoding and the
real detector; keyframe decoding at one a second costs less than decoding every frame."""

from __future__ import annotations

import pytest

from bench import vision_cost


@pytest.mark.timeout(180)
def test_the_cost_breakdown_measures_every_step():
    result = vision_cost.measure(seconds=6.0, int8=False)
    for key in (
        "decode_every_frame_pct",
        "decode_keyframes_only_1_per_s_pct",
        "frame_difference_pct",
        "handoff_pct",
        "convert_384x288_pct",
        "detect_fp32_384x288_pct",
        "detect_fp32_160x128_pct",
    ):
        assert result[key] > 0, key
    assert result["decode_keyframes_only_1_per_s_pct"] < result["decode_every_frame_pct"]
    assert result["detect_fp32_160x128_ms"] < result["detect_fp32_384x288_ms"]
    assert result["detect_fp32_384x288_faces"] == 2  # the load clip's two faces
