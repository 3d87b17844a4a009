"""The staff console in headless Chromium, against the whole product on loopback.

One call: a Chromium family page (``/join?token=...``) and a Python prison client. The console
logs in, watches the call (frames decoded on both sides of its watcher), pauses it (the family
page says why and stops receiving), resumes it, sees a vision pause and its evidence in the
audit timeline, ends it (the family page says so and why), then plays the recording and
places a legal hold. The family page also rides out a dropped connection on the way.
A second test, at phone width, watches a legal call (video only: the relay sends staff no
audio, and the page says so) between two Python clients, then approves and declines bookings.
"""

from __future__ import annotations

import asyncio
import io
import time
from urllib.parse import quote

from protocol.client import CallClient
from protocol.media import EncodedTrack
from relay import keys
from relay.records.audit import Evidence
from tests.browser import chromium
from tests.support import tone_clip, video_clip
from tests.test_store_world import PASSWORD

FRAMES = """async (w) => {
    const c = w === 'watch' ? window.__watch : window.__call;
    if (!c) return {};
    return await c.framesDecoded();
}"""


def video_frames(stats: dict) -> list[int]:
    return [v for k, v in sorted(stats.items()) if k.startswith("video")]


async def wait_frames(page, who: str, more_than: int, streams: int = 1, timeout: float = 20):
    """Until ``streams`` video streams of the page's call have decoded more than ``more_than``."""
    deadline = time.monotonic() + timeout
    while True:
        frames = video_frames(await page.evaluate(FRAMES, who))
        if len(frames) >= streams and all(f > more_than for f in frames[:streams]):
            return frames
        assert time.monotonic() < deadline, f"{who}: frames {frames}, wanted > {more_than}"
        await asyncio.sleep(0.25)


def evidence_jpeg() -> tuple[bytes, list[list[float]]]:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (320, 240), (70, 80, 90))
    draw = ImageDraw.Draw(img)
    boxes = [[40.0, 50.0, 120.0, 150.0], [190.0, 60.0, 270.0, 160.0]]
    for x1, y1, x2, y2 in boxes:
        draw.ellipse((x1, y1, x2, y2), fill=(220, 180, 150))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=70)
    return out.getvalue(), boxes


async def banner(page) -> str:
    return (await page.text_content("#banner")) or ""


