"""The family page in Chromium shows why a booking change ended the call, within 2 s."""

from __future__ import annotations

import time

from protocol.client import CallClient
from protocol.media import EncodedTrack
from relay.calls.policy import END_TEXT
from tests.browser import chromium
from tests.support import tone_clip, video_clip
from tests.test_lifecycle import family_cancel, revoke


async def _family_page(browser, product, booking_id: int):
    page = await browser.new_page()
    await page.goto(f"{product.url}/join?token={await product.family_token(booking_id)}")
    await page.wait_for_function("window.__call && window.__call.joins === 1", timeout=20000)
    prison = CallClient(product.url, await product.prison_token(booking_id), receive="count",
                        video=EncodedTrack("video", video_clip(seed=3), 30),
                        audio=EncodedTrack("audio", tone_clip(500), 50))
    await prison.join()
    await prison.wait_state("live")
    await prison.wait_frames("video0", 10, timeout=30)
    return page, prison


async def _shows_end_within_2s(page, reason: str) -> None:
    started = time.monotonic()
    await page.wait_for_function("document.body.dataset.state === 'ended'", timeout=2000)
    assert time.monotonic() - started < 2.0
    banner = await page.text_content("#banner")
    assert END_TEXT[reason] in banner, banner


async def test_family_page_shows_cancel_and_revoke_reasons(product):
    cancelled, revoked = product.booking_now(), product.booking_now()
    async with chromium() as browser:
        page, prison = await _family_page(browser, product, cancelled)
        try:
            status, body = await family_cancel(product, cancelled)
            assert status == 200, body
            await _shows_end_within_2s(page, "booking_cancelled")
        finally:
            await prison.close()
        page, prison = await _family_page(browser, product, revoked)
        try:
            await revoke(product, "mum")
            await _shows_end_within_2s(page, "approval_revoked")
        finally:
            await prison.close()
