"""The check before the call in real Chromium: the family page's camera is a clip (Chromium's
``--use-file-for-fake-video-capture``) of the enrolled visitor, or of someone else.

The enrolled face (scikit-image's astronaut, the identity set's enrolment photo, moving a
little) is admitted: the prison side decodes its video. An impostor (the set's cameraman) is
held: the prison side decodes nothing of them, the page shows the check's guidance (desktop
and 390 px screenshots), staff are alerted in the console's call row, and an admin opens the
console's identity view (names, distances, the frame), admits them by hand, and the prison
side decodes their video; the admission is in the audit trail with its frame.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np
import pytest
from skimage import data

from bench.identity_set import jpeg
from bench.product import start_product
from bench.vision_clips import HEIGHT, WIDTH, add_noise, face_patches, paste_face
from bench.world import PASSWORD
from protocol.client import CallClient
from protocol.media import EncodedTrack
from relay import keys
from tests.browser import chromium, screenshots_dir
from tests.screenshots import shrink
from tests.support import tone_clip, video_clip

ASTRONAUT, CAMERAMAN = 0, 2  # face_patches(): astronaut, mirrored, cameraman, mirrored


def write_clip(path: Path, patch_index: int, frames: int = 30) -> None:
    """A face on a plain wall, swaying a little, as a y4m file (Chromium loops it)."""
    patch = face_patches()[patch_index]
    rng = np.random.default_rng(7)
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F15:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            canvas = np.full((HEIGHT, WIDTH, 3), 120, np.uint8)
            paste_face(canvas, patch, 250 + round(8 * np.sin(i / 5)), 140 + (i % 3), 140)
            rgb = add_noise(canvas, rng)
            yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            f.write(b"FRAME\n" + yuv.to_ndarray().tobytes())


def camera(path: Path) -> list[str]:
    return [f"--use-file-for-fake-video-capture={path}"]


def prison_client(product, token: str) -> CallClient:
    return CallClient(
        product.url,
        token,
        receive="decode",
        video=EncodedTrack("video", video_clip(seed=4), 30),
        audio=EncodedTrack("audio", tone_clip(500), 50),
    )


async def frames_for(client: CallClient, seconds: float) -> int:
    await asyncio.sleep(seconds)
    return client.frames["video0"]


@pytest.mark.timeout(600)
async def test_the_enrolled_face_is_admitted_and_an_impostor_is_held_until_an_admin_admits(
    tmp_path,
):
    product = await start_product(
        tmp_path, vision_enabled=True, identity_precall_alert_after=3, reconnect_grace_s=10.0
    )
    w = product.world
    astronaut = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    enrolled = await product.app[keys.FACE_ENROLMENTS].enrol_face(
        "visitor", w.vid("mum"), jpeg(astronaut), actor="test"
    )
    assert enrolled.face_px >= 80
    shots = screenshots_dir(tmp_path)
    mum_clip, impostor_clip = tmp_path / "mum.y4m", tmp_path / "impostor.y4m"
    write_clip(mum_clip, ASTRONAUT)
    write_clip(impostor_clip, CAMERAMAN)
    prisons: list[CallClient] = []
    try:
        # 1. the enrolled visitor: admitted by the check, the prison side decodes her video
        first = product.booking_now()
        async with chromium(camera(mum_clip)) as browser:
            page = await browser.new_page()
            await page.goto(f"{product.url}/join?token={await product.family_token(first)}")
            await page.wait_for_function(
                "window.__call && window.__call.joins === 1", timeout=30000
            )
            prison = prison_client(product, await product.prison_token(first))
            prisons.append(prison)
            await prison.join()
            await prison.wait_frames("video0", 30, timeout=60)
            await page.wait_for_function("document.body.dataset.state === 'live'", timeout=20000)
            assert await page.evaluate("document.body.dataset.identity") == "matched"
            assert await page.is_hidden("#identity-guide")
            await prison.close()

        # 2. an impostor: held, guided, the prison side gets nothing of them
        second = product.booking_now()
        async with chromium(camera(impostor_clip)) as browser:
            page = await browser.new_page()
            await page.goto(f"{product.url}/join?token={await product.family_token(second)}")
            await page.wait_for_function(
                "window.__call && window.__call.joins === 1", timeout=30000
            )
            prison = prison_client(product, await product.prison_token(second))
            prisons.append(prison)
            await prison.join()
            guide = page.locator("#identity-guide")
            await guide.wait_for(state="visible", timeout=30000)
            await page.wait_for_function(
                "document.getElementById('identity-guide').textContent.includes('staff')",
                timeout=60000,
            )
            text = await guide.text_content()
            assert "Checking it's you" in text and "Look straight at the camera" in text
            assert "A member of staff has been asked to help" in text
            assert "Checking it's you" in await page.text_content("#banner")
            assert await frames_for(prison, 2.0) == 0, "the prison side decoded the impostor"
            live = product.app[keys.REGISTRY].get(second)
            assert "identity_check:family" in live.policy.pause_reasons
            assert "once we have checked it's you" in await page.text_content("#remote-note")
            await page.screenshot(path=str(shots / "family-identity-check.png"))
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.wait_for_timeout(300)
            await page.screenshot(path=str(shots / "family-identity-check-phone.png"))
            await page.set_viewport_size({"width": 1024, "height": 720})

            # 3. the console: the row says staff are alerted; an admin admits by hand
            console = await browser.new_page()
            await console.goto(f"{product.url}/console")
            await console.get_by_label("Username").fill("admin_a")
            await console.get_by_label("Password").fill(PASSWORD)
            await console.get_by_role("button", name="Log in").click()
            row = console.locator(f'#calls tr[data-booking="{second}"]')
            flag = row.locator('[data-identity="family"]')
            await flag.wait_for(timeout=20000)
            assert "staff alerted" in await flag.text_content()
            await row.get_by_role("button", name=f"Identity checks of call {second}").click()
            side = console.locator('#identity-sides [data-side="family"]')
            await side.wait_for(timeout=10000)
            shown = await side.text_content()
            assert "Held: checking identity before the call" in shown
            assert "Unmatched face: closest distance" in shown
            await console.wait_for_function(
                "document.querySelector('#identity-sides [data-frame=\"family\"] img')"
                "?.naturalWidth > 0",
                timeout=10000,
            )
            prison_side = await console.text_content('#identity-sides [data-side="prison"]')
            assert "Not checked" in prison_side
            await console.locator("#identity").screenshot(path=str(shots / "console-identity.png"))
            shrink(shots / "console-identity.png")
            shrink(shots / "family-identity-check.png")
            shrink(shots / "family-identity-check-phone.png")
            await side.get_by_role(
                "button", name=f"Admit the family side of call {second} by hand"
            ).click()
            await console.fill("#dialog-input", "known to the officer on duty")
            await console.get_by_role("button", name="Admit", exact=True).click()
            await console.wait_for_selector(
                '#identity-sides [data-side="family"] [data-status="admitted"]', timeout=10000
            )

            await prison.wait_frames("video0", 30, timeout=60)
            await page.wait_for_function("document.body.dataset.state === 'live'", timeout=20000)
            assert await page.is_hidden("#identity-guide")
            records = product.app[keys.AUDIT_LOG].for_booking(second)
            (admitted,) = [r for r in records if r["kind"] == "identity_check_admitted"]
            assert admitted["detail"]["note"] == "known to the officer on duty"
            assert admitted["evidence_id"]
            await prison.close()
    finally:
        for prison in prisons:
            await prison.close()
        await product.server.close()
