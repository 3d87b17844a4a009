"""Erasure in headless Chromium, the way people use it: a family member deletes their account
from the family app (the explanation, a tick, the password, the confirmation, and signing in
no longer works); an admin erases a visitor and a prisoner from the console. Screenshots at
desktop and 390 px go to ``SCREENSHOTS_DIR`` (docs/screenshots) or the test's folder."""

from __future__ import annotations

import time

import pytest

from bench.product import start_product
from relay import auth
from tests.browser import chromium, screenshots_dir
from tests.screenshots import shrink
from tests.test_browser_admin import log_in, wait_status

PW = "a long family password"


@pytest.fixture
async def product(tmp_path):
    p = await start_product(tmp_path)
    yield p
    await p.server.close()


async def shot(page, folder, name: str, width: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{'-phone' if width == 390 else ''}.png"
    await page.wait_for_timeout(200)
    await page.screenshot(path=str(path), full_page=True)
    shrink(path)


async def sign_in(page, url: str, email: str) -> None:
    await page.goto(f"{url}/app#signin")
    await page.fill("#signin-email", email)
    await page.fill("#signin-password", PW)
    await page.click("#signin-form button[type=submit]")


@pytest.mark.parametrize("width", [1024, 390])
async def test_a_family_member_deletes_their_account_in_the_app(product, tmp_path, width):
    w = product.world
    store = w.store
    email = "mum@example.org"
    store.add_verified_account(email, auth.hash_password(PW), w.vid("mum"), time.time())
    shots = screenshots_dir(tmp_path)
    errors: list[str] = []
    async with chromium() as browser:
        page = await browser.new_page()
        await page.set_viewport_size({"width": width, "height": 900})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await sign_in(page, product.url, email)
        await page.wait_for_selector("#screen-home:not([hidden])")
        await page.get_by_role("link", name="Delete my account").click()
        await page.wait_for_selector("#screen-delete:not([hidden])")
        shown = await page.text_content("#screen-delete")
        assert "What is deleted" in shown and "What is kept" in shown
        assert "Recordings of past calls" in shown and "without your name" in shown
        await shot(page, shots, "erasure-family-delete", width)

        # without the tick nothing happens; a wrong password deletes nothing either
        await page.fill("#delete-password", PW)
        await page.get_by_role("button", name="Delete my account").click()
        await page.wait_for_selector("#status:not([hidden])")
        assert "Tick the box" in await page.text_content("#status")
        await page.check("#delete-understand")
        await page.fill("#delete-password", "not my password")
        await page.get_by_role("button", name="Delete my account").click()
        await page.wait_for_function(
            "() => document.getElementById('status').textContent.includes('not deleted')"
        )
        assert await page.is_visible("#screen-delete")
        assert store.visitor_erased_at(w.vid("mum")) is None

        await page.fill("#delete-password", PW)
        await page.get_by_role("button", name="Delete my account").click()
        await page.wait_for_selector("#screen-deleted:not([hidden])")
        assert "Your account is deleted" in await page.text_content("#screen-deleted")
        assert not await page.is_visible("#signout")
        await shot(page, shots, "erasure-family-deleted", width)
        assert store.visitor(w.vid("mum")).name == f"erased visitor #{w.vid('mum')}"

        # signing in again is refused in words
        await page.get_by_role("link", name="Back to the start").click()
        await sign_in(page, product.url, email)
        await page.wait_for_function(
            "() => document.getElementById('status').textContent.includes('wrong')"
        )
        assert await page.is_visible("#screen-signin")
        scroll = await page.evaluate("() => document.documentElement.scrollWidth")
        assert scroll <= width, f"the app scrolls sideways at {width} px"
    assert errors == []


@pytest.mark.parametrize("width", [1024, 390])
async def test_an_admin_erases_a_visitor_and_a_prisoner_in_the_console(product, tmp_path, width):
    w = product.world
    store = w.store
    shots = screenshots_dir(tmp_path)
    errors: list[str] = []
    async with chromium() as browser:
        page = await browser.new_page()
        await page.set_viewport_size({"width": width, "height": 900})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await log_in(page, product.url, "admin_a")
        await page.fill("#visitor-q", "aunt")
        await page.click("#visitor-search button[type=submit]")
        card = page.locator(f"[data-visitor='{w.vid('aunt')}']")
        await card.get_by_role("button", name="Erase record of Aunt").click()
        await page.wait_for_selector("#erase-dialog[open]")
        await shot(page, shots, "erasure-console-dialog", width)
        # the reason and the tick are required: the dialog stays open without them
        await page.click("#erase-ok")
        assert await page.is_visible("#erase-dialog")
        await page.select_option("#erase-reason", "vetting_refused")
        await page.check("#erase-confirm")
        await page.click("#erase-ok")
        text = await wait_status(page, "Erased Aunt")
        assert "0 coming bookings stopped" in text
        assert store.visitor_erased_at(w.vid("aunt")) is not None
        # the search shows the stub, with no erase button left
        await page.fill("#visitor-q", "erased visitor")
        await page.click("#visitor-search button[type=submit]")
        stub = page.locator(f"[data-visitor='{w.vid('aunt')}']")
        await stub.wait_for()
        assert "record erased" in await stub.text_content()
        assert await stub.get_by_role("button", name="Erase record", exact=False).count() == 0

        # a prisoner: Andy, with a coming call
        now = time.time()
        b = store.add_booking_unchecked(
            prisoner_id=w.prisoner_a2,
            call_type="social",
            starts_at=now + 86400,
            ends_at=now + 86400 + 1800,
            main_visitor_id=w.vid("mum"),
            visitor_ids=[],
            laptop_id=w.laptops_a[0][0],
            status="approved",
            now=now,
        )
        row = page.locator(f"#prisoner-table tr[data-prisoner='{w.prisoner_a2}']")
        await row.get_by_role("button", name="Erase record of Andy Prisoner").click()
        await page.wait_for_selector("#erase-dialog[open]")
        await page.select_option("#erase-reason", "transferred")
        await page.check("#erase-confirm")
        await page.click("#erase-ok")
        text = await wait_status(page, "Erased Andy Prisoner")
        assert "1 coming booking stopped" in text
        assert store.booking(b).status == "cancelled"
        await page.wait_for_selector(
            f"#prisoner-table tr[data-prisoner='{w.prisoner_a2}']:has-text('erased prisoner')"
        )
        erased_row = page.locator(f"#prisoner-table tr[data-prisoner='{w.prisoner_a2}']")
        assert await erased_row.get_by_role("button").count() == 0
        await shot(page, shots, "erasure-console-done", width)
        scroll = await page.evaluate("() => document.documentElement.scrollWidth")
        assert scroll <= width, f"the console scrolls sideways at {width} px"
    assert errors == []
