"""Laptop enrolment: a one-time code from staff becomes a device key; revoking it stops the
key at once and ends the call in progress on that laptop; every step is audited."""

from __future__ import annotations

import aiohttp

from protocol.client import CallClient
from protocol.media import EncodedTrack
from tests.support import tone_clip, video_clip


async def _post(url: str, body: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=body) as r:
            return r.status, await r.json()


async def test_enrol_join_and_revoke_ends_the_call(product):
    api = f"{product.url}/api/v1"
    laptop_id = product.world.laptops_a[0][0]
    officer = await product.staff_session("officer_a")
    admin = await product.staff_session("admin_a")
    try:
        async with officer.post(f"{api}/staff/laptops/{laptop_id}/enrol") as r:
            assert r.status == 403  # enrolment is for admins
        async with admin.post(f"{api}/staff/laptops/{product.world.laptop_b[0]}/enrol") as r:
            assert r.status == 404  # another establishment's laptop
        async with admin.post(f"{api}/staff/laptops/{laptop_id}/enrol") as r:
            assert r.status == 200
            enrolment = await r.json()
        code = enrolment["code"]
        assert len(code) == 9 and code[4] == "-"

        status, body = await _post(f"{api}/laptop/enrol", {"code": code.lower().replace("-", " ")})
        assert status == 200, body
        key = body["device_key"]
        assert body["laptop"]["id"] == laptop_id
        status, body = await _post(f"{api}/laptop/enrol", {"code": code})
        assert status == 401 and body["error"]["code"] == "bad_enrolment_code"  # one time only

        bid = product.booking_now(others=("dad",))
        status, today = await _post(f"{api}/laptop/today", {"device_key": key})
        assert status == 200, today
        mine = [c for c in today["calls"] if c["booking_id"] == bid]
        assert mine and mine[0]["visitors"] == ["Mum", "Dad"]

        status, body = await _post(
            f"{api}/laptop/join-token", {"device_key": key, "booking_id": bid}
        )
        assert status == 200 and body["role"] == "prison", body
        prison = CallClient(
            product.url,
            body["token"],
            receive="count",
            video=EncodedTrack("video", video_clip(seed=2), 30),
            audio=EncodedTrack("audio", tone_clip(660), 50),
        )
        family = CallClient(
            product.url,
            await product.family_token(bid),
            receive="count",
            video=EncodedTrack("video", video_clip(seed=1), 30),
            audio=EncodedTrack("audio", tone_clip(440), 50),
        )
        await prison.join()
        await family.join()
        try:
            await family.wait_for(lambda m: m.get("state") == "live", timeout=15)
            async with admin.get(f"{api}/staff/laptops") as r:
                listed = {x["id"]: x for x in (await r.json())["laptops"]}
            assert listed[laptop_id]["device_keys"] == 1

            async with admin.post(f"{api}/staff/laptops/{laptop_id}/revoke") as r:
                assert r.status == 200
                revoked = await r.json()
            assert revoked["revoked_keys"] == 1 and revoked["ended_booking_ids"] == [bid]
            ended = await family.wait_for(lambda m: m.get("state") == "ended", timeout=10)
            assert ended["reason"] == "laptop_revoked"
            assert "laptop" in ended["message"]
        finally:
            await prison.close()
            await family.close()

        status, body = await _post(f"{api}/laptop/today", {"device_key": key})
        assert status == 401 and body["error"]["code"] == "device_revoked"
        status, body = await _post(f"{api}/laptop/today", {"device_key": "1.wrong"})
        assert status == 401 and body["error"]["code"] == "bad_credentials"
        status, body = await _post(f"{api}/laptop/today", {"device_key": 5})
        assert status == 400 and body["error"]["code"] == "invalid_request"

        async with admin.get(f"{api}/staff/calls/{bid}/audit") as r:
            kinds = [x["kind"] for x in (await r.json())["records"]]
        assert "laptop_revoked" in kinds
        rows = product.world.store.connection.execute(
            "SELECT kind, actor, detail FROM audit WHERE kind LIKE 'laptop_%' ORDER BY id"
        ).fetchall()
        assert [r[0] for r in rows][:3] == [
            "laptop_enrolment_code",
            "laptop_enrolled",
            "laptop_revoked",
        ]
        assert all(code not in r[2] and key.split(".")[1] not in r[2] for r in rows)
    finally:
        await officer.close()
        await admin.close()
