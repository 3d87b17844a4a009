"""Visiting hours, free slots and staff administration over real HTTP on a real SQLite file:
who may ask, what they see, and a human refusal for each broken rule."""

from __future__ import annotations

import datetime as dt

import pytest

from relay.app import build_app
from relay.config import Config
from tests.test_api import SECRET, bearer, err, login, ok
from tests.test_store_world import NOW, make_world

# NOW is Thursday 10 December 2026, 08:00 UTC (08:00 in London, GMT)
HOURS = {
    "timezone": "Europe/London",
    "booking_window_days": 16,
    "notice_hours": 2,
    "sessions": [{"weekday": d, "starts": "09:00", "ends": "11:00", "rooms": 0} for d in range(5)],
    "blackout_dates": [{"date": "2026-12-25", "reason": "Christmas Day"}],
}


def at(day: int, hour: int, minute: int = 0, month: int = 12) -> float:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=dt.UTC).timestamp()


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path / "relay.sqlite")
    yield w
    w.store.close()


@pytest.fixture
async def api(aiohttp_client, world, tmp_path):
    config = Config(
        data_dir=tmp_path,
        secret_key=SECRET,
        bad_token_limit_per_min=0,
        seed_demo=False,
        vision_enabled=False,
    )
    app = build_app(config, store=world.store, clock=lambda: NOW)
    client = await aiohttp_client(app)
    client.world = world
    return client


async def set_hours(api, body=HOURS, who="admin_a"):
    return await api.put("/api/v1/staff/visiting-hours", json=body, headers=await login(api, who))


async def test_admin_sets_hours_officers_read_them(api):
    body = await ok(await set_hours(api))
    assert body["timezone"] == "Europe/London" and len(body["sessions"]) == 5
    assert body["blackout_dates"] == [{"date": "2026-12-25", "reason": "Christmas Day"}]
    assert body["allowed_call_minutes"] == [30, 60]
    officer = await login(api, "officer_a")
    assert await ok(await api.get("/api/v1/staff/visiting-hours", headers=officer)) == body
    await err(await set_hours(api, who="officer_a"), 403, "forbidden")
    other = await ok(
        await api.get("/api/v1/staff/visiting-hours", headers=await login(api, "officer_b"))
    )
    assert len(other["sessions"]) == 7  # HMP Beta's own timetable is untouched


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"timezone": "Mars/Olympus"}, 422, "bad_timezone"),
        (
            {"sessions": [{"weekday": 0, "starts": "11:00", "ends": "09:00"}]},
            422,
            "bad_visiting_hours",
        ),
        (
            {
                "sessions": [
                    {"weekday": 0, "starts": "09:00", "ends": "11:00"},
                    {"weekday": 0, "starts": "10:00", "ends": "12:00"},
                ]
            },
            422,
            "bad_visiting_hours",
        ),
        (
            {"sessions": [{"weekday": 7, "starts": "09:00", "ends": "11:00"}]},
            400,
            "invalid_request",
        ),
        (
            {"sessions": [{"weekday": 0, "starts": "25:00", "ends": "26:00"}]},
            400,
            "invalid_request",
        ),
        ({"notice_hours": -1}, 400, "invalid_request"),
        ({"blackout_dates": [{"date": "2026-02-30"}]}, 400, "invalid_request"),
    ],
)
async def test_bad_hours_are_refused_with_a_reason(api, change, status, code):
    body = await err(await set_hours(api, {**HOURS, **change}), status, code)
    assert body["error"]["message"]


