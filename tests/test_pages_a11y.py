"""The prisoner's laptop page and the family call page pass axe-core (no serious or critical
WCAG 2.2 AA violations) in Chromium, at laptop and phone width, in the states people meet
first: set-up, today's calls and the kiosk sign-in on the laptop; the family's waiting room
before the call opens. (The app and the console: tests/test_family_a11y.py.)"""

from __future__ import annotations

import time

from tests.a11y import assert_accessible
from tests.browser import chromium


async def test_laptop_and_call_pages_pass_axe(product):
    w = product.world
    laptop_id = w.laptops_a[0][0]
    code = w.store.start_enrolment(laptop_id, w.admin_a, time.time(), 900).code
    later = product.booking_now(seconds=1800, starts_in=3600)  # the waiting room is not open
    token = await product.family_token(later)
    async with chromium() as browser:
        for width, height in ((1280, 800), (390, 844)):
            page = await browser.new_page()
            await page.set_viewport_size({"width": width, "height": height})
            await page.goto(f"{product.url}/laptop")
            await page.wait_for_load_state("networkidle")
            await assert_accessible(page, f"/laptop set-up ({width} px)")
            if width == 1280:
                await page.goto(f"{product.url}/laptop?enrol={code}")
            else:
                await page.goto(f"{product.url}/laptop")  # the device key is kept
            await page.wait_for_selector("#kiosk-start", state="visible")
            await assert_accessible(page, f"/laptop today ({width} px)")
            await page.click("#kiosk-start")
            await page.wait_for_selector("#kiosk-sign-in", state="visible")
            await assert_accessible(page, f"/laptop kiosk sign-in ({width} px)")

            await page.goto(f"{product.url}/join?token={token}")
            await page.wait_for_function("document.body.textContent.includes('Alan')")
            await assert_accessible(page, f"/join before the call ({width} px)")
            await page.close()


async def test_call_page_speaks_the_language_chosen_in_the_app(product):
    """Welsh chosen in the family app (remembered in the browser) is the call page's language
    too: the catalogue's "call.*" strings, the html lang, and still no axe violations."""
    later = product.booking_now(seconds=1800, starts_in=3600)
    token = await product.family_token(later)
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{product.url}/app")
        await page.evaluate("localStorage.setItem('relay.lang', 'cy')")
        await page.goto(f"{product.url}/join?token={token}")
        await page.wait_for_function(
            "document.getElementById('title').textContent.startsWith('Galwad fideo gyda')"
        )
        assert await page.evaluate("document.documentElement.lang") == "cy"
        assert "Mae'n rhy gynnar" in await page.text_content("#banner")
        assert await page.text_content("#leave") == "Gadael yr alwad"
        await assert_accessible(page, "/join in Welsh")
