"""In-call re-identification with real aiortc clients and real VP8 video: the enrolled visitor
is replaced by someone else in the same place (same count), the call pauses with "someone not
on the booking"; the enrolled face back, it resumes. The count rule is untouched.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from skimage import data

from bench.identity_set import jpeg
from bench.product import start_product
from bench.vision_clips import (
    FPS,
    HEIGHT,
    WIDTH,
    add_noise,
    encode_frames,
    face_patches,
    paste_face,
)
from protocol.media import EncodedClipFrame, EncodedTrack
from relay import keys
from vision.identity_check import CHANGES

SWAP_S, LENGTH_S = 8.0, 16.0
"""The enrolled face for SWAP_S seconds, then a stranger until LENGTH_S; the clip loops."""


def swap_clip(swap_s: float = SWAP_S, length_s: float = LENGTH_S) -> list[EncodedClipFrame]:
    patches = face_patches()  # astronaut, astronaut mirrored, cameraman, cameraman mirrored
    rng = np.random.default_rng(5)
    images = []
    for i in range(round(length_s * FPS)):
        t = i / FPS
        canvas = np.full((HEIGHT, WIDTH, 3), 120, np.uint8)
        patch = patches[0] if t < swap_s else patches[2]
        paste_face(canvas, patch, 250 + round(8 * np.sin(t)), 140, 130)
        images.append(add_noise(canvas, rng))
    return [EncodedClipFrame(f.data, f.keyframe) for f in encode_frames(images, gop=30)]


@pytest.mark.timeout(300)
async def test_a_stranger_in_place_of_the_visitor_pauses_and_the_visitor_back_resumes(tmp_path):
    product = await start_product(
        tmp_path, vision_enabled=True, resume_after_clear_s=1.0, reconnect_grace_s=10.0
    )
    w = product.world
    enrolled = await product.app[keys.FACE_ENROLMENTS].enrol_face(
        "visitor",
        w.vid("mum"),
        jpeg(np.ascontiguousarray(data.astronaut()[:, :, ::-1])),
        actor="test",
    )
    assert enrolled.face_px >= 80
    b = product.booking_now()
    track = EncodedTrack("video", swap_clip(), FPS)
    fam, pri = await product.pair(b, family_video=track)
    staff = await product.staff_session()
    try:
        await fam.wait_state("live")
        frames = round(SWAP_S * FPS)
        while track.sent < frames - FPS:  # until a second before the swap: no pause
            assert product.app[keys.REGISTRY].get(b).policy.state != "paused"
            await asyncio.sleep(0.05)
        while track.sent < frames:
            await asyncio.sleep(0.01)
        swapped = time.monotonic()
        paused = await fam.wait_for(  # not the hold of the check before the call
            lambda m: m["type"] == "state" and "identity:family" in m.get("pause_reasons", ()),
            timeout=10,
        )
        latency = time.monotonic() - swapped
        assert paused["pause_reasons"] == ["identity:family"]
        assert "someone not on the booking" in paused["paused_because"][0]
        # generous for a shared CPU: the steady re-check interval (3 s) plus confirmation
        assert latency < 7.0, latency
        print(f"pause {latency:.2f}s after the swap")
        live = product.app[keys.REGISTRY].get(b)
        assert live.faces.get("family", 1) == 1  # the count rule saw nothing wrong
        resumed = await fam.wait_for(
            lambda m: (
                m["type"] == "state" and m["state"] == "live" and m["reason"] == "identity_matched"
            ),
            timeout=LENGTH_S - SWAP_S + 12,
        )
        assert resumed["pause_reasons"] == []
        async with staff.get(f"{product.url}/api/v1/staff/calls/{b}/audit") as r:
            records = (await r.json())["records"]
        unmatched = [x for x in records if x["kind"] == "identity_unmatched"]
        assert unmatched and unmatched[0]["evidence_id"]
        (match,) = unmatched[0]["detail"]["matches"]
        assert match["person"] is None and match["distance"] > 0.5
        assert [x for x in records if x["kind"] == "identity_matched"]
        service = product.app[keys.DETECTOR]
        assert service.identity_checks >= 4
        print(
            f"identity checks {service.identity_checks}, "
            f"CPU {service.identity_cpu_s:.2f}s over the call"
        )
    finally:
        await staff.close()
        await fam.close()
        await pri.close()
        await product.server.close()


@pytest.mark.timeout(300)
async def test_a_swap_is_caught_by_the_change_and_confirmed_at_the_next_sample(tmp_path):
    """The stranger sits down in the same place: the appearance change triggers a check at
    once and its "someone else" is confirmed on the very next sample, not at the steady
    rate; while paused with the stranger still there, checks run at the sample rate, not in
    bursts."""
    swap_s, length_s = 6.0, 14.0
    product = await start_product(tmp_path, vision_enabled=True, resume_after_clear_s=1.0)
    w = product.world
    await product.app[keys.FACE_ENROLMENTS].enrol_face(
        "visitor",
        w.vid("mum"),
        jpeg(np.ascontiguousarray(data.astronaut()[:, :, ::-1])),
        actor="test",
    )
    b = product.booking_now()
    track = EncodedTrack("video", swap_clip(swap_s, length_s), FPS)
    fam, pri = await product.pair(b, family_video=track)
    service = product.app[keys.DETECTOR]
    try:
        await fam.wait_state("live")
        period, swap_frame = round(length_s * FPS), round(swap_s * FPS)
        cycle = track.sent // period
        if track.sent > cycle * period + swap_frame - FPS:  # too close: take the next swap
            cycle += 1
        while track.sent < cycle * period + swap_frame:
            await asyncio.sleep(0.005)
        swapped = time.monotonic()
        paused = await fam.wait_for(
            lambda m: m["type"] == "state" and "identity:family" in m.get("pause_reasons", ()),
            timeout=10,
        )
        paused_at = time.monotonic()
        latency = paused_at - swapped
        assert paused["pause_reasons"] == ["identity:family"]
        (sampler,) = [s for k, s in service.legs.items() if k.endswith(":family")]
        assert sampler.identity is not None
        path = [r for r in sampler.identity.history if swapped - 0.05 <= r.done <= paused_at]
        print(f"pause {latency:.2f}s after the swap; path {[(r.reason, r.stranger) for r in path]}")
        strangers = [r for r in path if r.stranger]
        assert len(strangers) >= 2, path  # 2 of 3: two checks, no single-frame pause
        assert strangers[0].reason in CHANGES  # not the steady re-check
        # confirmed as soon as possible: a "confirm" check, or another change (the stranger's
        # look differs from sample to sample more than the enrolled face's does in this clip)
        assert strangers[1].reason in CHANGES | {"confirm"}, path
        # the confirming sample was taken at the burst rate, not a steady interval later
        assert strangers[1].at - strangers[0].done < 1.0, path
        assert latency < 7.0, latency  # generous for a shared CPU (target: 2 s p95)
        # paused, the stranger still on camera: the sample rate (1/s), no bursts of checks
        since = time.monotonic()
        watch = length_s - swap_s - 1.0 - (since - swapped)  # until just before the face is back
        await asyncio.sleep(max(0.0, watch))
        during = [r for r in sampler.identity.history if since < r.done and r.at < since + watch]
        assert all(r.stranger for r in during), during
        # the old bursts checked 2-3 a second here; the sample rate is 1 (+1: a check running)
        assert len(during) <= 1.5 * watch + 1, [(r.reason, round(r.at - since, 2)) for r in during]
    finally:
        await fam.close()
        await pri.close()
        await product.server.close()
