"""The kiosk on the laptop page, in Chromium: a prisoner signs in with their number and the
PIN staff set, picks an approved contact, a length and a free slot, and requests a call; the
request waits in the staff console for approval; the prisoner cancels their own request;
five wrong PINs lock kiosk access (audited) until staff unlock it."""

from __future__ import annotations

from bench.world import PASSWORD
from tests.browser import chromium, screenshots_dir

DENIED = "document.body.dataset.state === 'today' && /not right|Too many/.test(document.getElementById('banner').textContent)"


async def sign_in(page, number: str, pin: str) -> None:
    if await page.is_visible("#kiosk-start"):
        await page.click("#kiosk-start")  # after a refusal the form stays open to try again
    await page.fill("#kiosk-number", number)
    await page.fill("#kiosk-pin", pin)
    await page.click("#kiosk-sign-in-button")


async def test_kiosk_request_cancel_and_pin_lock(product, tmp_path):
    shots = screenshots_dir(tmp_path)
    api = f"{product.url}/api/v1"
    w = product.world
    admin = await product.staff_session("admin_a")
    try:
        async with admin.post(f"{api}/staff/prisoners/{w.prisoner_a}/pin", json={"pin": "12"}) as r:
            assert r.status == 400  # 4 to 8 digits
        async with chromium() as browser:
            # staff (admin) make the laptop's set-up code and the prisoner's PIN in the console
            console = await browser.new_page()
            await console.goto(f"{product.url}/console")
            await console.fill("#username", "admin_a")
            await console.fill("#password", PASSWORD)
            await console.click("#login-button")
            await console.click("#laptops-load")
            laptop_row = f"#laptops tr[data-laptop='{w.laptops_a[0][0]}']"
            await console.click(f"{laptop_row} button:has-text('Make set-up code')")
            await console.wait_for_function(
                "/Set-up code/.test(document.getElementById('laptops-status').textContent)"
            )
            status = await console.text_content("#laptops-status")
            code = status.split("Set-up code ")[1].split(":")[0]
            await console.select_option("#pin-prisoner", str(w.prisoner_a))
            await console.fill("#pin-value", "4821")
            await console.click("#pin-form button[type=submit]")
            await console.wait_for_function(
                "/New kiosk PIN set/.test(document.getElementById('laptops-status').textContent)"
            )
            await console.screenshot(path=str(shots / "console-laptops.png"))
            assert w.store.kiosk_pin(w.prisoner_a) is not None

            page = await browser.new_page()
            await page.goto(f"{product.url}/laptop?enrol={code}")
            await page.wait_for_selector("#kiosk-start", state="visible")

            await sign_in(page, "A1234BC", "4821")
            await page.wait_for_function("document.body.dataset.kiosk === 'home'")
            assert "Alan Prisoner" in await page.text_content("#kiosk-hello")
            await page.click("#kiosk-contacts button:has-text('Mum')")
            await page.click("#kiosk-lengths button:has-text('30 minutes')")
            await page.click("#kiosk-find")
            await page.wait_for_selector("#kiosk-slots button")
            await page.screenshot(path=str(shots / "laptop-kiosk-slots.png"), full_page=True)
            await page.click("#kiosk-slots button >> nth=0")
            await page.wait_for_selector("#kiosk-requests li[data-booking]")
            assert "request was sent" in await page.text_content("#banner")
            bid = int(await page.get_attribute("#kiosk-requests li[data-booking]", "data-booking"))
            await page.screenshot(path=str(shots / "laptop-kiosk-requested.png"), full_page=True)

            # the request waits in the staff console for approval
            await console.bring_to_front()
            row = f"#bookings tr[data-booking='{bid}'][data-status='requested']"
            await console.wait_for_selector(row)
            assert "requested by prisoner" in await console.text_content(row)
            assert await console.is_visible(f"{row} button:has-text('Approve')")

            # the prisoner cancels their own request; the console follows
            await page.click(f"#kiosk-requests li[data-booking='{bid}'] button")
            await page.wait_for_selector(
                f"#kiosk-requests li[data-booking='{bid}']", state="detached"
            )
            assert w.store.booking(bid).status == "cancelled"
            await console.bring_to_front()  # a background tab's timers are throttled
            await console.wait_for_selector(row, state="detached", timeout=35000)
            await page.bring_to_front()
            await page.click("#kiosk-sign-out")

            # five wrong PINs lock kiosk access; the right one is refused from then on
            for attempt in range(5):
                await page.evaluate("document.getElementById('banner').textContent = ''")
                await sign_in(page, "A1234BC", f"000{attempt}")
                await page.wait_for_function(DENIED)
            assert "Too many wrong PINs" in await page.text_content("#banner")
            await page.screenshot(path=str(shots / "laptop-kiosk-locked.png"))
            await page.evaluate("document.getElementById('banner').textContent = ''")
            await sign_in(page, "A1234BC", "4821")
            await page.wait_for_function(DENIED)
            assert "Too many wrong PINs" in await page.text_content("#banner")
            rows = w.store.connection.execute(
                "SELECT kind, actor, detail FROM audit WHERE kind LIKE 'kiosk_%' ORDER BY id"
            ).fetchall()
            kinds = [r[0] for r in rows]
            assert kinds.count("kiosk_pin_failed") == 5 and "kiosk_locked" in kinds
            assert "kiosk_locked_attempt" in kinds
            assert all("4821" not in r[2] and "0003" not in r[2] for r in rows)

            # staff unlock it; the right PIN works again
            assert w.store.kiosk_pin(w.prisoner_a).locked
            await console.bring_to_front()
            await console.click("#pin-unlock")
            await console.wait_for_function(
                "/unlocked/.test(document.getElementById('laptops-status').textContent)"
            )
            assert not w.store.kiosk_pin(w.prisoner_a).locked
            await page.bring_to_front()
            await sign_in(page, "A1234BC", "4821")
            await page.wait_for_function("document.body.dataset.kiosk === 'home'")
    finally:
        await admin.close()
