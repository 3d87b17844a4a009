""" "Nobody enrolled needs staff" per establishment: the API (who may read and set it, bad
bodies, audit) and its effect on real calls (real aiortc clients, the real identity gate):
a side with nobody enrolled is held where the establishment (or the relay's default) wants
staff to admit it, and joins unchecked where it does not.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from bench.product import start_product
from bench.small_clips import tone_clip, video_clip
from bench.world import PASSWORD
from protocol.client import CallClient
from protocol.media import EncodedTrack
from relay import keys
from tests.browser import chromium, screenshots_dir
from tests.test_browser_admin import log_in, shot, wait_status
from tests.test_recording import wait_until


def _url(product, est: int) -> str:
    return f"{product.url}/api/v1/staff/establishments/{est}/identity"


async def _status(response: aiohttp.ClientResponse) -> tuple[int, dict]:
    return response.status, await response.json()


async def test_admins_set_their_own_establishments_setting_audited(tmp_path):
    product = await start_product(tmp_path)
    w = product.world
    w.store.add_staff(w.est_b, "admin_b", PASSWORD, "admin")
    officer = await product.staff_session("officer_a")
    admin = await product.staff_session("admin_a")
    admin_b = await product.staff_session("admin_b")
    anonymous = aiohttp.ClientSession()
    a, b = _url(product, w.est_a), _url(product, w.est_b)
    try:
        default = {
            "establishment_id": w.est_a,
            "unenrolled_needs_staff": False,
            "set_here": False,
            "relay_default": False,
        }
        assert await _status(await officer.get(a)) == (200, default)
        status, body = await _status(await officer.put(a, json={"unenrolled_needs_staff": True}))
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, body = await _status(await anonymous.get(a))
        assert (status, body["error"]["code"]) == (401, "unauthenticated")
        # another establishment's setting is not there for them, read or written
        for call in (
            admin.get(b),
            admin.put(b, json={"unenrolled_needs_staff": True}),
            admin.get(_url(product, 999)),
            admin.get(f"{product.url}/api/v1/staff/establishments/x/identity"),
        ):
            status, body = await _status(await call)
            assert status == 404 and body["error"]["code"] in (
                "establishment_not_found",
                "not_found",
            ), body
        for bad in (
            {"unenrolled_needs_staff": "yes"},
            {"unenrolled_needs_staff": 1},
            {},
            {"unenrolled_needs_staff": True, "also": 1},
            [True],
        ):
            # the one JSON body parser's answer to a body that does not fit (relay/web/jsonbody.py)
            status, body = await _status(await admin.put(a, json=bad))
            assert (status, body["error"]["code"]) == (400, "invalid_request"), (bad, body)
        status, body = await _status(
            await admin.put(a, data=b"{not json", headers={"Content-Type": "application/json"})
        )
        assert 400 <= status < 500 and body["error"]["code"]
        assert w.store.policy(w.est_a).unenrolled_needs_staff is None  # nothing changed

        status, body = await _status(await admin.put(a, json={"unenrolled_needs_staff": True}))
        assert (status, body) == (
            200,
            {**default, "unenrolled_needs_staff": True, "set_here": True},
        )
        assert (await (await officer.get(a)).json())["unenrolled_needs_staff"] is True
        assert w.store.policy(w.est_a).unenrolled_needs_staff is True
        # the other establishment keeps the relay's default
        assert (await (await admin_b.get(b)).json())["set_here"] is False
        assert w.store.policy(w.est_b).unenrolled_needs_staff is None
        status, body = await _status(await admin.put(a, json={"unenrolled_needs_staff": None}))
        assert (status, body) == (200, default)
        rows = w.store.connection.execute(
            "SELECT establishment_id, actor, detail FROM audit"
            " WHERE kind = 'identity_settings_set' ORDER BY id"
        ).fetchall()
        assert [(r[0], r[1]) for r in rows] == [(w.est_a, f"staff:{w.admin_a}")] * 2
        first, second = (json.loads(r[2]) for r in rows)
        assert first == {
            "unenrolled_needs_staff": True,
            "in_force": True,
            "before": {"unenrolled_needs_staff": False, "set_here": False},
        }
        assert second["unenrolled_needs_staff"] is None and second["in_force"] is False
    finally:
        for s in (officer, admin, admin_b, anonymous):
            await s.close()
        await product.server.close()


async def _join_in_b(product, booking: int) -> tuple[CallClient, CallClient]:
    """Both sides of a call in the world's second establishment (its laptop, its visitor)."""
    laptop_id, secret = product.world.laptop_b
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"{product.url}/api/v1/laptop/token",
            json={"laptop_id": laptop_id, "laptop_secret": secret, "booking_id": booking},
        ) as r:
            assert r.status == 200, await r.text()
            prison_token = (await r.json())["token"]
    clients = []
    for token, seed, tone in (
        (await product.family_token(booking, "bfam"), 1, 440),
        (prison_token, 2, 660),
    ):
        clients.append(
            CallClient(
                product.url,
                token,
                receive="count",
                video=EncodedTrack("video", video_clip(seed=seed), 30),
                audio=EncodedTrack("audio", tone_clip(tone), 50),
            )
        )
    for c in clients:
        await c.join()
    return clients[0], clients[1]


