"""Vision in a real call: a second face on the prison camera pauses the call, its leaving
resumes it; nothing is forwarded to either side meanwhile; the evidence frame is kept."""

from __future__ import annotations

import asyncio
import base64

import pytest

from bench.product import start_product
from bench.vision_clips import encode_frames, two_face_images
from protocol.media import EncodedClipFrame, EncodedTrack

APPEAR, LEAVE, LENGTH = 3.0, 8.0, 16.0


@pytest.fixture(scope="module")
def two_face_clip():
    images, _ = two_face_images(seed=3, appear_at=APPEAR, leave_at=LEAVE, length=LENGTH)
    return [EncodedClipFrame(f.data, f.keyframe) for f in encode_frames(images, gop=30)]


@pytest.mark.timeout(120)
async def test_second_face_pauses_and_leaving_resumes(tmp_path, two_face_clip):
    product = await start_product(tmp_path, vision_enabled=True, resume_after_clear_s=1.0,
                                  reconnect_grace_s=10.0)
    b = product.booking_now()
    fam, pri = await product.pair(b, prison_video=EncodedTrack("video", two_face_clip, 30))
    staff = await product.staff_session()
    try:
        await fam.wait_state("live")
        paused = await fam.wait_state("paused", timeout=APPEAR + 8)
        assert paused["pause_reasons"] == ["vision:prison"]
        assert "prison side's camera" in paused["paused_because"][0]
        await pri.wait_state("paused", timeout=2)
        await asyncio.sleep(0.3)
        live = product.app["registry"].get(b)
        sent = sum(c.packets_sent for leg in live.call.legs.values() for c in leg.consumers)
        await asyncio.sleep(1.5)
        if live.policy.state == "paused":
            assert sum(c.packets_sent for leg in live.call.legs.values()
                       for c in leg.consumers) == sent, "nothing is forwarded while paused"
        resumed = await fam.wait_for(
            lambda m: m["type"] == "state" and m["state"] == "live" and m["reason"] == "vision_cleared",
            timeout=LEAVE - APPEAR + 10)
        assert resumed["pause_reasons"] == []
        before = fam.packets["video0"]
        await asyncio.sleep(2.5)
        assert fam.packets["video0"] > before + 20, "the picture returns after the resume"
        # the decision and its evidence are in the audit trail, visible to staff
        async with staff.get(f"{product.url}/api/v1/staff/calls/{b}/audit") as r:
            records = (await r.json())["records"]
        over = [x for x in records if x["kind"] == "vision_over_limit"]
        assert over and over[0]["detail"]["count"] >= 2 and over[0]["evidence_id"]
        async with staff.get(f"{product.url}/api/v1/staff/evidence/{over[0]['evidence_id']}") as r:
            evidence = await r.json()
        assert base64.b64decode(evidence["jpeg_base64"])[:2] == b"\xff\xd8"
        assert len(evidence["boxes"]) >= 2
        async with staff.get(f"{product.url}/api/v1/staff/calls") as r:
            (call,) = (await r.json())["calls"]
        assert call["alerts"] >= 1 and call["approved_faces"]["prison"] == 1
    finally:
        await staff.close()
        await fam.close()
        await pri.close()
        await product.server.close()