async def test_console_watches_pauses_resumes_and_ends_a_call(product):
    b = product.booking_now(seconds=600)
    family_token = await product.family_token(b)
    prison = CallClient(product.url, await product.prison_token(b), receive="count",
                        video=EncodedTrack("video", video_clip(seed=2), 30),
                        audio=EncodedTrack("audio", tone_clip(660), 50))
    errors: list[str] = []
    row = f'#calls tr[data-booking="{b}"]'
    async with chromium() as browser:
        family = await browser.new_page()
        console = await browser.new_page()
        for page in (family, console):
            page.on("pageerror", lambda exc: errors.append(str(exc)))
        await family.goto(f"{product.url}/join?token={quote(family_token)}")
        await family.wait_for_function("window.__call && window.__call.joins === 1", timeout=20000)
        assert "Waiting for the other side" in await banner(family)

        # log in: a wrong password is refused in words, the right one opens the console
        await console.goto(f"{product.url}/console")
        await console.get_by_label("Username").fill("officer_a")
        await console.get_by_label("Password").fill("wrong password")
        await console.get_by_role("button", name="Log in").click()
        await console.wait_for_selector('#status[data-kind="error"]')
        assert "Wrong username or password" in await console.text_content("#status")
        await console.get_by_label("Password").fill(PASSWORD)
        await console.get_by_role("button", name="Log in").click()
        await console.wait_for_selector(f'{row}[data-state="waiting"]', timeout=10000)
        assert "for the prison side" in await console.text_content(row)

        await prison.join()
        try:
            await console.wait_for_selector(f'{row}[data-state="live"]', timeout=10000)
            await wait_frames(family, "call", 10)

            # watch: both sides' video decoded on the console's receive-only watcher
            await console.get_by_role("button", name=f"Watch call {b}").click()
            await wait_frames(console, "watch", 10, streams=2)
            assert "you see and hear both sides" in await console.text_content("#watch-audio")

            # pause with a note: the family page says why and stops receiving
            await console.get_by_role("button", name=f"Pause call {b}").click()
            await console.get_by_label("Note for the audit trail (optional)").fill(
                "checking the room")
            await console.get_by_role("button", name="Pause call", exact=True).click()
            await family.wait_for_function("document.body.dataset.state === 'paused'")
            assert "a member of staff paused the call" in await banner(family)
            await asyncio.sleep(0.7)  # frames already on their way
            paused_at = video_frames(await family.evaluate(FRAMES, "call"))
            watch_at = video_frames(await console.evaluate(FRAMES, "watch"))
            await asyncio.sleep(1.5)
            assert video_frames(await family.evaluate(FRAMES, "call")) == paused_at
            # staff still see both sides while the two sides are cut off
            await wait_frames(console, "watch", max(watch_at) + 10, streams=2)
            await console.wait_for_selector(f'{row}[data-state="paused"]')

            # resume: frames flow again
            await console.get_by_role("button", name=f"Resume call {b}").click()
            await family.wait_for_function("document.body.dataset.state === 'live'")
            assert await banner(family) == "Connected"
            await wait_frames(family, "call", paused_at[0] + 15)

            # a dropped connection comes back by itself within the grace window
            # (the reconnecting state can be brief: record every state the page shows)
            await family.evaluate("""() => {
                window.__seenStates = [];
                new MutationObserver(() => window.__seenStates.push(document.body.dataset.state))
                    .observe(document.body, {attributes: true, attributeFilter: ['data-state']});
            }""")
            await family.evaluate("window.__call.ws.close()")
            await family.wait_for_function(
                "window.__call.joins === 2 && document.body.dataset.state === 'live'",
                timeout=15000)
            assert "reconnecting" in await family.evaluate("window.__seenStates")
            await wait_frames(family, "call", 10)
            # ...and its picture is the new connection's, not the old one's ended track
            assert await family.evaluate(
                "document.getElementById('remote').srcObject.getTracks()"
                ".map((t) => t.kind + ':' + t.readyState).sort()") == ["audio:live", "video:live"]
            await family.wait_for_function(
                "document.getElementById('remote').videoWidth > 0")

            # a vision pause, with its evidence frame, shows in the row and the timeline
            live = product.app[keys.REGISTRY].get(b)
            jpeg, boxes = evidence_jpeg()
            live.policy.vision_over_limit("family", 2, 1, evidence=Evidence(jpeg, boxes))
            await family.wait_for_function("document.body.dataset.state === 'paused'")
            assert "not on the booking" in await banner(family)
            await console.wait_for_selector(f'{row}[data-state="paused"]')
            assert "unapproved person on the family camera" in await console.text_content(row)
            live.policy.vision_cleared("family", 1)
            await family.wait_for_function("document.body.dataset.state === 'live'")
            await console.get_by_role("button", name=f"Audit timeline of call {b}").click()
            await console.wait_for_selector('figure.evidence[data-loaded="true"]')
            assert await console.locator("figure.evidence rect.box").count() == len(boxes)
            timeline = await console.text_content("#timeline-list")
            assert "paused by staff" in timeline and "checking the room" in timeline
            assert "unapproved person detected" in timeline and "rejoined" in timeline

            # end, after confirming: the family page shows it ended and why
            await console.get_by_role("button", name=f"End call {b}").click()
            await console.get_by_role("button", name="End call", exact=True).click()
            await family.wait_for_function("document.body.dataset.state === 'ended'")
            assert "a member of staff ended the call" in await banner(family)
            assert await family.evaluate(
                "window.__call.opts.localStream.getTracks().every((t) => t.readyState === 'ended')"
            ), "the family's camera and microphone are let go"
            await console.wait_for_selector(f'{row}[data-state="ended"]')
            await console.wait_for_selector('#watch[data-state="ended"]')
            await asyncio.wait_for(prison.ended.wait(), 10)
        finally:
            await prison.close()

        # the recording: found, played (decrypted WebM in a <video>), put on legal hold
        rec_row = f'#recordings tr[data-booking="{b}"]'
        deadline = time.monotonic() + 15
        while True:
            await console.get_by_role("button", name="Find recordings").click()
            await asyncio.sleep(0.5)
            texts = await console.locator(rec_row).all_text_contents()
            if texts and "complete" in texts[0]:
                break
            assert time.monotonic() < deadline, texts
        rec_id = await console.locator(rec_row).get_attribute("data-recording")
        await console.get_by_role("button", name=f"Play recording {rec_id}").click()
        await console.wait_for_function(
            "document.getElementById('player-video').readyState >= 1", timeout=10000)
        await console.get_by_role("button", name=f"Place a legal hold on recording {rec_id}").click()
        await console.get_by_label("Reason (required)").fill("complaint 42")
        await console.get_by_role("button", name="Place hold", exact=True).click()
        await console.wait_for_selector(f'#recordings tr[data-recording="{rec_id}"][data-hold="true"]')
        assert "complaint 42" in await console.text_content(f'tr[data-recording="{rec_id}"]')
    assert errors == []


