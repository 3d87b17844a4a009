"""The family app's screens and the staff console pass axe-core (no serious or critical
WCAG 2.2 AA violations) in Chromium, at phone width; the app works by keyboard alone, is
installable and opens offline (its service worker's shell)."""

from __future__ import annotations

import time

from aiohttp.test_utils import TestServer

from relay.app import build_app
from relay.auth import hash_password
from relay.config import Config
from tests.a11y import assert_accessible, audit
from tests.browser import chromium
from tests.test_store_world import PASSWORD, make_world

PW = "a long family password"


async def test_app_and_console_pass_axe_and_keyboard(tmp_path):
    w = make_world(tmp_path / "relay.sqlite")
    w.store.add_verified_account("mum@example.org", hash_password(PW), w.vid("mum"), time.time())
    config = Config(
        data_dir=tmp_path, seed_demo=False, vision_enabled=False, recording_enabled=False
    )
    server = TestServer(build_app(config, store=w.store), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    try:
        async with chromium() as browser:
            page = await browser.new_page()
            # the audit itself finds what it should: an unlabelled field
            await page.set_content("<html lang='en'><title>t</title><main><input></main></html>")
            assert [v["id"] for v in await audit(page)] == ["label"]
            await page.set_viewport_size({"width": 390, "height": 844})
            for screen in ("signin", "register", "forgot"):
                await page.goto(f"{url}/app#{screen}")
                await page.wait_for_selector(f"#screen-{screen}:not([hidden])")
                await assert_accessible(page, f"/app#{screen}")

            # keyboard only: sign in, then open the booking screen
            await page.goto(f"{url}/app#signin")
            await page.wait_for_selector("#screen-signin:not([hidden])")
            for _ in range(20):  # tab to the email field
                await page.keyboard.press("Tab")
                if await page.evaluate("document.activeElement.id") == "signin-email":
                    break
            await page.keyboard.type("mum@example.org")
            await page.keyboard.press("Tab")
            await page.keyboard.type(PW)
            await page.keyboard.press("Enter")
            await page.wait_for_selector("#screen-home:not([hidden])")
            await assert_accessible(page, "/app#home")
            for _ in range(40):
                await page.keyboard.press("Tab")
                if await page.evaluate("document.activeElement.id") == "book-link":
                    break
            await page.keyboard.press("Enter")
            await page.wait_for_selector("#screen-book:not([hidden])")
            # the screen shows before its slots are fetched; focus moves to its heading after
            await page.wait_for_function(
                "document.activeElement && document.activeElement.id === 'book-title'",
                timeout=5000,
            )
            assert await page.evaluate("document.activeElement.id") == "book-title"
            await assert_accessible(page, "/app#book")
            await page.goto(f"{url}/app#apply")
            await page.wait_for_selector("#screen-apply:not([hidden])")
            await assert_accessible(page, "/app#apply")

            # installable, with an offline shell: the page opens with the network down
            manifest = await page.evaluate(
                "async () => (await fetch('/static/app.webmanifest')).json()"
            )
            assert manifest["start_url"] == "/app" and manifest["icons"]
            await page.evaluate("async () => { await navigator.serviceWorker.ready; }")
            await page.goto(f"{url}/app")  # now controlled by the service worker
            await page.wait_for_function("() => navigator.serviceWorker.controller !== null")
            await browser.set_offline(True)
            try:
                await page.reload()
                await page.wait_for_selector("#screen-signin:not([hidden])")
                await page.wait_for_function(
                    "() => document.querySelector('#signin-title').textContent === 'Sign in'"
                )
            finally:
                await browser.set_offline(False)

            console = await browser.new_page()
            await console.set_viewport_size({"width": 390, "height": 844})
            await console.goto(f"{url}/console")
            await console.wait_for_selector("#login:not([hidden])")
            await assert_accessible(console, "/console login")
            await console.get_by_label("Username").fill("admin_a")
            await console.get_by_label("Password").fill(PASSWORD)
            await console.keyboard.press("Enter")
            await console.wait_for_selector("#app:not([hidden])")
            await console.wait_for_selector("#vetting-empty:not([hidden])")
            await assert_accessible(console, "/console")
    finally:
        await server.close()
