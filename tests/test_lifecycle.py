"""Booking changes that affect a live call, end to end: the real relay, real aiortc clients.

Each test here failed before relay/calls/lifecycle.py: a revoked visitor stayed on the call,
a cancelled call carried on for free, and the booking records and the live call disagreed.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from relay import keys
from tests.test_call_policy import flowing

API = "/api/v1"


async def revoke(product, visitor: str) -> dict:
    w = product.world
    contact = next(c for c in w.store.contacts(w.est_a, w.prisoner_a)
                   if c.visitor_id == w.vid(visitor))
    admin = await product.staff_session("admin_a")
    try:
        async with admin.post(f"{product.url}{API}/staff/contacts/{contact.id}/revoke") as r:
            body = await r.json()
            assert r.status == 200, body
            return body
    finally:
        await admin.close()


async def family_cancel(product, booking_id: int, who: str = "mum") -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{product.url}{API}/bookings/{booking_id}/cancel",
                          headers={"Authorization": f"Bearer {product.world.key(who)}"},
                          json={"reason": "changed our plans"}) as r:
            return r.status, await r.json()


def minutes_used(product) -> int:
    return product.world.store.allowance_used(product.world.prisoner_a, time.time())


async def test_revoking_the_main_visitor_ends_the_live_call_and_records_it_truthfully(product):
    b = product.booking_now(seconds=600)
    fam, pri = await product.pair(b)
    try:
        await fam.wait_state("live")
        await pri.wait_frames("video0", 10)
        used_before = minutes_used(product)
        started = time.monotonic()
        body = await revoke(product, "mum")
        assert body["cancelled_booking_ids"] == [b]
        ended = await fam.wait_state("ended", timeout=2.0)
        assert ended["reason"] == "approval_revoked"
        assert ended["message"] == "a visitor's approval for this call was withdrawn"
        assert (await pri.wait_state("ended", timeout=2.0))["reason"] == "approval_revoked"
        assert time.monotonic() - started < 2.0
        await asyncio.wait_for(fam.ended.wait(), 2)
        await asyncio.wait_for(pri.ended.wait(), 2)
        assert await flowing(fam, "video0", 0.5) == 0 and await flowing(pri, "video0", 0.5) == 0
        booking = product.world.store.booking(b)
        # it happened and ended early: not "cancelled" with a failed outcome write
        assert (booking.status, booking.reason) == ("completed", "approval_revoked")
        events = [e[2] for e in product.world.store.booking_events(b)]
        assert "ended_early" in events and "cancelled" not in events
        assert minutes_used(product) == used_before, "a call that went live counts as used"
    finally:
        await fam.close()
        await pri.close()


async def test_revoking_another_visitor_drops_one_approved_face_and_the_call_goes_on(product):
    b = product.booking_now(seconds=600, others=("dad",))
    fam, pri = await product.pair(b)
    staff = await product.staff_session()
    try:
        await fam.wait_state("live")
        url = f"{product.url}{API}/staff/calls/{b}"
        async with staff.get(f"{product.url}{API}/staff/calls") as r:
            before = next(c for c in (await r.json())["calls"] if c["booking_id"] == b)
        assert before["approved_faces"]["family"] == 2
        body = await revoke(product, "dad")
        assert body["cancelled_booking_ids"] == []
        deadline = time.monotonic() + 2.0
        while product.app[keys.REGISTRY].get(b).call.legs["family"].approved_faces != 1:
            assert time.monotonic() < deadline, "the revoked visitor's face still counts"
            await asyncio.sleep(0.05)
        async with staff.get(f"{product.url}{API}/staff/calls") as r:
            after = next(c for c in (await r.json())["calls"] if c["booking_id"] == b)
        assert after["approved_faces"] == {"family": 1, "prison": 1}
        assert after["state"] == "live" and after["legs"] == ["family", "prison"]
        assert await flowing(pri, "video0", 1.0) > 10 and await flowing(fam, "video0", 1.0) > 10
        assert product.world.store.booking(b).status == "approved"
        async with staff.post(url + "/end") as r:
            assert r.status == 200
        assert (await fam.wait_state("ended"))["reason"] == "staff"
        assert product.world.store.booking(b).status == "completed"
    finally:
        await staff.close()
        await fam.close()
        await pri.close()


async def test_cancelling_during_the_call_ends_it_and_keeps_the_allowance_used(product):
    b = product.booking_now(seconds=600)
    fam, pri = await product.pair(b)
    try:
        await fam.wait_state("live")
        await pri.wait_frames("video0", 10)
        used_before = minutes_used(product)
        status, body = await family_cancel(product, b)
        assert status == 200, body
        assert (body["status"], body["reason"]) == ("completed", "booking_cancelled")
        ended = await pri.wait_state("ended", timeout=2.0)
        assert ended["reason"] == "booking_cancelled"
        assert ended["message"] == "the booking was cancelled"
        await asyncio.wait_for(pri.ended.wait(), 2)
        assert await flowing(pri, "video0", 0.5) == 0
        assert minutes_used(product) == used_before, "no free call: the minutes stay used"
        # a second cancel is refused, not a silent 200
        status, body = await family_cancel(product, b)
        assert (status, body["error"]["code"]) == (409, "booking_not_active")
    finally:
        await fam.close()
        await pri.close()


async def test_cancelling_before_the_call_went_live_gives_the_minutes_back(product):
    b = product.booking_now(seconds=600)
    used_before = minutes_used(product)
    from protocol.client import CallClient
    from protocol.media import EncodedTrack
    from tests.support import video_clip

    fam = CallClient(product.url, await product.family_token(b),
                     video=EncodedTrack("video", video_clip(seed=1), 30))
    await fam.join()
    try:
        await fam.wait_state("waiting")
        status, body = await family_cancel(product, b)
        assert status == 200 and body["status"] == "cancelled"
        assert (await fam.wait_state("ended", timeout=2.0))["reason"] == "booking_cancelled"
        assert minutes_used(product) == used_before - 10
        assert product.world.store.booking(b).status == "cancelled"
    finally:
        await fam.close()


async def test_staff_outcome_and_resume_refuse_what_they_cannot_do(product):
    b = product.booking_now(seconds=600)
    fam, pri = await product.pair(b)
    staff = await product.staff_session()
    try:
        await fam.wait_state("live")
        url = f"{product.url}{API}/staff"
        async with staff.post(f"{url}/calls/{b}/resume") as r:
            assert (r.status, (await r.json())["error"]["code"]) == (409, "not_paused")
        async with staff.post(f"{url}/bookings/{b}/outcome", json={"outcome": "failed"}) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (409, "call_in_progress")
        assert fam.state == "live"
        # pause is explicit state on the producers, set by the policy engine
        producers = [p for leg in product.app[keys.REGISTRY].get(b).call.legs.values()
                     for p in leg.producers.values()]
        assert producers and not any(p.paused for p in producers)
        async with staff.post(f"{url}/calls/{b}/pause") as r:
            assert r.status == 200
        assert all(p.paused for p in producers)
        async with staff.post(f"{url}/calls/{b}/resume") as r:
            assert r.status == 200 and (await r.json())["state"] == "live"
        assert not any(p.paused for p in producers)
        async with staff.post(f"{url}/calls/{b}/end") as r:
            assert r.status == 200
        await fam.wait_state("ended")
        async with staff.post(f"{url}/bookings/{b}/outcome", json={"outcome": "failed"}) as r:
            assert r.status == 200 and (await r.json())["status"] == "failed"
    finally:
        await staff.close()
        await fam.close()
        await pri.close()