async def test_family_sees_free_slots_in_local_time(api):
    w = api.world
    await ok(await set_hours(api))
    q = {"prisoner_id": w.prisoner_a, "minutes": 30}
    body = await ok(await api.get("/api/v1/family/slots", params=q, headers=bearer(w, "mum")))
    assert body["timezone"] == "Europe/London" and body["minutes"] == 30
    assert body["allowance"] == {"limit": 60, "used": 0, "pending": 0}
    first = body["slots"][0]
    assert first["starts_at"] == at(10, 10) and first["local_start"] == "2026-12-10T10:00+00:00"
    assert first["ends_at"] - first["starts_at"] == 1800 and first["laptop_id"]
    days = {s["local_start"][:10] for s in body["slots"]}
    assert "2026-12-25" not in days and "2026-12-12" not in days  # Christmas; a Saturday
    assert all(
        s["local_start"][11:16] in ("09:00", "09:30", "10:00", "10:30") for s in body["slots"]
    )
    # a request waiting for staff shows as pending, and its slot is gone
    r = await api.post(
        "/api/v1/bookings",
        headers=bearer(w, "mum"),
        json={"prisoner_number": "A1234BC", "starts_at": at(11, 9), "minutes": 60},
    )
    await ok(r, 201)
    body = await ok(await api.get("/api/v1/family/slots", params=q, headers=bearer(w, "mum")))
    assert body["allowance"] == {"limit": 60, "used": 0, "pending": 60}
    assert body["slots"] == []  # December's 60 minutes are spoken for; January is not open yet


async def test_family_slots_only_for_their_own_contacts(api):
    w = api.world
    await ok(await set_hours(api))
    q = {"prisoner_id": w.prisoner_a, "minutes": 30}
    await err(
        await api.get("/api/v1/family/slots", params=q, headers=bearer(w, "stranger")),
        404,
        "prisoner_not_found",
    )
    await err(
        await api.get(
            "/api/v1/family/slots", params={**q, "prisoner_id": 999}, headers=bearer(w, "mum")
        ),
        404,
        "prisoner_not_found",
    )
    await err(await api.get("/api/v1/family/slots", params=q), 401, "unauthenticated")
    await err(
        await api.get(
            "/api/v1/family/slots", params={**q, "minutes": 45}, headers=bearer(w, "mum")
        ),
        422,
        "bad_call_length",
    )
    await err(
        await api.get(
            "/api/v1/family/slots",
            params={"prisoner_id": "x", "minutes": 30},
            headers=bearer(w, "mum"),
        ),
        400,
        "invalid_request",
    )


async def test_staff_slots_for_their_establishment_only(api):
    w = api.world
    await ok(await set_hours(api))
    officer = await login(api, "officer_a")
    q = {"prisoner_id": w.prisoner_a, "minutes": 60}
    body = await ok(await api.get("/api/v1/staff/slots", params=q, headers=officer))
    assert body["slots"][0]["local_start"] == "2026-12-10T10:00+00:00"
    await err(
        await api.get("/api/v1/staff/slots", params=q, headers=await login(api, "officer_b")),
        404,
        "prisoner_not_found",
    )
    await err(await api.get("/api/v1/staff/slots", params=q), 401, "unauthenticated")


@pytest.mark.parametrize(
    ("starts", "minutes", "code", "words"),
    [
        (at(11, 3), 30, "outside_visiting_hours", "Friday 11 December 03:00 (Europe/London)"),
        (at(12, 9), 30, "outside_visiting_hours", "Saturday"),
        (at(25, 9), 30, "blackout_date", "Christmas Day"),
        (at(10, 9), 30, "too_little_notice", "2 hours ahead"),
        (at(28, 9), 30, "beyond_booking_window", "16 days ahead"),
        (at(11, 10, 30), 60, "outside_visiting_hours", "outside visiting hours"),
    ],
)
async def test_a_request_outside_the_rules_gets_a_human_message(api, starts, minutes, code, words):
    w = api.world
    await ok(await set_hours(api))
    r = await api.post(
        "/api/v1/bookings",
        headers=bearer(w, "mum"),
        json={"prisoner_number": "A1234BC", "starts_at": starts, "minutes": minutes},
    )
    body = await err(r, 422, code)
    assert words in body["error"]["message"]


async def test_allowance_refusal_tells_used_pending_and_limit(api):
    w = api.world
    await ok(await set_hours(api))
    mum = bearer(w, "mum")
    one = {"prisoner_number": "A1234BC", "starts_at": at(11, 9), "minutes": 30}
    await ok(await api.post("/api/v1/bookings", headers=mum, json=one), 201)
    await ok(
        await api.post("/api/v1/bookings", headers=mum, json={**one, "starts_at": at(14, 9)}), 201
    )
    body = await err(
        await api.post("/api/v1/bookings", headers=mum, json={**one, "starts_at": at(15, 9)}),
        409,
        "allowance_exceeded",
    )
    assert "0 of 60 minutes are used and 60 are requested" in body["error"]["message"]


