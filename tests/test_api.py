"""The booking API over real HTTP (aiohttp test server) on a real SQLite file."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from protocol import tokens
from relay import keys
from relay.app import build_app
from relay.config import Config
from relay.records.store import AdmissionRefused
from tests.kiosk import device_key, give_pin, kiosk, sign_in
from tests.test_store_world import DAY, NOW, PASSWORD, make_world

SECRET = "test-secret-0123456789abcdef0123456789abcdef"


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path / "relay.sqlite")
    yield w
    w.store.close()


@pytest.fixture
def clock():
    return {"now": NOW}


@pytest.fixture
async def api(aiohttp_client, world, clock, tmp_path):
    config = Config(
        data_dir=tmp_path, secret_key=SECRET, bad_token_limit_per_min=8,
        public_url="https://relay.example", seed_demo=False, vision_enabled=False,
    )
    app = build_app(config, store=world.store, clock=lambda: clock["now"])
    client = await aiohttp_client(app)
    client.world = world
    client.app_ = app
    return client


def bearer(world, name):
    return {"Authorization": f"Bearer {world.key(name)}"}


async def login(client, username):
    r = await client.post("/api/v1/staff/login", json={"username": username, "password": PASSWORD})
    assert r.status == 200, await r.text()
    cookie = r.cookies["relay_staff"]
    client.session.cookie_jar.clear()
    return {"Cookie": f"relay_staff={cookie.value}"}


async def ok(resp, status=200):
    body = await resp.json()
    assert resp.status == status, body
    return body


async def err(resp, status, code):
    body = await resp.json()
    assert resp.status == status, body
    assert body["error"]["code"] == code, body
    assert set(body["error"]) == {"code", "message"}
    return body


def consent(w, *adults, to="mum"):
    """The adults agree to come on ``to``'s calls (a family request names only those)."""
    for name in adults:
        w.store.consent_to_join(w.vid(name), w.vid(to), NOW)


async def family_request(client, who="mum", starts=NOW + DAY, minutes=30, **extra):
    w = client.world
    body = {"prisoner_number": "A1234BC", "starts_at": starts, "minutes": minutes, **extra}
    return await client.post("/api/v1/bookings", json=body, headers=bearer(w, who))


async def test_family_flow_end_to_end(api):
    w = api.world
    officer = await login(api, "officer_a")
    consent(w, "dad")
    b = await ok(await family_request(api, visitor_ids=[w.vid("dad")]), 201)
    assert b["status"] == "requested" and b["requested_by"] == "family"
    assert b["visitor_ids"] == sorted([w.vid("mum"), w.vid("dad")])
    # not approved yet: no join link
    await err(await api.post(f"/api/v1/bookings/{b['id']}/join-token", headers=bearer(w, "mum")),
              409, "booking_not_approved")
    b = await ok(await api.post(f"/api/v1/staff/bookings/{b['id']}/approve", headers=officer))
    assert b["status"] == "approved" and b["laptop_id"] == w.laptops_a[0][0]
    # family join link, dad's own token too
    j = await ok(await api.post(f"/api/v1/bookings/{b['id']}/join-token", headers=bearer(w, "mum")))
    assert j["join_url"].startswith("https://relay.example/join?token=v1.")
    assert j["nbf"] == b["starts_at"] - 600 and j["exp"] == b["ends_at"]
    await ok(await api.post(f"/api/v1/bookings/{b['id']}/join-token", headers=bearer(w, "dad")))
    # the visitor's own list
    mine = await ok(await api.get("/api/v1/bookings", headers=bearer(w, "dad")))
    assert [x["id"] for x in mine["bookings"]] == [b["id"]]
    # the prison laptop exchanges its credentials for the prison token
    lid, lsecret = w.laptops_a[0]
    p = await ok(await api.post("/api/v1/laptop/token", json={
        "laptop_id": lid, "laptop_secret": lsecret, "booking_id": b["id"]}))
    assert p["role"] == "prison" and p["participant"] == f"laptop:{lid}"
    # staff watcher token
    wt = await ok(await api.post(f"/api/v1/staff/bookings/{b['id']}/watch-token", headers=officer))
    assert wt["role"] == "watcher"
    # the signalling server admits all three when the slot starts
    gate = api.app_[keys.JOIN_GATE]
    faces = [gate.admit(t["token"], "127.0.0.1", b["starts_at"]).approved_faces for t in (j, p, wt)]
    assert faces == [2, 1, 0]

    # allowance: 30 used, a 60-minute call does not fit, a 30-minute one does
    await err(await family_request(api, starts=NOW + 2 * DAY, minutes=60), 409,
              "allowance_exceeded")
    b3 = await ok(await family_request(api, starts=NOW + 3 * DAY), 201)
    await ok(await api.post(f"/api/v1/staff/bookings/{b3['id']}/approve", headers=officer))
    await err(await family_request(api, starts=NOW + 4 * DAY), 409, "allowance_exceeded")
    # the first call fails for a technical reason: its 30 minutes come back
    w.store.mark_call_outcome(b["id"], "failed", "ice_failed")
    b4 = await ok(await family_request(api, starts=NOW + 4 * DAY), 201)
    await ok(await api.post(f"/api/v1/staff/bookings/{b4['id']}/approve", headers=officer))
    # cancel frees allowance; a cancelled booking's token stops working at once
    j3 = await ok(await api.post(f"/api/v1/bookings/{b3['id']}/join-token",
                                 headers=bearer(w, "mum")))
    c = await ok(await api.post(f"/api/v1/bookings/{b3['id']}/cancel", headers=bearer(w, "mum")))
    assert c["status"] == "cancelled"
    with pytest.raises(AdmissionRefused) as e:
        gate.admit(j3["token"], "127.0.0.1", NOW + 3 * DAY)
    assert e.value.code == "booking_cancelled"


