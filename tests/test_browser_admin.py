"""The console's administration screens in headless Chromium against the whole product on
loopback, used the way staff use them: an admin sets visiting hours, finds a prisoner's free
slots and books one on a family's behalf, is refused a 03:00 call in words, adds a prisoner
and stops their calls, searches a visitor by name and revokes a contact. Screenshots at
desktop and phone width go to the test's temporary folder, or to ``SCREENSHOTS_DIR`` when set
(``SCREENSHOTS_DIR=docs/screenshots`` refreshes the committed ones)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from relay import keys
from tests.browser import chromium, screenshots_dir
from tests.screenshots import shrink
from tests.test_store_world import PASSWORD


async def status(page) -> str:
    await page.wait_for_selector("#status:not([hidden])")
    return (await page.text_content("#status")) or ""


async def wait_status(page, words: str) -> str:
    await page.wait_for_function(
        "(w) => !document.getElementById('status').hidden"
        " && document.getElementById('status').textContent.includes(w)",
        arg=words,
        timeout=15000,
    )
    return await status(page)


async def log_in(page, url: str, username: str) -> None:
    await page.goto(f"{url}/console")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-button")
    await page.wait_for_selector("body[data-view='console']")


async def shot(page, folder: Path, name: str, element: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    await page.wait_for_timeout(300)
    if element:
        await page.locator(element).screenshot(path=str(path))
    else:
        await page.screenshot(path=str(path), full_page=True)
    shrink(path)


async def test_admin_sets_hours_books_for_a_family_and_revokes_a_contact(product, tmp_path):
    w = product.world
    shots = screenshots_dir(tmp_path)
    store = product.app[keys.STORE]
    errors: list[str] = []
    async with chromium() as browser:
        page = await browser.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await log_in(page, product.url, "admin_a")

        # visiting hours: every day 09:00-18:00 with one staffed room on Sundays, an hour's notice
        await page.wait_for_selector("#hours-sessions .session-row")
        rows = page.locator("#hours-sessions .session-row")
        assert await rows.count() == 7  # the world's every-day timetable
        for i in range(7):
            row = rows.nth(i)
            await row.locator("input").nth(0).fill("09:00")
            await row.locator("input").nth(1).fill("18:00")
        await rows.nth(6).locator("input[type=number]").fill("1")
        await page.fill("#hours-notice", "1")
        await page.fill("#hours-window", "14")
        await page.click("#hours-add-blackout")
        christmas = dt.date(dt.date.today().year, 12, 25)
        blackout = page.locator("#hours-blackouts .session-row").last
        await blackout.locator("input[type=date]").fill(christmas.isoformat())
        await blackout.locator("input").nth(1).fill("Christmas Day")
        await page.click("#hours-save")
        assert "Visiting hours saved: 7 weekly sessions." in await wait_status(page, "saved")
        hours = store.visiting_hours(w.est_a)
        assert {(s.starts, s.ends) for s in hours.sessions} == {("09:00", "18:00")}
        assert hours.notice_hours == 1 and hours.booking_window_days == 14
        assert [b.reason for b in hours.blackouts] == ["Christmas Day"]
        await shot(page, shots, "console-visiting-hours", "#hours")

        # a bad timetable is refused in words
        await rows.nth(0).locator("input").nth(1).fill("08:00")
        await page.click("#hours-save")
        assert "ends before it starts" in await wait_status(page, "Could not save")
        await page.click("#logout")
        await page.wait_for_selector("body[data-view='login']")
        await log_in(page, product.url, "admin_a")  # reloads the saved hours

        # book on a family's behalf from the free slots, by name
        await page.wait_for_selector("#book-prisoner option", state="attached")
        await page.select_option("#book-prisoner", label="Alan Prisoner (A1234BC)")
        await page.select_option("#book-minutes", "30")
        await page.click("#book-find button[type=submit]")
        await page.wait_for_selector("#book-slot-list input[type=radio]")
        note = await page.text_content("#book-allowance")
        assert "0 of 60 minutes used, 0 requested" in note
        assert await page.text_content("#book-tz") == "Europe/London"
        first = page.locator("#book-slot-list input[type=radio]").first
        starts_at = float(await first.get_attribute("value"))
        local = dt.datetime.fromtimestamp(starts_at, ZoneInfo("Europe/London"))
        assert dt.time(9) <= local.time() < dt.time(18)
        await first.check()
        await page.select_option("#book-main", label="Mum")
        await page.locator("#book-party-list").get_by_label("Dad", exact=True).check()
        await shot(page, shots, "console-book-for-family", "#book")
        await page.click("#book-submit")
        text = await wait_status(page, "Booked: call")
        assert "with Alan Prisoner" in text and "(approved)" in text
        booked = [
            b for b in store.list_bookings(w.est_a, status="approved") if b.starts_at == starts_at
        ]
        assert len(booked) == 1
        assert booked[0].main_visitor_id == w.vid("mum") and w.vid("dad") in booked[0].visitor_ids
        assert booked[0].requested_by == "staff"
        # the bookings list names the prisoner
        await page.wait_for_selector(f'#bookings tr[data-booking="{booked[0].id}"]')
        row_text = await page.text_content(f'#bookings tr[data-booking="{booked[0].id}"]')
        assert "Alan Prisoner (A1234BC)" in row_text and "with Mum, Dad" in row_text
        # the allowance note now counts the call
        await page.wait_for_function(
            "document.getElementById('book-allowance').textContent.includes('30 of 60')"
        )

        # a 03:00 call is refused with a human message
        tomorrow = dt.datetime.now(ZoneInfo("Europe/London")).date() + dt.timedelta(days=2)
        await page.fill("#book-other", f"{tomorrow.isoformat()}T03:00")
        await page.click("#book-submit")
        text = await wait_status(page, "Could not book")
        assert "03:00 (Europe/London) is outside visiting hours" in text
        assert await page.get_attribute("#status", "data-code") == "outside_visiting_hours"
        await page.fill("#book-other", "")

        # prisoners: add one, stop their video calls
        await page.fill("#prisoner-number", "a9999zz")
        await page.fill("#prisoner-name", "Zed Newman")
        await page.click("#prisoner-add button[type=submit]")
        assert "Added Zed Newman (A9999ZZ)." in await wait_status(page, "Added")
        await page.click("button[aria-label='Stop video calls for Zed Newman']")
        await wait_status(page, "video calls stopped")
        assert not store.prisoner_by_number("A9999ZZ")["video_call_eligible"]
        await page.wait_for_selector("button[aria-label='Allow video calls for Zed Newman']")
        await page.fill("#prisoner-number", "A9999ZZ")
        await page.fill("#prisoner-name", "Zed Again")
        await page.click("#prisoner-add button[type=submit]")
        assert "already used" in await wait_status(page, "Could not add")

        # visitors: search by name, revoke a contact after confirming
        await page.fill("#visitor-q", "SIS")
        await page.click("#visitor-search button[type=submit]")
        card = page.locator(f'#visitor-results li[data-visitor="{w.vid("sis")}"]')
        await card.wait_for()
        assert "Alan Prisoner (A1234BC): approved contact" in await card.text_content()
        await shot(page, shots, "console-visitors", "#visitors")
        await card.locator("button", has_text="Revoke").click()
        await page.wait_for_selector("#dialog[open]")
        assert "Sis stops being Alan Prisoner's approved contact" in await page.text_content(
            "#dialog-text"
        )
        await page.click("#dialog-ok")
        assert "Sis is no longer Alan Prisoner's contact" in await wait_status(page, "no longer")
        await card.locator("[data-status='revoked']").wait_for()
        contact = [c for c in store.contacts(w.est_a, w.prisoner_a) if c.visitor_id == w.vid("sis")]
        assert contact[0].status == "revoked"

        await shot(page, shots, "console-admin")
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.wait_for_timeout(300)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the console scrolls sideways at 390 px ({width} px wide)"
        await shot(page, shots, "console-admin-phone")
    assert errors == []


async def test_an_officer_sees_hours_but_cannot_change_them(product):
    async with chromium() as browser:
        page = await browser.new_page()
        await log_in(page, product.url, "officer_a")
        await page.wait_for_selector("#hours-sessions .session-row")
        assert await page.is_visible("#hours-readonly")
        assert not await page.is_visible("#hours-save")
        assert await page.is_disabled("#hours-tz")
        assert not await page.is_visible("#prisoner-add")
        # officers still book for families and search visitors
        await page.wait_for_selector("#book-prisoner option", state="attached")
        await page.click("#book-find button[type=submit]")
        await page.wait_for_selector("#book-slot-list input[type=radio]")
