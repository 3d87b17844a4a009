"""The family call page opened too early says who the call is with, when it starts and when
its waiting room opens, keeps the camera off, and opens the waiting room by itself."""

from __future__ import annotations

import time
from urllib.parse import quote

import aiohttp

from bench.product import start_product
from tests.browser import chromium, screenshots_dir


async def test_family_page_too_early_opens_by_itself(tmp_path):
    shots = screenshots_dir(tmp_path)
    product = await start_product(tmp_path, token_early_s=6.0)
    try:
        bid = product.booking_now(seconds=120, starts_in=16.0)
        token = await product.family_token(bid)
        opens_at = product.world.store.booking(bid).starts_at - 6.0
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{product.url}/api/v1/join/preview", json={"token": "v1.x.y"}) as r:
                assert r.status == 401 and (await r.json())["error"]["code"] == "token_malformed"
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{product.url}/join?token={quote(token)}")
            await page.wait_for_function("document.body.dataset.state === 'early'")
            assert "Video call with Alan Prisoner" in await page.text_content("#title")
            assert "–" in await page.text_content("#when")
            assert "too early" in await page.text_content("#banner")
            assert "camera stays off" in await page.text_content("#banner")
            assert await page.evaluate("document.getElementById('local').srcObject === null")
            await page.screenshot(path=str(shots / "family-early.png"))
            await page.wait_for_function(
                "window.__call && window.__call.joins === 1", timeout=30000
            )
            assert time.time() >= opens_at - 1.0, "it waited for the waiting room"
            assert await page.evaluate("document.getElementById('local').srcObject !== null")
            await page.wait_for_function("document.body.dataset.state === 'waiting'")
    finally:
        await product.server.close()
