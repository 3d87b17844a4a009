"""Vision in a real call: a second face on the prison camera pauses the call, its leaving
resumes it; nothing is forwarded to either side meanwhile; the evidence frame is kept."""

from __future__ import annotations

import asyncio
import base64

import pytest

from bench.product import start_product
from bench.vision_clips import encode_frames, two_face_images
from protocol.client import CallClient
from protocol.media import EncodedClipFrame, EncodedTrack
from relay import keys

APPEAR, LEAVE, LENGTH = 3.0, 10.0, 18.0


@pytest.fixture(scope="module")
def two_face_clip():
    images, _ = two_face_images(seed=3, appear_at=APPEAR, leave_at=LEAVE, length=LENGTH)
    return [EncodedClipFrame(f.data, f.keyframe) for f in encode_frames(images, gop=30)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("processes", [1, 0], ids=["detector-process", "in-process"])
async def test_second_face_pauses_and_leaving_resumes(tmp_path, two_face_clip, processes):
    product = await start_product(tmp_path, vision_enabled=True, resume_after_clear_s=1.0,
                                  reconnect_grace_s=10.0, vision_worker_processes=processes)
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
        live = product.app[keys.REGISTRY].get(b)
        sent = sum(c.packets_sent for leg in live.call.legs.values() for c in leg.consumers)
        withheld = sum(p.packets_withheld for leg in live.call.legs.values()
                       for p in leg.producers.values())
        await asyncio.sleep(1.5)
        # the second face stays until LEAVE, long after this window: the pause must still hold
        assert live.policy.state == "paused", "the pause held through the window"
        assert sum(c.packets_sent for leg in live.call.legs.values()
                   for c in leg.consumers) == sent, "nothing is forwarded while paused"
        assert sum(p.packets_withheld for leg in live.call.legs.values()
                   for p in leg.producers.values()) > withheld + 50, "media was withheld"
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


def _clip(appear_at: float, leave_at: float, length: float = 12.0) -> list[EncodedClipFrame]:
    images, _ = two_face_images(seed=3, appear_at=appear_at, leave_at=leave_at, length=length)
    return [EncodedClipFrame(f.data, f.keyframe) for f in encode_frames(images, gop=30)]


@pytest.mark.timeout(120)
async def test_vision_pause_lifts_after_the_prison_leg_rejoins(tmp_path):
    """A rejoined leg's clear picture lifts a vision pause still in force; a staff resume
    that cannot lift it says so (409 still_paused), it is not a 200 that did nothing."""
    # a loaded machine may take a while to set up the rejoining leg: a generous grace
    product = await start_product(tmp_path, vision_enabled=True, resume_after_clear_s=1.0,
                                  reconnect_grace_s=40.0)
    b = product.booking_now()
    crowded = EncodedTrack("video", _clip(appear_at=0.0, leave_at=99.0), 30)
    fam, pri = await product.pair(b, prison_video=crowded)
    staff = await product.staff_session()
    alone = None
    try:
        await fam.wait_state("paused", timeout=15)
        url = f"{product.url}/api/v1/staff/calls/{b}/resume"
        async with staff.post(url) as r:
            body = await r.json()
        assert (r.status, body["error"]["code"]) == (409, "still_paused")
        assert "prison side's camera" in body["error"]["message"]
        await pri.drop()
        await fam.wait_for(lambda m: m["type"] == "state" and m["reason"] == "prison_reconnecting")
        alone = CallClient(product.url, await product.prison_token(b), receive="count",
                           video=EncodedTrack("video", _clip(appear_at=99.0, leave_at=99.0), 30))
        await alone.join()
        resumed = await fam.wait_for(
            lambda m: m["type"] == "state" and m["state"] == "live"
            and m["reason"] == "vision_cleared", timeout=15)
        assert resumed["pause_reasons"] == []
        before = fam.packets["video0"]
        await asyncio.sleep(2.0)
        assert fam.packets["video0"] > before + 20, "the prison picture returns"
        async with staff.post(url) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (409, "not_paused")
    finally:
        await staff.close()
        await fam.close()
        await pri.close(leave=False)
        if alone is not None:
            await alone.close()
        await product.server.close()


@pytest.mark.timeout(120)
async def test_legal_call_counts_faces_but_keeps_no_stills(tmp_path):
    """Legal calls: faces are counted and a pause is audited, but no evidence image is kept."""
    product = await start_product(tmp_path, vision_enabled=True, resume_after_clear_s=1.0)
    b = product.booking_now(call_type="legal")
    crowded = EncodedTrack("video", _clip(appear_at=0.0, leave_at=99.0), 30)
    fam, pri = await product.pair(b, prison_video=crowded)
    staff = await product.staff_session()
    try:
        paused = await fam.wait_state("paused", timeout=15)
        assert paused["pause_reasons"] == ["vision:prison"]
        async with staff.get(f"{product.url}/api/v1/staff/calls/{b}/audit") as r:
            records = (await r.json())["records"]
        over = [x for x in records if x["kind"] == "vision_over_limit"]
        assert over and over[0]["detail"]["count"] >= 2
        assert all(x["evidence_id"] is None for x in records)
        assert over[0]["detail"]["evidence_withheld"] == "legal call"
        conn = product.world.store.connection
        assert conn.execute("SELECT COUNT(*) FROM audit_evidence").fetchone()[0] == 0
        async with staff.get(f"{product.url}/api/v1/staff/calls") as r:
            (call,) = (await r.json())["calls"]
        assert call["faces"]["prison"] >= 2 and call["alerts"] >= 1
    finally:
        await staff.close()
        await fam.close()
        await pri.close()
        await product.server.close()