async def test_family_rules_over_http(api):
    w = api.world
    five = [w.vid(n) for n in ("dad", "sis", "bro", "aunt")]
    consent(w, "dad", "sis", "bro", "aunt", "stranger")
    await err(await family_request(api, visitor_ids=five), 422, "too_many_visitors")
    await err(await family_request(api, visitor_ids=[w.vid("stranger")]), 422,
              "visitor_not_approved")
    await err(await family_request(api, who="kid"), 422, "main_visitor_under_age")
    await err(await family_request(api, minutes=45), 422, "bad_call_length")
    await err(await family_request(api, starts=NOW - 10), 422, "slot_in_past")
    # a stranger cannot even learn that the prisoner exists
    await err(await family_request(api, who="stranger"), 404, "prisoner_not_found")
    await err(await family_request(api, who="bfam"), 404, "prisoner_not_found")
    # only the main visitor changes a booking; other party members may look
    b = await ok(await family_request(api, visitor_ids=[w.vid("dad")]), 201)
    await err(await api.post(f"/api/v1/bookings/{b['id']}/cancel", headers=bearer(w, "dad")),
              403, "forbidden")
    await ok(await api.get(f"/api/v1/bookings/{b['id']}", headers=bearer(w, "dad")))
    await err(await api.get(f"/api/v1/bookings/{b['id']}", headers=bearer(w, "sis")),
              404, "booking_not_found")
    # reschedule goes back to requested and re-checks the rules
    await err(await api.post(f"/api/v1/bookings/{b['id']}/reschedule",
                             json={"starts_at": NOW - 5, "minutes": 30}, headers=bearer(w, "mum")),
              422, "slot_in_past")
    r = await ok(await api.post(f"/api/v1/bookings/{b['id']}/reschedule",
                                json={"starts_at": NOW + 2 * DAY, "minutes": 60},
                                headers=bearer(w, "mum")))
    assert r["status"] == "requested" and r["minutes"] == 60