async def test_staff_book_on_a_familys_behalf_from_a_free_slot(api):
    w = api.world
    await ok(await set_hours(api))
    officer = await login(api, "officer_a")
    q = {"prisoner_id": w.prisoner_a, "minutes": 30}
    slot = (await ok(await api.get("/api/v1/staff/slots", params=q, headers=officer)))["slots"][2]
    b = await ok(
        await api.post(
            "/api/v1/staff/bookings",
            headers=officer,
            json={
                "prisoner_number": "A1234BC",
                "starts_at": slot["starts_at"],
                "minutes": 30,
                "main_visitor_id": w.vid("mum"),
                "visitor_ids": [w.vid("dad")],
            },
        ),
        201,
    )
    assert b["status"] == "approved" and b["laptop_id"] == slot["laptop_id"]
    after = await ok(await api.get("/api/v1/staff/slots", params=q, headers=officer))
    assert slot["starts_at"] not in {s["starts_at"] for s in after["slots"]}
    assert after["allowance"] == {"limit": 60, "used": 30, "pending": 0}


async def test_directory_and_visitor_search(api):
    w = api.world
    officer = await login(api, "officer_a")
    d = await ok(await api.get("/api/v1/staff/directory", headers=officer))
    assert {
        "id": w.prisoner_a,
        "number": "A1234BC",
        "name": "Alan Prisoner",
        "video_call_eligible": True,
    } in d["prisoners"]
    assert {"id": w.vid("mum"), "name": "Mum"} in d["visitors"]
    assert {"id": w.vid("bfam"), "name": "Bfam"} not in d["visitors"]  # HMP Beta's
    assert {"id": w.officer_a, "username": "officer_a"} in d["staff"]
    found = await ok(await api.get("/api/v1/staff/visitors", params={"q": "mU"}, headers=officer))
    assert [v["name"] for v in found["visitors"]] == ["Mum"]
    contacts = found["visitors"][0]["contacts"]
    assert {c["prisoner_name"] for c in contacts} == {"Alan Prisoner", "Andy Prisoner"}
    assert all(c["status"] == "approved" and c["contact_id"] for c in contacts)
    none = await ok(await api.get("/api/v1/staff/visitors", params={"q": "%"}, headers=officer))
    assert none["visitors"] == []
    b = await login(api, "officer_b")
    assert (await ok(await api.get("/api/v1/staff/visitors", params={"q": "mum"}, headers=b)))[
        "visitors"
    ] == []
    await err(await api.get("/api/v1/staff/visitors", headers=officer), 400, "invalid_request")
    await err(await api.get("/api/v1/staff/directory"), 401, "unauthenticated")


async def test_admin_adds_prisoners_and_sets_eligibility(api):
    admin = await login(api, "admin_a")
    p = await ok(
        await api.post(
            "/api/v1/staff/prisoners", headers=admin, json={"number": "a7777aa", "name": "Ann New"}
        ),
        201,
    )
    assert p["number"] == "A7777AA" and p["video_call_eligible"] is True
    await err(
        await api.post(
            "/api/v1/staff/prisoners", headers=admin, json={"number": "A7777AA", "name": "Again"}
        ),
        409,
        "prisoner_number_taken",
    )
    await err(
        await api.post(
            "/api/v1/staff/prisoners", headers=admin, json={"number": "  ", "name": "Blank"}
        ),
        400,
        "invalid_request",
    )
    off = await ok(
        await api.post(
            f"/api/v1/staff/prisoners/{p['id']}/eligibility",
            headers=admin,
            json={"video_call_eligible": False},
        )
    )
    assert off["video_call_eligible"] is False
    officer = await login(api, "officer_a")
    await err(
        await api.post(
            "/api/v1/staff/prisoners", headers=officer, json={"number": "A8888AA", "name": "Nope"}
        ),
        403,
        "forbidden",
    )
    await err(
        await api.post(
            f"/api/v1/staff/prisoners/{api.world.prisoner_b}/eligibility",
            headers=admin,
            json={"video_call_eligible": False},
        ),
        404,
        "prisoner_not_found",
    )
