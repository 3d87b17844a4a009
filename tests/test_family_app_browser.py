"""The family app (/app) in headless Chromium, the way a new person uses it.

Registration (the verification link read from the message aiosmtpd received) -> an
application with two photos -> a staff member approves it in the console -> booking a call
-> staff approve it in the console -> the approval email -> the Join button opens the call
page -> the family cancels it (the cancellation email). Then each refusal a family meets shows a human message: wrong password, a taken slot,
a time outside visiting hours, the month's allowance used up, an under-age main visitor. Once at desktop width, once at
390 px (a phone), with screenshots for docs/screenshots/.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestServer
from PIL import Image

from relay.app import build_app
from relay.config import Config
from relay.records.store.visiting import VisitingHours, every_day
from tests.browser import SCREENSHOTS_ENV, chromium
from tests.mailbox import Mailbox, body_of, link_token
from tests.test_store_world import PASSWORD, make_world

# SCREENSHOTS_DIR=docs/screenshots refreshes the committed ones; else a temporary folder
SHOTS = Path(os.environ.get(SCREENSHOTS_ENV) or tempfile.mkdtemp(prefix="app-shots-"))
PW = "a long family password"


def photo(colour) -> dict:
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), colour).save(buf, "JPEG")
    return {"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": buf.getvalue()}


async def shot(page, name: str, width: int) -> None:
    if width == 390:
        name = f"{name}-phone"
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def open_booking(page, starts: float | None) -> None:
    """Open the booking screen and choose ``starts`` (None: the first) from the free slots
    the relay offers."""
    await page.get_by_role("link", name="Book a call").click()
    await page.wait_for_function("() => document.activeElement?.id === 'book-title'")
    if starts is None:
        await page.wait_for_selector("#book-slot option", state="attached")
        await page.select_option("#book-slot", index=0)
        return
    value = await page.evaluate("(s) => String(s)", starts)
    await page.wait_for_selector(f'#book-slot option[value="{value}"]', state="attached")
    await page.select_option("#book-slot", value)


def walk_timetable(now: float) -> tuple[str, float]:
    """A zone where the local day has hours left, and the first slot six minutes from now:
    sessions start then every day, so the Join button opens within the test."""
    for name in ("Europe/London", "Asia/Tokyo", "America/New_York"):
        local = dt.datetime.fromtimestamp(now + 360, ZoneInfo(name))
        if 1 <= local.hour <= 20:
            return name, (int(now / 60) + 6) * 60
    raise AssertionError("one of three zones 9 and 5 hours apart has a daytime hour")


def hours_from(tz: str, starts: float, minutes: int) -> VisitingHours:
    """Every day, one session from ``starts`` (local) for ``minutes``."""
    a = dt.datetime.fromtimestamp(starts, ZoneInfo(tz))
    b = a + dt.timedelta(minutes=minutes)
    ends = "24:00" if b.date() != a.date() else f"{b:%H:%M}"
    return VisitingHours(
        timezone=tz, notice_hours=0, booking_window_days=62, sessions=every_day(f"{a:%H:%M}", ends)
    )


async def shows(page, selector: str, text: str) -> None:
    await page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.textContent || '').includes(t)",
        arg=[selector, text],
        timeout=20000,
    )


async def status(page, text: str) -> None:
    try:
        await page.wait_for_function(
            "(t) => { const s = document.getElementById('status');"
            " return !s.hidden && s.textContent.includes(t); }",
            arg=text,
            timeout=20000,
        )
    except Exception:
        shown = await page.text_content("#status")
        raise AssertionError(f"wanted {text!r} in the status, it says {shown!r}") from None


@pytest.mark.parametrize("width", [1024, 390])
async def test_new_family_from_registration_to_join(tmp_path, width):
    w = make_world(tmp_path / "relay.sqlite")
    async with Mailbox() as box:
        config = Config(
            data_dir=tmp_path,
            seed_demo=False,
            vision_enabled=False,
            smtp_host="127.0.0.1",
            smtp_port=box.port,
            smtp_tls="none",
            notify_poll_s=0.2,
            recording_enabled=False,
        )
        server = TestServer(build_app(config, store=w.store), host="127.0.0.1")
        await server.start_server()
        url = str(server.make_url("")).rstrip("/")
        try:
            await walk(url, w, box, width)
        finally:
            await server.close()


async def walk(url: str, w, box: Mailbox, width: int) -> None:
    email = f"jo{width}@example.org"
    async with chromium() as browser:
        page = await browser.new_page()
        await page.set_viewport_size({"width": width, "height": 900})
        await page.goto(f"{url}/app")
        await page.wait_for_selector("#screen-signin:not([hidden])")
        assert await page.evaluate("navigator.serviceWorker !== undefined")
        await shot(page, "app-signin", width)

        # register
        await page.get_by_role("link", name="New here? Register").click()
        reg = page.locator("#screen-register")
        await reg.get_by_label("Your full name").fill("Jo Family")
        await reg.get_by_label("Date of birth").fill("1985-04-04")
        await reg.get_by_label("Email").fill(email)
        await reg.get_by_label("Choose a password").fill(PW)
        await shot(page, "app-register", width)
        await page.get_by_role("button", name="Register").click()
        await status(page, "We have sent you an email")

        # the link from the email confirms the address
        msg = await box.wait(email, "confirm")
        await page.goto(f"{url}/app#verify={link_token(msg, 'verify')}")
        await status(page, "Your email address is confirmed")

        # a wrong password is a human message; the right one signs in
        signin = page.locator("#screen-signin")
        await signin.get_by_label("Email").fill(email)
        await signin.get_by_label("Password").fill("not my password")
        await page.get_by_role("button", name="Sign in").click()
        await status(page, "The email or password is wrong")
        await signin.get_by_label("Password").fill(PW)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_selector("#screen-home:not([hidden])")
        await shows(page, "#home-name", "Jo Family")

        # a child in the household
        home = page.locator("#screen-home")
        await home.get_by_label("Child's full name").fill("Sam Family")
        await home.get_by_label("Date of birth").fill("2017-01-01")
        await page.get_by_label("Relationship to you").fill("son")
        await page.get_by_role("button", name="Add child").click()
        await status(page, "Added")

        # apply, with both photos
        await page.get_by_role("link", name="Apply to call someone").click()
        await page.get_by_label("Their prison number").fill("A1234BC")
        await page.get_by_label("Their full name").fill("Alan Prisoner")
        await page.get_by_label("Your relationship to them").fill("brother")
        await page.get_by_label("Your home address").fill("1 High Street, Wrexham")
        await page.get_by_label("Sam Family").check()
        await page.set_input_files("#apply-id-photo", files=[photo((200, 180, 160))])
        await page.set_input_files("#apply-face-photo", files=[photo((90, 60, 50))])
        await shot(page, "app-apply", width)
        await page.get_by_role("button", name="Send application").click()
        await status(page, "Your application is sent")
        await shows(page, "#applications-list", "Being checked by the prison")

        # staff approve it in the console
        console = await browser.new_page()
        await console.set_viewport_size({"width": width, "height": 900})
        await console.goto(f"{url}/console")
        await console.get_by_label("Username").fill("admin_a")
        await console.get_by_label("Password").fill(PASSWORD)
        await console.keyboard.press("Enter")
        item = console.locator("#vetting-list article")
        await item.first.wait_for()
        assert "Jo Family, to call Alan Prisoner" in await item.first.text_content()
        await console.wait_for_function(
            "() => [...document.querySelectorAll('#vetting-list img')].every(i => i.naturalWidth > 0)"
        )
        await console.locator("#vetting").screenshot(
            path=str(SHOTS / ("vetting-queue" + ("-phone" if width == 390 else "") + ".png"))
        )
        await console.get_by_role("button", name="Approve application").click()
        await console.wait_for_function(
            "() => document.getElementById('vetting-status').textContent.includes('approved')"
        )
        await box.wait(email, "approved to call")

        # book a call starting in six minutes (the first free slot), with the child
        tz, starts = walk_timetable(time.time())
        w.store.set_visiting_hours(w.est_a, hours_from(tz, starts, 24 * 60))
        await page.reload()
        await page.wait_for_selector("#screen-home:not([hidden])")
        await shows(page, "#contacts-list", "Alan Prisoner")
        await open_booking(page, starts)
        await page.get_by_label("Sam Family").check()
        await shot(page, "app-book", width)
        await page.get_by_role("button", name="Request this call").click()
        await status(page, "Your request is sent")
        await shows(page, "#bookings-list", "Waiting for the prison")
        (booking,) = w.store.visitor_bookings(w.store.account_by_email(email)[0].visitor_id)
        assert len(booking.visitor_ids) == 2

        # staff approve the booking in the console; the approval email arrives
        await console.reload()
        await console.get_by_role("button", name=f"Approve booking {booking.id}").click()
        await console.wait_for_selector(
            f'#bookings tr[data-booking="{booking.id}"][data-status="approved"]'
        )
        msg = await box.wait(email, "is booked")
        assert "Alan Prisoner" in body_of(msg)

        # errors, each in words. A slot that fell outside visiting hours while it was on
        # screen (staff shortened the day's session to its first hour):
        await page.reload()
        await open_booking(page, starts + 3600)
        w.store.set_visiting_hours(w.est_a, hours_from(tz, starts, 60))
        await page.get_by_role("button", name="Request this call").click()
        await status(page, "outside the prison's visiting hours")
        w.store.set_visiting_hours(w.est_a, hours_from(tz, starts, 24 * 60))
        # a slot taken while the family was choosing it
        await page.get_by_role("link", name="Back").click()
        await page.wait_for_selector("#screen-home:not([hidden])")
        await open_booking(page, starts + 7200)
        taken = w.store.request_booking(
            prisoner_id=w.prisoner_a,
            call_type="social",
            starts_at=starts + 7200,
            minutes=30,
            main_visitor_id=w.vid("mum"),
            visitor_ids=[],
            requested_by="family",
            now=time.time(),
            actor="test",
        )
        await page.get_by_role("button", name="Request this call").click()
        await status(page, "That time has just been taken")
        # the month's allowance used up while choosing (60 of 60 minutes once that is approved)
        value = await page.evaluate("(s) => String(s)", starts + 3600)
        await page.select_option("#book-slot", value)
        w.store.approve_booking(taken.id, w.officer_a, time.time())
        await page.get_by_role("button", name="Request this call").click()
        await status(page, "This month's call time is used up")
        await page.get_by_role("link", name="Back").click()

        # the Join button opens the call page (the waiting room is open five minutes ahead)
        await page.wait_for_selector("#screen-home:not([hidden])")
        await shows(page, "#bookings-list", "Booked")
        await shot(page, "app-home", width)
        assert await page.evaluate("document.documentElement.scrollWidth") <= width
        await page.get_by_role("button", name="Join the call").click()
        await page.wait_for_url("**/join?token=*")

        # back in the app, the family cancels it; staff and the email say so
        await page.goto(f"{url}/app")
        await page.get_by_role("button", name="Cancel call").click()
        await page.locator("#confirm-ok").click()
        await status(page, "The call is cancelled")
        await shows(page, "#bookings-list", "Cancelled")
        await box.wait(email, "is cancelled")
        assert w.store.booking(booking.id).status == "cancelled"

        # an under-18 account holder cannot be the main visitor, and is told so
        teen = f"teen{width}@example.org"
        page2 = await browser.new_page()
        await page2.set_viewport_size({"width": width, "height": 900})
        await page2.goto(f"{url}/app")  # the same browser: sign Jo out first
        await page2.get_by_role("button", name="Sign out").click()
        await status(page2, "You are signed out")
        await page2.get_by_role("link", name="New here? Register").click()
        reg2 = page2.locator("#screen-register")
        await reg2.get_by_label("Your full name").fill("Teen Family")
        await reg2.get_by_label("Date of birth").fill("2012-06-06")
        await reg2.get_by_label("Email").fill(teen)
        await reg2.get_by_label("Choose a password").fill(PW)
        await page2.get_by_role("button", name="Register").click()
        msg = await box.wait(teen, "confirm")
        await page2.goto(f"{url}/app#verify={link_token(msg, 'verify')}")
        await status(page2, "confirmed")
        acc, _ = w.store.account_by_email(teen)
        w.store.set_visitor_verified(acc.visitor_id, True)
        w.store.approve_contact(w.prisoner_a2, acc.visitor_id, w.admin_a, time.time())
        await page2.locator("#screen-signin").get_by_label("Email").fill(teen)
        await page2.locator("#screen-signin").get_by_label("Password").fill(PW)
        await page2.get_by_role("button", name="Sign in").click()
        await open_booking(page2, None)
        await page2.get_by_role("button", name="Request this call").click()
        await status(page2, "must be 18 or over")

        # Welsh: the switch changes the words and is remembered
        await page2.get_by_label("Language").select_option("cy")
        await page2.wait_for_function("() => document.documentElement.lang === 'cy'")
        await page2.get_by_role("link", name="Yn ôl").click()
        await page2.wait_for_selector("#screen-home:not([hidden])")
        await shows(page2, "#bookings-title", "Fy ngalwadau")
        await page2.reload()
        await page2.wait_for_selector("#screen-home:not([hidden])")
        await shows(page2, "#bookings-title", "Fy ngalwadau")
        await shot(page2, "app-home-welsh", width)
