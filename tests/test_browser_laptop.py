"""The laptop page and the family page, two real Chromiums, through the whole relay.

The laptop is set up with a one-time code from staff, lists today's calls, opens the
waiting room and joins by itself; each side decodes the other's video and hears its audio
(``totalAudioEnergy`` rising); a staff pause hides the far picture on both pages; the laptop
shows the time left and the warning; the end says why on both. Screenshots of each laptop
state go to ``$SCREENSHOTS_DIR`` (docs/screenshots when regenerating them) or tmp_path.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import aiohttp

from bench.world import PASSWORD
from tests.browser import chromium, screenshots_dir

KIOSK = ["--autoplay-policy=no-user-gesture-required"]
KILL_CAMERA = """async () => {
    // a dead camera (the system edge): nothing sent, and opening it again fails until revived
    window.__cameraDead = true;
    const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (c) => window.__cameraDead
        ? Promise.reject(new DOMException("camera gone", "NotReadableError")) : open(c);
    const t = window.__call.pc.getTransceivers().find((t) => t.receiver.track.kind === "video");
    await t.sender.replaceTrack(null);
}"""
STATS = "async () => window.__call ? await window.__call.mediaStats() : null"


async def rising(page, what: str, timeout: float = 30.0) -> None:
    """Until the page's call has received more of ``what`` twice in a row (it flows)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        stats = await page.evaluate(STATS)
        seen.append(stats[what] if stats else 0)
        if len(seen) >= 3 and seen[-1] > seen[-2] > seen[-3] > 0:
            return
        await asyncio.sleep(0.7)
    raise AssertionError(f"{what} did not rise: {seen[-6:]}")


async def state(page, name: str, timeout: float = 20000) -> None:
    await page.wait_for_function(f"document.body.dataset.state === '{name}'", timeout=timeout)


async def test_laptop_and_family_pages_through_the_relay(product, tmp_path):
    shots = screenshots_dir(tmp_path)
    api = f"{product.url}/api/v1"
    laptop_id = product.world.laptops_a[0][0]
    admin = await product.staff_session("admin_a")
    later = product.booking_now(seconds=1800, starts_in=3 * 3600, others=("sis",))
    try:
        async with admin.post(f"{api}/staff/laptops/{laptop_id}/enrol") as r:
            code = (await r.json())["code"]
        async with chromium(KIOSK) as lap_browser, chromium(KIOSK) as fam_browser:
            lap = await lap_browser.new_page()
            await lap.goto(f"{product.url}/laptop")
            await state(lap, "setup")
            await lap.screenshot(path=str(shots / "laptop-setup.png"))
            await lap.fill("#setup-code", code)
            await lap.click("#setup-button")
            await state(lap, "today")
            assert "code" not in lap.url and "enrol" not in lap.url
            assert await lap.evaluate("!!localStorage.getItem('laptopDeviceKey')")
            text = await lap.text_content("#calls")
            assert "Mum and Sis" in text
            await lap.screenshot(path=str(shots / "laptop-today.png"))

            # a call starting now: the page opens the waiting room and joins by itself
            bid = product.booking_now(seconds=110, others=("dad",))
            await lap.reload()
            await lap.wait_for_function("window.__call && window.__call.joins === 1", timeout=20000)
            await state(lap, "waiting")
            assert "Mum and Dad" in await lap.text_content("#with")
            assert await lap.is_hidden("#remote")
            await lap.screenshot(path=str(shots / "laptop-waiting.png"))

            fam = await fam_browser.new_page()
            token = await product.family_token(bid)
            await fam.goto(f"{product.url}/join?token={quote(token)}")
            await state(lap, "live")
            await state(fam, "live")
            for page in (lap, fam):
                await rising(page, "framesDecoded")
                await rising(page, "audioEnergy")
                assert await page.is_visible("#remote")
            assert "left" in await lap.text_content("#clock")
            await lap.screenshot(path=str(shots / "laptop-live.png"))

            # staff send a message from the console: both pages show it until dismissed
            console = await lap_browser.new_page()
            await console.goto(f"{product.url}/console")
            await console.fill("#username", "officer_a")
            await console.fill("#password", PASSWORD)
            await console.click("#login-button")
            await console.click(f"tr[data-booking='{bid}'] button[aria-label^='Send a message']")
            await console.fill("#dialog-input", "Please keep the child in view")
            await console.click("#dialog-ok")
            for page in (lap, fam):
                await page.wait_for_selector("#notice", state="visible", timeout=5000)
                assert "keep the child in view" in await page.text_content("#notice-text")
            await lap.screenshot(path=str(shots / "laptop-message.png"))
            await lap.click("#notice-ok")
            assert await lap.is_hidden("#notice")
            assert await fam.is_visible("#notice")  # each side dismisses its own

            # a staff pause: the far picture is hidden on both pages, not frozen
            async with admin.post(f"{api}/staff/calls/{bid}/pause", json={"note": "check"}) as r:
                assert r.status == 200
            for page in (lap, fam):
                await state(page, "paused")
                assert await page.is_hidden("#remote")
                assert "hidden while the call is paused" in await page.text_content("#remote-note")
            assert "member of staff paused" in await lap.text_content("#banner")
            await lap.screenshot(path=str(shots / "laptop-paused.png"))
            async with admin.post(f"{api}/staff/calls/{bid}/resume") as r:
                assert r.status == 200
            for page in (lap, fam):
                await state(page, "live")
                assert await page.is_visible("#remote")
            # the family camera dies: within 5 s the laptop says so, staff see it, the relay
            # counts it; the family page restarts its camera once it works again
            await fam.evaluate(KILL_CAMERA)
            killed = time.monotonic()
            await lap.wait_for_function("document.body.dataset.media === 'stalled'", timeout=5000)
            assert time.monotonic() - killed < 5.5
            assert await lap.is_hidden("#remote")
            assert "video has stopped" in await lap.text_content("#health")
            await lap.screenshot(path=str(shots / "laptop-video-stopped.png"))
            await console.wait_for_selector(
                f"tr[data-booking='{bid}'] [data-stalled='family:video']", timeout=5000
            )
            async with aiohttp.ClientSession() as s:
                async with s.get(f"{product.url}/metrics") as r:
                    assert (
                        'relay_media_stalls_total{kind="video",role="family"} 1.0' in await r.text()
                    )
            await fam.evaluate("window.__cameraDead = false")
            await lap.wait_for_function("document.body.dataset.media === 'ok'", timeout=15000)
            assert await lap.is_visible("#remote")
            await rising(lap, "framesDecoded")
            await console.wait_for_selector(
                f"tr[data-booking='{bid}'] [data-stalled]", state="detached", timeout=10000
            )
            await console.close()
            async with admin.get(f"{api}/staff/calls/{bid}/audit") as r:
                kinds = [x["kind"] for x in (await r.json())["records"]]
            assert {"staff_message", "media_stalled", "media_recovered"} <= set(kinds)

            await lap.set_viewport_size({"width": 390, "height": 844})
            await lap.screenshot(path=str(shots / "laptop-phone.png"))
            await lap.set_viewport_size({"width": 1024, "height": 720})

            # the time warning, then the end and why, on both
            await state(lap, "warning", timeout=90000)
            assert "left in this call" in await lap.text_content("#banner")
            await lap.screenshot(path=str(shots / "laptop-warning.png"))
            for page in (lap, fam):
                await state(page, "ended", timeout=30000)
                assert "booked time is over" in await page.text_content("#banner")
            await lap.screenshot(path=str(shots / "laptop-ended.png"))
            assert later  # still listed for later
    finally:
        await admin.close()