async def test_prisoner_kiosk_rules_and_capacity(api, world):
    """The kiosk API (number + PIN on an enrolled laptop) is the one way a prisoner asks for
    a call: the booking rules, capacity, establishments and cancelling, over HTTP."""
    w = world
    officer = await login(api, "officer_a")
    lid, lsecret = w.laptops_a[1]
    key = device_key(w.store, lid, w.admin_a, NOW)
    p3 = w.store.add_prisoner(w.est_a, "A9999ZZ", "Third")
    w.store.approve_contact(p3, w.vid("dad"), w.admin_a, NOW)
    for pid in (w.prisoner_a, w.prisoner_a2, p3):
        give_pin(w.store, pid, w.admin_a, NOW)
    give_pin(w.store, w.prisoner_b, w.officer_b, NOW)
    alan = await kiosk(api, key, "A1234BC")
    t = NOW + DAY
    body = {**alan, "visitor_id": w.vid("mum"), "starts_at": t, "minutes": 30}
    b = await ok(await api.post("/api/v1/kiosk/requests", json=body), 201)
    assert (b["requested_by"], b["call_type"], b["status"]) == ("prisoner", "social", "requested")
    assert b["main_visitor_id"] == w.vid("mum") and b["visitor_ids"] == [w.vid("mum")]
    await ok(await api.post(f"/api/v1/staff/bookings/{b['id']}/approve", headers=officer))
    # one approved contact a request: no party list, no call type (legal calls are staff's)
    many = {**body, "starts_at": t + DAY,
            "visitor_ids": [w.vid(n) for n in ("dad", "sis", "bro", "aunt")]}
    await err(await api.post("/api/v1/kiosk/requests", json=many), 400, "invalid_request")
    await err(await api.post("/api/v1/kiosk/requests", json={**body, "call_type": "legal"}),
              400, "invalid_request")
    # only the prisoner's own approved contacts (a stranger, another establishment's family)
    for who in ("stranger", "bfam"):
        await err(await api.post("/api/v1/kiosk/requests", json={**body, "visitor_id": w.vid(who)}),
                  404, "contact_not_found")
    assert len(w.store.visitor_bookings(w.vid("mum"))) == 1
    # capacity: two laptops; a second prisoner takes the other one, a third is refused
    andy = await kiosk(api, key, "A5678DE")
    b2 = await ok(await api.post("/api/v1/kiosk/requests",
                                 json={**body, **andy, "starts_at": t + 600}), 201)
    await ok(await api.post(f"/api/v1/staff/bookings/{b2['id']}/approve", headers=officer))
    third = await kiosk(api, key, "A9999ZZ")
    await err(await api.post("/api/v1/kiosk/requests", json={
        **body, **third, "visitor_id": w.vid("dad"), "starts_at": t + 1200}), 409, "slot_full")
    # unknown here: another establishment's prisoner and a made-up number sign in alike (401)
    for number in ("B1234BC", "Z0000ZZ"):
        await err(await sign_in(api, key, number), 401, "bad_credentials")
    # a session is bound to the laptop it was made on
    other_key = device_key(w.store, w.laptops_a[0][0], w.admin_a, NOW)
    await err(await api.post("/api/v1/kiosk/home", json={**alan, "device_key": other_key}),
              401, "kiosk_signed_out")
    # the laptop gets the prison token only for bookings assigned to it
    b_full = w.store.booking(b["id"])
    other_lid, other_secret = w.laptops_a[0] if b_full.laptop_id == lid else w.laptops_a[1]
    await err(await api.post("/api/v1/laptop/token", json={
        "laptop_id": other_lid, "laptop_secret": other_secret, "booking_id": b["id"]}),
        403, "wrong_booking")
    await ok(await api.post("/api/v1/laptop/token", json={
        "laptop_id": b_full.laptop_id,
        "laptop_secret": dict(w.laptops_a)[b_full.laptop_id], "booking_id": b["id"]}))
    # the prisoner cancels their own pending request; approved calls and others' are not theirs
    pending = await ok(await api.post("/api/v1/kiosk/requests",
                                      json={**body, "starts_at": t + 2 * DAY}), 201)
    await err(await api.post(f"/api/v1/kiosk/requests/{b['id']}/cancel", json=alan),
              404, "booking_not_found")
    await err(await api.post(f"/api/v1/kiosk/requests/{pending['id']}/cancel", json=andy),
              404, "booking_not_found")
    c = await ok(await api.post(f"/api/v1/kiosk/requests/{pending['id']}/cancel", json=alan))
    assert c["status"] == "cancelled"
    assert w.store.booking(b["id"]).status == "approved"
    home = await ok(await api.post("/api/v1/kiosk/home", json=alan))
    assert home["requests"] == []


