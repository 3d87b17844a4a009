"""The check before the call: the relay holds a leg until a face on its camera matches the
side's enrolled people. Real aiortc clients and real VP8: an impostor is held (the other side
gets none of their frames, their page gets guidance, staff are alerted), and an admin admits
them by hand (audited with the frame), after which the in-call re-checks accept them.
"""

from __future__ import annotations

import asyncio

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
from vision.detector import Face
from vision.identity_precall import PrecallCheck
from vision.settings import VisionSettings


def face_clip(patch_index: int, face_h: int = 130, seconds: float = 4.0) -> list[EncodedClipFrame]:
    """One face from scikit-image, moving a little, on a plain wall."""
    patch = face_patches()[patch_index]
    rng = np.random.default_rng(3)
    images = []
    for i in range(round(seconds * FPS)):
        canvas = np.full((HEIGHT, WIDTH, 3), 120, np.uint8)
        paste_face(canvas, patch, 250 + round(6 * np.sin(i / FPS)), 140, face_h)
        images.append(add_noise(canvas, rng))
    return [EncodedClipFrame(f.data, f.keyframe) for f in encode_frames(images, gop=30)]


# --- the findings, on descriptors made up to be near or far ---------------------------------

CFG = VisionSettings()
MUM = np.zeros(128, np.float32)
STRANGER = np.full(128, 0.1, np.float32)  # distance ~1.13 from MUM


def face(h: float = 120.0) -> Face:
    return Face(100, 100, 100 + h * 0.8, 100 + h, 0.9)


def test_two_passing_checks_in_a_row_admit_and_a_failure_starts_over():
    check = PrecallCheck("1:family", {"visitor:1": [MUM]}, CFG, required="visitor:1")
    assert not check.checked([face()], [MUM], [120.0]).admitted
    failed = check.checked([face()], [STRANGER], [120.0])
    assert (failed.passed, failed.finding, failed.failures) == (False, "look_at_camera", 1)
    assert not check.checked([face()], [MUM], [120.0]).admitted
    assert check.checked([face()], [MUM], [120.0]).admitted and check.done


@pytest.mark.parametrize(
    ("faces", "vectors", "lumas", "finding"),
    [
        ([], [], [], "look_at_camera"),
        ([face(40)], [STRANGER], [120.0], "come_closer"),
        ([face()], [STRANGER], [20.0], "more_light"),
        ([face()], [STRANGER], [240.0], "less_light"),
        ([face(), face()], [MUM, STRANGER], [120.0, 120.0], "only_booked_people"),
    ],
)
def test_what_stands_in_the_way_becomes_guidance(faces, vectors, lumas, finding):
    check = PrecallCheck("1:family", {"visitor:1": [MUM]}, CFG)
    result = check.checked(faces, vectors, lumas)
    assert not result.passed and result.finding == finding
    assert result.failures == (1 if faces else 0)  # an empty picture is not a failed attempt


def test_the_main_visitor_must_be_there_when_enrolled():
    gallery = {"visitor:1": [MUM], "visitor:2": [STRANGER]}
    check = PrecallCheck("1:family", gallery, CFG, required="visitor:1")
    result = check.checked([face()], [STRANGER], [120.0])
    assert not result.passed and result.finding == "main_person_missing"


# --- a call ---------------------------------------------------------------------------------


@pytest.mark.timeout(300)
async def test_an_impostor_is_held_alerted_and_admitted_by_an_admin(tmp_path):
    product = await start_product(
        tmp_path, vision_enabled=True, identity_precall_alert_after=3, reconnect_grace_s=10.0
    )
    w = product.world
    astronaut = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    enrolled = await product.app[keys.FACE_ENROLMENTS].enrol_face(
        "visitor", w.vid("mum"), jpeg(astronaut), actor="test"
    )
    assert enrolled.face_px >= 80
    b = product.booking_now()
    impostor = EncodedTrack("video", face_clip(2), FPS)  # the cameraman, not mum
    fam, pri = await product.pair(b, family_video=impostor)
    officer = await product.staff_session()
    admin = await product.staff_session("admin_a")
    try:
        alerted = await fam.wait_for(
            lambda m: m["type"] == "identity_check" and m["alerted"], timeout=60
        )
        assert alerted["status"] == "checking" and alerted["finding"] == "look_at_camera"
        assert alerted["failures"] >= 3
        live = product.app[keys.REGISTRY].get(b)
        assert live.policy.state == "paused"
        assert "identity_check:family" in live.policy.pause_reasons
        assert pri.frames["video0"] == 0  # the prison side saw nothing of them
        state = pri.messages[-1] if pri.messages else {}
        assert any("identity_check:family" in m.get("pause_reasons", ()) for m in pri.messages), (
            state
        )
        async with officer.get(f"{product.url}/api/v1/staff/calls") as r:
            (row,) = (await r.json())["calls"]
        assert row["identity"]["family"]["alerted"] is True
        assert row["identity"]["prison"]["status"] == "not_checked"
        async with officer.get(f"{product.url}/api/v1/staff/calls/{b}/identity") as r:
            view = await r.json()
        family = view["sides"][0]
        assert family["faces"] and family["faces"][0]["matched"] is False
        assert family["evidence_jpeg_base64"] is None  # officers see names, admins the frame
        async with admin.get(f"{product.url}/api/v1/staff/calls/{b}/identity") as r:
            assert (await r.json())["sides"][0]["evidence_jpeg_base64"]
        url = f"{product.url}/api/v1/staff/calls/{b}/identity/family/admit"
        async with officer.post(url, json={}) as r:
            assert r.status == 403
        async with admin.post(f"{product.url}/api/v1/staff/calls/{b}/identity/nobody/admit") as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "not_found"
        async with admin.post(url, json={"note": "known to staff"}) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["identity"]["family"]["status"] == "admitted"
        async with admin.post(url, json={}) as r:
            assert r.status == 409
        await fam.wait_for(lambda m: m["type"] == "state" and m["state"] == "live", timeout=10)
        await pri.wait_frames("video0", 30, timeout=20)
        await asyncio.sleep(6)  # two steady re-checks: the admitted face is accepted
        assert "identity:family" not in live.policy.pause_reasons
        async with officer.get(f"{product.url}/api/v1/staff/calls/{b}/audit") as r:
            records = (await r.json())["records"]
        (admitted,) = [x for x in records if x["kind"] == "identity_check_admitted"]
        assert admitted["actor"] or admitted["detail"]["staff"].startswith("staff:")
        assert admitted["detail"]["note"] == "known to staff" and admitted["evidence_id"]
        assert [x for x in records if x["kind"] == "identity_check_alert"]
        assert [x for x in records if x["kind"] == "identity_viewed"]
    finally:
        await officer.close()
        await admin.close()
        await fam.close()
        await pri.close()
        await product.server.close()
