"""Headless Chromium joins as the family leg and exchanges media with a Python prison client."""

from __future__ import annotations

import asyncio

from protocol.client import CallClient
from protocol.media import EncodedTrack
from tests.browser import chromium, wait_decoding_video
from tests.support import admission, tone_clip, video_clip


async def test_chromium_family_and_python_prison_exchange_media(relay, tokens):
    tokens.add("fam-b", admission(40, "family"))
    tokens.add("pri-b", admission(40, "prison"))
    prison = CallClient(relay.base_url, "pri-b", receive="decode",
                        video=EncodedTrack("video", video_clip(seed=3), 30),
                        audio=EncodedTrack("audio", tone_clip(500), 50))
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{relay.base_url}/join?token=fam-b")
        await page.wait_for_function("window.__call && window.__call.joins === 1", timeout=20000)
        assert "token" not in page.url, "the token is kept out of the address bar"
        await prison.join()
        try:
            await prison.wait_frames("video0", 30, timeout=30)
            await prison.wait_frames("audio0", 30, timeout=30)
            await wait_decoding_video(page, 30)
            banner = await page.text_content("#banner")
            assert banner == "Connected"
            frame = prison.decoded_last["video0"]
            assert frame.width > 0 and frame.height > 0
        finally:
            await prison.close()
        # the prison side left: the family page says the call ended and why
        await page.wait_for_function("document.body.dataset.state === 'ended'", timeout=10000)
        assert "other side left" in await page.text_content("#banner")
    await asyncio.sleep(0)