async def test_staff_cannot_touch_another_establishment(api, world):
    w = world
    a_booking = await ok(await family_request(api), 201)
    bid = a_booking["id"]
    officer_b = await login(api, "officer_b")
    me = await ok(await api.get("/api/v1/staff/me", headers=officer_b))
    assert me["establishment_id"] == w.est_b
    for method, path, body in [
        ("GET", f"/api/v1/bookings/{bid}", None),
        ("POST", f"/api/v1/bookings/{bid}/cancel", None),
        ("POST", f"/api/v1/bookings/{bid}/reschedule", {"starts_at": NOW + 9 * DAY, "minutes": 30}),
        ("POST", f"/api/v1/staff/bookings/{bid}/approve", None),
        ("POST", f"/api/v1/staff/bookings/{bid}/decline", None),
        ("POST", f"/api/v1/staff/bookings/{bid}/outcome", {"outcome": "failed"}),
        ("POST", f"/api/v1/staff/bookings/{bid}/watch-token", None),
    ]:
        r = await api.request(method, path, json=body, headers=officer_b)
        await err(r, 404, "booking_not_found")
    listing = await ok(await api.get("/api/v1/staff/bookings", headers=officer_b))
    assert listing["bookings"] == []
    contacts = await ok(await api.get("/api/v1/staff/contacts", headers=officer_b))
    assert {c["prisoner_id"] for c in contacts["contacts"]} == {w.prisoner_b}
    a_contact = w.store.contacts(w.est_a)[0]
    await err(await api.post(f"/api/v1/staff/contacts/{a_contact.id}/revoke", headers=officer_b),
              404, "contact_not_found")
    await err(await api.post("/api/v1/staff/contacts", headers=officer_b,
                             json={"prisoner_id": w.prisoner_a, "visitor_id": w.vid("bfam")}),
              403, "forbidden")  # an officer is not an admin, whatever the prisoner
    assert w.store.booking(bid).status == "requested"
    # officer A sees it
    officer_a = await login(api, "officer_a")
    listing = await ok(await api.get("/api/v1/staff/bookings?status=requested", headers=officer_a))
    assert [x["id"] for x in listing["bookings"]] == [bid]
    admin_a = await login(api, "admin_a")
    await err(await api.post("/api/v1/staff/contacts", headers=admin_a,
                             json={"prisoner_id": w.prisoner_b, "visitor_id": w.vid("mum")}),
              404, "prisoner_not_found")


async def test_revoke_cancels_and_invalidates_tokens(api, world, caplog):
    w = world
    admin = await login(api, "admin_a")
    consent(w, "dad")
    b = await ok(await family_request(api, visitor_ids=[w.vid("dad")]), 201)
    await ok(await api.post(f"/api/v1/staff/bookings/{b['id']}/approve", headers=admin))
    jd = await ok(await api.post(f"/api/v1/bookings/{b['id']}/join-token", headers=bearer(w, "dad")))
    jm = await ok(await api.post(f"/api/v1/bookings/{b['id']}/join-token", headers=bearer(w, "mum")))
    # the main visitor's approval: the booking cannot go on without her
    contact = next(c for c in w.store.contacts(w.est_a, w.prisoner_a) if c.visitor_id == w.vid("mum"))
    r = await ok(await api.post(f"/api/v1/staff/contacts/{contact.id}/revoke", headers=admin))
    assert r["cancelled_booking_ids"] == [b["id"]] and r["contact"]["status"] == "revoked"
    gate = api.app_[keys.JOIN_GATE]
    caplog.set_level(logging.INFO)
    t = b["starts_at"]
    for token, code in [
        (jm["token"], "approval_revoked"),
        (jd["token"], "booking_cancelled"),
        (jm["token"][:-4] + "AAAA", "token_bad_signature"),
        (tokens.issue(b"forger", tokens.verify(SECRET.encode(), jm["token"], t)), "token_bad_signature"),
        ("garbage", "token_malformed"),
    ]:
        with pytest.raises(AdmissionRefused) as e:
            gate.admit(token, "10.0.0.9", t)
        assert e.value.code == code
        assert f"code={code}" in caplog.text
        assert token not in caplog.text
    assert jd["token"] not in caplog.text and jm["token"] not in caplog.text
    # the revoked visitor's join link cannot be re-issued either
    await err(await api.post(f"/api/v1/bookings/{b['id']}/join-token", headers=bearer(w, "mum")),
              403, "approval_revoked")
    # re-approving does not resurrect the cancelled booking
    c = await ok(await api.post("/api/v1/staff/contacts", headers=admin,
                                json={"prisoner_id": w.prisoner_a, "visitor_id": w.vid("mum")}), 201)
    assert c["status"] == "approved"
    with pytest.raises(AdmissionRefused):
        gate.admit(jm["token"], "10.0.0.9", t)