async def test_console_legal_call_video_only_and_bookings_at_phone_width(product):
    w = product.world
    legal = product.booking_now(call_type="legal")
    fam, pri = await product.pair(legal)
    starts = time.time() + 2 * 86400

    def request(offset: float) -> int:
        return w.store.request_booking(
            prisoner_id=w.prisoner_a, call_type="social", starts_at=starts + offset, minutes=30,
            main_visitor_id=w.vid("mum"), visitor_ids=[], requested_by="family",
            now=time.time(), actor="test").id

    first, second = request(0), request(3600)
    async with chromium() as browser:
        page = await browser.new_page()
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(f"{product.url}/console")
        await page.get_by_label("Username").fill("officer_a")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.keyboard.press("Enter")  # the form submits from the keyboard
        await page.wait_for_selector(f'#bookings tr[data-booking="{first}"][data-status="requested"]')
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390

        # a legal call: staff may look, never listen; the page says so
        try:
            await page.get_by_role("button", name=f"Watch call {legal}").click()
            await wait_frames(page, "watch", 10, streams=2)
            assert "Legal call: video only" in await page.text_content("#watch-audio")
            audio = await page.evaluate("""() => window.__watch.pc.getTransceivers()
                .filter((t) => t.receiver.track.kind === 'audio').map((t) => t.currentDirection)""")
            assert audio == ["inactive", "inactive"]
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
            await page.get_by_role("button", name="Stop watching").click()
        finally:
            await fam.close()
            await pri.close()

        await page.get_by_role("button", name=f"Approve booking {first}").click()
        await page.wait_for_selector(f'#bookings tr[data-booking="{first}"][data-status="approved"]')
        await page.get_by_role("button", name=f"Decline booking {second}").click()
        await page.get_by_label("Reason (optional; the family sees it)").fill("no staff that day")
        await page.get_by_role("button", name="Decline booking", exact=True).click()
        await page.wait_for_selector(f'#bookings tr[data-booking="{second}"]', state="detached")
        assert f"Booking {second} declined" in await page.text_content("#status")
        assert w.store.booking(second).status == "declined"

        await page.get_by_role("button", name="Log out").click()
        await page.wait_for_selector("#login:not([hidden])")
        await page.reload()
        await page.wait_for_selector("#login:not([hidden])")