@pytest.mark.timeout(300)
async def test_nobody_enrolled_is_held_where_the_establishment_says_so(tmp_path):
    # the relay's default holds such a side; the second establishment chose otherwise
    product = await start_product(
        tmp_path,
        vision_enabled=True,
        identity_unenrolled_needs_staff=True,
        recording_chunk_s=1.0,
    )
    w = product.world
    w.store.set_unenrolled_needs_staff(w.est_b, False)
    registry = product.app[keys.REGISTRY]
    in_a = product.booking_now()
    now = time.time()
    in_b = w.store.add_booking_unchecked(
        prisoner_id=w.prisoner_b,
        call_type="social",
        starts_at=now - 1,
        ends_at=now + 600,
        main_visitor_id=w.vid("bfam"),
        visitor_ids=[],
        laptop_id=w.laptop_b[0],
        status="approved",
        now=now,
    )
    fam_a, pri_a = await product.pair(in_a)
    fam_b, pri_b = await _join_in_b(product, in_b)
    try:
        # establishment B: nobody enrolled, joined unchecked, the call goes live
        await fam_b.wait_state("live", timeout=20)
        await pri_b.wait_frames("video0", 30, timeout=20)
        live_b = registry.get(in_b)
        assert {r: s.status for r, s in live_b.policy.identity.items()} == {
            "family": "not_checked",
            "prison": "not_checked",
        }
        # establishment A (the relay's default): both sides wait for staff, nothing crosses
        live_a = registry.get(in_a)
        await wait_until(lambda: len(live_a.policy.identity) == 2)
        assert {r: s.status for r, s in live_a.policy.identity.items()} == {
            "family": "needs_staff",
            "prison": "needs_staff",
        }
        assert live_a.policy.state == "paused" and live_a.policy.alerts == 2
        await asyncio.sleep(1.5)
        assert pri_a.frames["video0"] == 0 and fam_a.frames["video0"] == 0
    finally:
        for c in (fam_a, pri_a, fam_b, pri_b):
            await c.close()
    try:
        await wait_until(lambda: not product.app[keys.RECORDER].active, timeout=20)
        index = product.app[keys.RECORDING_INDEX]
        # nobody of the held call was admitted: nothing of it was recorded, not even a row
        assert index.list(booking_id=in_a) == []
        assert [r.status for r in index.list(booking_id=in_b)] == ["complete"]
    finally:
        await product.server.close()


async def test_console_admin_sets_it_and_an_officer_reads_it(product, tmp_path):
    """The console's control, clicked as staff use it, at desktop and phone width."""
    w = product.world
    shots = screenshots_dir(tmp_path)
    errors: list[str] = []
    async with chromium() as browser:
        page = await browser.new_page()
        await page.set_viewport_size({"width": 1280, "height": 900})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await log_in(page, product.url, "admin_a")
        now = page.locator("#idset-now")
        await page.wait_for_function(
            "() => document.getElementById('idset-now').textContent.includes('In force')"
        )
        assert "joins unchecked" in await now.text_content()
        assert "(the relay's default)" in await now.text_content()
        assert await page.is_checked("#idset-default")
        assert "now: joins unchecked" in await page.text_content("#idset-default-label")
        await page.click("label[for=idset-staff]")
        await page.click("#idset-save")
        await wait_status(page, "Identity setting saved")
        assert "waits until a member of staff admits it" in await now.text_content()
        assert w.store.policy(w.est_a).unenrolled_needs_staff is True
        await shot(page, shots, "console-identity-setting", "#identity-settings")
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.locator("#identity-settings").scroll_into_view_if_needed()
        await shot(page, shots, "console-identity-setting-phone", "#identity-settings")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the console scrolls sideways at 390 px ({width} px wide)"

        await page.click("#logout")
        officer = page
        await officer.set_viewport_size({"width": 1280, "height": 900})
        await log_in(officer, product.url, "officer_a")
        await officer.wait_for_function(
            "() => document.getElementById('idset-now').textContent.includes('In force')"
        )
        assert "waits until a member of staff" in await officer.text_content("#idset-now")
        assert await officer.is_checked("#idset-staff")
        assert await officer.is_disabled("#idset-join")
        assert not await officer.is_visible("#idset-save")
        assert await officer.is_visible("#idset-readonly")
    assert errors == []
    rows = w.store.connection.execute(
        "SELECT actor FROM audit WHERE kind = 'identity_settings_set'"
    ).fetchall()
    assert [r[0] for r in rows] == [f"staff:{w.admin_a}"]