async def test_token_windows_over_http(api, world, clock):
    w = world
    officer = await login(api, "officer_a")
    b = await ok(await family_request(api), 201)
    await ok(await api.post(f"/api/v1/staff/bookings/{b['id']}/approve", headers=officer))
    j = await ok(await api.post(f"/api/v1/bookings/{b['id']}/join-token", headers=bearer(w, "mum")))
    gate = api.app_[keys.JOIN_GATE]
    for now, code in [(b["starts_at"] - 601, "token_not_yet_valid"), (b["ends_at"], "token_expired")]:
        with pytest.raises(AdmissionRefused) as e:
            gate.admit(j["token"], "127.0.0.2", now)
        assert e.value.code == code
    assert gate.admit(j["token"], "127.0.0.2", b["starts_at"] - 599).booking_id == b["id"]
    # a token for another booking is refused by the store even with a good signature
    other = await ok(await family_request(api, who="mum", starts=NOW + 5 * DAY), 201)
    w.store.approve_booking(other["id"], w.officer_a, NOW)
    claims = tokens.verify(SECRET.encode(), j["token"], b["starts_at"])
    forged = tokens.JoinClaims(other["id"], f"visitor:{w.vid('dad')}", "family",
                               claims.nbf, claims.exp)
    with pytest.raises(AdmissionRefused) as e:
        gate.admit(tokens.issue(SECRET.encode(), forged), "127.0.0.2", b["starts_at"])
    assert e.value.code == "wrong_booking"
    # after the slot, no new link
    clock["now"] = b["ends_at"] + 1
    await err(await api.post(f"/api/v1/bookings/{b['id']}/join-token", headers=bearer(w, "mum")),
              409, "token_expired")


async def test_staff_session_cookie(api):
    r = await api.post("/api/v1/staff/login", json={"username": "officer_a", "password": PASSWORD})
    assert r.status == 200
    raw = r.headers["Set-Cookie"]
    assert "HttpOnly" in raw and "SameSite=Strict" in raw and "Secure" not in raw
    assert "Max-Age" not in raw and "expires" not in raw.lower()
    cookie = {"Cookie": f"relay_staff={r.cookies['relay_staff'].value}"}
    api.session.cookie_jar.clear()
    await ok(await api.get("/api/v1/staff/me", headers=cookie))
    await ok(await api.post("/api/v1/staff/logout", headers=cookie))
    await err(await api.get("/api/v1/staff/me", headers=cookie), 401, "unauthenticated")
    await err(await api.post("/api/v1/staff/login", json={"username": "officer_a", "password": "x"}),
              401, "bad_credentials")
    await err(await api.post("/api/v1/staff/login", json={"username": "nobody", "password": "x"}),
              401, "bad_credentials")


async def test_secure_cookie_with_tls(aiohttp_client, world, tmp_path):
    config = Config(data_dir=tmp_path, tls_cert="cert.pem", tls_key="key.pem", seed_demo=False,
                    vision_enabled=False)
    app = build_app(config, store=world.store)
    client = await aiohttp_client(app)
    r = await client.post("/api/v1/staff/login", json={"username": "officer_a", "password": PASSWORD})
    assert r.status == 200 and "Secure" in r.headers["Set-Cookie"]
    assert (tmp_path / "secret.key").exists()


async def test_bad_credentials_rate_limited(api, world, caplog):
    caplog.set_level(logging.WARNING)
    bad = {"Authorization": f"Bearer {world.vid('mum')}.not-the-secret"}
    for _ in range(8):
        await err(await api.get("/api/v1/bookings", headers=bad), 401, "bad_credentials")
    r = await api.get("/api/v1/bookings", headers=bearer(world, "mum"))
    await err(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) >= 1
    await err(await api.post("/api/v1/laptop/token", json={
        "laptop_id": 1, "laptop_secret": "x", "booking_id": 1}), 429, "rate_limited")
    assert "not-the-secret" not in caplog.text
    assert "code=bad_credentials" in caplog.text


async def test_unauthenticated_and_malformed(api):
    await err(await api.get("/api/v1/bookings"), 401, "unauthenticated")
    await err(await api.get("/api/v1/staff/bookings"), 401, "unauthenticated")
    await err(await api.get("/api/v1/nope"), 404, "not_found")
    await err(await api.delete("/api/v1/bookings"), 405, "method_not_allowed")
    await err(await api.get("/api/v1/bookings/abc", headers=bearer(api.world, "mum")), 404, "not_found")
    await err(await api.get(f"/api/v1/bookings/{2**70}", headers=bearer(api.world, "mum")),
              404, "not_found")
    await err(await api.post("/api/v1/staff/login", data=b"{not json",
                             headers={"Content-Type": "application/json"}), 400, "bad_json")
    await err(await api.post("/api/v1/staff/login", data=b"NaN",
                             headers={"Content-Type": "application/json"}), 400, "bad_json")
    await err(await api.post("/api/v1/staff/login", data=b"a=b",
                             headers={"Content-Type": "application/x-www-form-urlencoded"}),
              415, "unsupported_media_type")
    await err(await api.post("/api/v1/staff/login", json={"username": "x"}), 400, "invalid_request")
    await err(await api.post("/api/v1/staff/login", json=[1]), 400, "invalid_request")
    await err(await api.post("/api/v1/staff/login", data=b"x" * 70000,
                             headers={"Content-Type": "application/json"}), 413, "body_too_large")
    await err(await api.get("/api/v1/staff/bookings?limit=abc"), 400, "invalid_request")


async def test_openapi_document_covers_every_route(api):
    doc = await ok(await api.get("/api/v1/openapi.json"))
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}

    def routes_of(app) -> set[tuple[str, str]]:
        found = set()
        for resource in app.router.resources():
            info = resource.get_info()
            path = info.get("formatter") or info.get("path")
            for route in resource:
                if route.method != "HEAD" and path and path.startswith("/api/"):
                    found.add((route.method, path))
        return found

    # the booking API's sub-app, and the recordings and identity APIs the product mounts
    # beside it

    from relay.records import recordings
    from relay.web import identity_api

    beside = web.Application()
    recordings.add_routes(beside)
    identity_api.add_routes(beside)
    assert routes_of(api.app_._subapps[0]) | routes_of(beside) == documented
    for ops in doc["paths"].values():
        for op in ops.values():
            assert "4XX" in op["responses"]


async def test_staff_register_visitor_and_outcome(api, world):
    admin = await login(api, "admin_a")
    r = await ok(await api.post("/api/v1/staff/visitors", headers=admin, json={
        "name": "New Friend", "date_of_birth": "1990-01-31", "identity_verified": True}), 201)
    key = r["access_key"]
    assert key.startswith(f"{r['visitor_id']}.")
    await err(await api.get("/api/v1/bookings", headers={"Authorization": f"Bearer {key}"}) and
              await api.post("/api/v1/staff/visitors", headers=admin, json={
                  "name": "x", "date_of_birth": "1990-02-30", "identity_verified": True}),
              400, "invalid_request")
    officer = await login(api, "officer_a")
    await err(await api.post("/api/v1/staff/visitors", headers=officer, json={
        "name": "x", "date_of_birth": "1990-01-01", "identity_verified": True}), 403, "forbidden")
    b = await ok(await family_request(api), 201)
    await ok(await api.post(f"/api/v1/staff/bookings/{b['id']}/approve", headers=officer))
    done = await ok(await api.post(f"/api/v1/staff/bookings/{b['id']}/outcome", headers=officer,
                                   json={"outcome": "failed", "reason": "family's video froze"}))
    assert done["status"] == "failed"
    ps = await ok(await api.get("/api/v1/staff/prisoners", headers=officer))
    assert {p["number"] for p in ps["prisoners"]} == {"A1234BC", "A5678DE"}


async def test_huge_numbers_are_4xx(api):
    digits = "9" * 5000
    await err(await api.get(f"/api/v1/bookings/{digits}", headers=bearer(api.world, "mum")),
              404, "not_found")
    await err(await api.get("/api/v1/bookings", headers={"Authorization": f"Bearer {digits}.x"}),
              401, "bad_credentials")
    await err(await api.post("/api/v1/laptop/token", data=f'{{"laptop_id": {digits}}}',
                             headers={"Content-Type": "application/json"}), 400, "bad_json")
