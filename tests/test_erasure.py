"""Erasure end to end: a real relay, real SQLite and PostgreSQL, real face models, real
aiortc clients on loopback (relay/records/erasure.py, docs/erasure.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from skimage import data

from bench.identity_set import jpeg
from bench.product import start_product
from relay import auth, keys
from relay.records import audit
from tests.test_api import err, ok
from tests.test_family_accounts import (
    approved_family,
    family,  # noqa: F401 (a fixture)
    register,
    sign_in,
)
from tests.test_family_accounts import jpeg as plain_jpeg

API = "/api/v1"
PW = "a long family password"
DAY = 86400.0
ASTRONAUT = jpeg(np.ascontiguousarray(data.astronaut()[:, :, ::-1]))


async def _product(request, tmp_path, **settings):
    if request.param == "postgres":
        settings["database_url"] = request.getfixturevalue("pg_url")
    return await start_product(tmp_path, **settings)


@pytest.fixture(params=["sqlite", "postgres"])
async def with_faces(request, tmp_path):
    """Both engines, with the face models (enrolment needs the detector)."""
    p = await _product(request, tmp_path, vision_enabled=True, identity_photo_max_bytes=400_000)
    yield p
    await p.server.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def product(request, tmp_path):
    p = await _product(request, tmp_path, reconnect_grace_s=3.0)
    yield p
    await p.server.close()


def account_for(p, who: str) -> str:
    email = f"{who}@example.org"
    p.world.store.add_verified_account(email, auth.hash_password(PW), p.world.vid(who), time.time())
    return email


async def family_session(p, email: str, password: str = PW) -> tuple[aiohttp.ClientSession, int]:
    s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with s.post(
        f"{p.url}{API}/family/login", json={"email": email, "password": password}
    ) as r:
        status = r.status
    if status != 200:
        await s.close()
    return s, status


def future_booking(p, main: str, others=(), prisoner=None, days=3.0) -> int:
    w, now = p.world, time.time()
    return w.store.add_booking_unchecked(
        prisoner_id=prisoner or w.prisoner_a,
        call_type="social",
        starts_at=now + days * DAY,
        ends_at=now + days * DAY + 1800,
        main_visitor_id=w.vid(main),
        visitor_ids=[w.vid(o) for o in others],
        laptop_id=w.laptops_a[0][0],
        status="approved",
        now=now,
    )


def audit_rows(p, kind: str) -> list[tuple[str, dict, int | None]]:
    rows = p.world.store.connection.execute(
        "SELECT actor, detail, establishment_id FROM audit WHERE kind = ? ORDER BY id", (kind,)
    ).fetchall()
    return [(r[0], json.loads(r[1]), r[2]) for r in rows]


async def post(session: aiohttp.ClientSession, url: str, body=None) -> tuple[int, dict]:
    async with session.post(url, json=body) as r:
        return r.status, await r.json()


async def test_a_family_member_deletes_their_account_and_everything_it_owns(with_faces):
    p, w = with_faces, with_faces.world
    store, mum = w.store, w.vid("mum")
    email = account_for(p, "mum")
    admin = await p.staff_session("admin_a")
    fam, status = await family_session(p, email)
    assert status == 200
    try:
        # an enrolled face, a vetting application with its two sealed photos
        async with admin.put(
            f"{p.url}/api/identity/visitors/{mum}/face",
            data=ASTRONAUT,
            headers={"Content-Type": "image/jpeg"},
        ) as r:
            assert r.status == 201, await r.text()
        enrolments = p.app[keys.FACE_ENROLMENTS]
        assert len(list(enrolments.faces_dir.iterdir())) == 1
        status, application = await post(
            fam,
            f"{p.url}{API}/family/applications",
            {
                "prisoner_number": "A1234BC",
                "prisoner_name": "Alan Prisoner",
                "relationship": "mother",
                "date_of_birth": "1970-05-01",
                "address": "1 High Street, Wrexham",
                "member_ids": [],
            },
        )
        assert status == 201, application
        for kind in ("identity", "face"):
            async with fam.put(
                f"{p.url}{API}/family/applications/{application['id']}/photo?kind={kind}",
                data=plain_jpeg(),
                headers={"Content-Type": "image/jpeg"},
            ) as r:
                assert r.status == 200, await r.text()
        photo_files = [Path(store.photo(application["id"], k)[0]) for k in ("identity", "face")]
        assert all(f.exists() for f in photo_files)
        # a coming booking as main visitor, one as an extra visitor, one not theirs
        own = future_booking(p, "mum")
        extra = future_booking(p, "dad", others=["mum"], days=4)
        other = future_booking(p, "sis", days=5)
        store.consent_to_join(mum, w.vid("dad"), time.time())

        # a wrong password, or no explicit confirmation, deletes nothing
        status, body = await post(
            fam,
            f"{p.url}{API}/family/delete-account",
            {"password": "not my password", "confirm": True},
        )
        assert (status, body["error"]["code"]) == (401, "bad_credentials")
        status, body = await post(fam, f"{p.url}{API}/family/delete-account", {"password": PW})
        assert status == 400, body
        assert store.visitor_erased_at(mum) is None

        status, body = await post(
            fam, f"{p.url}{API}/family/delete-account", {"password": PW, "confirm": True}
        )
        assert status == 200 and body["ok"] is True, body
        assert "signed out" in body["message"]

        # signed out, and cannot sign in again (password or old access key)
        async with fam.get(f"{p.url}{API}/family/me") as r:
            assert r.status == 401
        again, status = await family_session(p, email)
        assert status == 401
        async with (
            aiohttp.ClientSession() as s,
            s.get(
                f"{p.url}{API}/bookings", headers={"Authorization": f"Bearer {w.key('mum')}"}
            ) as r,
        ):
            assert r.status == 401

        # the record is a stub; approvals ended; bookings changed through the lifecycle
        v = store.visitor(mum)
        assert (v.name, v.date_of_birth, v.identity_verified) == (
            f"erased visitor #{mum}",
            "",
            False,
        )
        assert store.approved_contact_ids(visitor_id=mum) == []
        assert store.booking(own).status == "cancelled"
        assert store.booking(extra).status == "approved"  # dad's call goes on without her
        party = store.connection.execute(
            "SELECT visitor_id FROM booking_visitors WHERE booking_id = ?", (extra,)
        ).fetchall()
        assert [r[0] for r in party] == [w.vid("dad")]
        assert "visitor_removed" in [e[2] for e in store.booking_events(extra)]
        assert store.booking(other).status == "approved"
        assert store.companions(w.vid("dad")) == []
        # the face is forgotten: no row, no file
        assert enrolments.get("visitor", mum) is None
        assert list(enrolments.faces_dir.iterdir()) == []
        # the application is withdrawn and cleared; its photos are gone from disk
        a = store.application(application["id"])
        assert (a.status, a.address, a.date_of_birth, a.relationship) == ("declined", "", "", "")
        assert list(a.photos) == []
        assert not any(f.exists() for f in photo_files)
        # no session, token or account email is left
        acc = store.connection.execute(
            "SELECT email, password_hash, closed_at FROM accounts WHERE visitor_id = ?", (mum,)
        ).fetchone()
        assert acc[0].startswith("erased-") and acc[1] == "" and acc[2] is not None
        sessions = store.connection.execute("SELECT COUNT(*) FROM account_sessions").fetchone()
        assert sessions[0] == 0

        # one audit record with ids and a reason only; the chain still verifies
        [(actor, detail, est)] = audit_rows(p, "visitor_erased")
        assert actor == f"visitor:{mum}" and est == w.est_a
        assert detail["reason"] == "person_asked" and detail["face_forgotten"] is True
        assert own in detail["bookings_stopped"] and detail["bookings_reduced"] == [extra]
        assert "Mum" not in json.dumps(detail) and "Wrexham" not in json.dumps(detail)
        forgotten = [d["reason"] for _, d, _ in audit_rows(p, "face_enrolment_deleted")]
        assert forgotten == ["record_erased"]
        assert audit.verify(store.connection).ok

        # the stub is never approved again
        status, body = await post(
            admin,
            f"{p.url}{API}/staff/contacts",
            {"prisoner_id": w.prisoner_a, "visitor_id": mum},
        )
        assert (status, body["error"]["code"]) == (422, "record_erased"), body
        # staff see a stub, and erasing it again says so
        status, body = await post(
            admin, f"{p.url}{API}/staff/visitors/{mum}/erase", {"reason": "other", "confirm": True}
        )
        assert (status, body["error"]["code"]) == (409, "already_erased")
    finally:
        await admin.close()
        await fam.close()


async def test_staff_erase_a_visitor_in_a_live_call_and_the_call_ends(tmp_path):
    p = await start_product(tmp_path, reconnect_grace_s=3.0)
    try:
        w = p.world
        b = p.booking_now(seconds=600)
        fam, pri = await p.pair(b)
        admin = await p.staff_session("admin_a")
        try:
            await fam.wait_state("live")
            await pri.wait_frames("video0", 10)
            started = time.monotonic()
            status, body = await post(
                admin,
                f"{p.url}{API}/staff/visitors/{w.vid('mum')}/erase",
                {"reason": "vetting_refused", "confirm": True},
            )
            assert status == 200, body
            assert body["visitor_ids"] == [w.vid("mum")] and b in body["bookings_stopped"]
            ended = await pri.wait_state("ended", timeout=5.0)
            assert ended["reason"] == "approval_revoked"
            assert ended["message"] == "a visitor's approval for this call was withdrawn"
            assert (await fam.wait_state("ended", timeout=5.0))["reason"] == "approval_revoked"
            assert time.monotonic() - started < 5.0
            booking = w.store.booking(b)
            assert (booking.status, booking.reason) == ("completed", "approval_revoked")
            [(actor, detail, est)] = audit_rows(p, "visitor_erased")
            assert actor == f"staff:{w.admin_a}" and est == w.est_a
            assert detail["reason"] == "vetting_refused"
            assert audit.verify(w.store.connection).ok
        finally:
            await admin.close()
            await fam.close()
            await pri.close()
    finally:
        await p.server.close()


async def test_staff_erase_a_prisoner(product):
    p, w = product, product.world
    store, pid = w.store, w.prisoner_a2
    b = future_booking(p, "mum", prisoner=pid)
    store.set_kiosk_pin(pid, auth.hash_password("2468"), w.admin_a, time.time())
    admin = await p.staff_session("admin_a")
    officer = await p.staff_session("officer_a")
    try:
        status, body = await post(
            officer,
            f"{p.url}{API}/staff/prisoners/{pid}/erase",
            {"reason": "released", "confirm": True},
        )
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, body = await post(
            admin,
            f"{p.url}{API}/staff/prisoners/{pid}/erase",
            {"reason": "holiday", "confirm": True},
        )
        assert status == 400, body
        status, body = await post(
            admin,
            f"{p.url}{API}/staff/prisoners/{pid}/erase",
            {"reason": "released", "confirm": True},
        )
        assert status == 200, body
        assert body["prisoner_id"] == pid and body["bookings_stopped"] == [b]
        assert store.booking(b).status == "cancelled"
        assert store.kiosk_pin(pid) is None
        row = store.prisoner(pid)
        assert (row["name"], row["number"], row["video_call_eligible"]) == (
            f"erased prisoner #{pid}",
            f"ERASED-{pid}",
            0,
        )
        assert store.approved_contact_ids(prisoner_id=pid) == []
        # mum stays a contact of her other prisoner
        assert store.is_approved_contact(w.prisoner_a, w.vid("mum"))
        status, body = await post(
            admin,
            f"{p.url}{API}/staff/prisoners/{pid}/erase",
            {"reason": "released", "confirm": True},
        )
        assert (status, body["error"]["code"]) == (409, "already_erased")
        # a stub cannot be given calls or a kiosk PIN again
        for url, body_in in [
            (f"/staff/prisoners/{pid}/eligibility", {"video_call_eligible": True}),
            (f"/staff/prisoners/{pid}/pin", {"pin": "135790"}),
        ]:
            status, body = await post(admin, f"{p.url}{API}{url}", body_in)
            assert (status, body["error"]["code"]) == (409, "already_erased"), url
        [(actor, detail, est)] = audit_rows(p, "prisoner_erased")
        assert actor == f"staff:{w.admin_a}" and est == w.est_a
        assert detail == {
            "prisoner_id": pid,
            "reason": "released",
            "bookings_stopped": [b],
            "applications_withdrawn": [],
            "face_forgotten": False,
        }
        refused = [d["code"] for _, d, _ in audit_rows(p, "erasure_refused")]
        assert refused == ["forbidden", "already_erased"]
        assert audit.verify(store.connection).ok
    finally:
        await admin.close()
        await officer.close()


async def test_staff_erasure_refuses_what_it_must_not_do(tmp_path):
    p = await start_product(tmp_path)
    w = p.world
    admin = await p.staff_session("admin_a")
    officer = await p.staff_session("officer_a")
    try:
        ok = {"reason": "other", "confirm": True}
        for url, status, code in [
            (f"/staff/visitors/{w.vid('bfam')}/erase", 404, "visitor_not_found"),  # elsewhere
            (f"/staff/visitors/{w.vid('stranger')}/erase", 404, "visitor_not_found"),
            ("/staff/visitors/999999/erase", 404, "visitor_not_found"),
            ("/staff/visitors/0/erase", 404, "not_found"),
            ("/staff/visitors/abc/erase", 404, "not_found"),
            (f"/staff/prisoners/{w.prisoner_b}/erase", 404, "prisoner_not_found"),
            ("/staff/prisoners/999999/erase", 404, "prisoner_not_found"),
        ]:
            got, body = await post(admin, f"{p.url}{API}{url}", ok)
            assert (got, body["error"]["code"]) == (status, code), (url, body)
        got, body = await post(officer, f"{p.url}{API}/staff/visitors/{w.vid('mum')}/erase", ok)
        assert (got, body["error"]["code"]) == (403, "forbidden")
        got, body = await post(
            admin, f"{p.url}{API}/staff/visitors/{w.vid('mum')}/erase", {"reason": "other"}
        )
        assert got == 400, body
        async with aiohttp.ClientSession() as anon:
            got, body = await post(anon, f"{p.url}{API}/staff/visitors/{w.vid('mum')}/erase", ok)
            assert (got, body["error"]["code"]) == (401, "unauthenticated")
            got, body = await post(
                anon, f"{p.url}{API}/family/delete-account", {"password": PW, "confirm": True}
            )
            assert (got, body["error"]["code"]) == (401, "unauthenticated")
        # a visitor also approved at another establishment is not one establishment's to erase
        w.store.approve_contact(w.prisoner_b, w.vid("dad"), w.officer_b, time.time())
        got, body = await post(admin, f"{p.url}{API}/staff/visitors/{w.vid('dad')}/erase", ok)
        assert (got, body["error"]["code"]) == (409, "visitor_linked_elsewhere")
        assert w.store.visitor(w.vid("dad")).name == "Dad"
        assert w.store.visitor_erased_at(w.vid("mum")) is None
        assert audit.verify(w.store.connection).ok
    finally:
        await admin.close()
        await officer.close()
        await p.server.close()


async def test_an_account_holders_household_goes_with_them(tmp_path):
    p = await start_product(tmp_path)
    w = p.world
    store = w.store
    email = account_for(p, "mum")
    acc, _ = store.account_by_email(email)
    child = store.add_household_child(acc.id, "Little One", "2019-02-02", "daughter", time.time())
    store.approve_contact(w.prisoner_a, child, w.admin_a, time.time())
    admin = await p.staff_session("admin_a")
    try:
        got, body = await post(
            admin,
            f"{p.url}{API}/staff/visitors/{w.vid('mum')}/erase",
            {"reason": "no_longer_visiting", "confirm": True},
        )
        assert got == 200, body
        assert body["visitor_ids"] == [w.vid("mum"), child]
        assert store.visitor(child).name == f"erased visitor #{child}"
        assert not store.is_approved_contact(w.prisoner_a, child)
        holders = [d.get("household_of") for _, d, _ in audit_rows(p, "visitor_erased")]
        assert holders == [None, w.vid("mum")]
    finally:
        await admin.close()
        await p.server.close()


async def test_erasing_a_prisoner_in_a_live_call_ends_it_for_both_sides(tmp_path):
    p = await start_product(tmp_path, reconnect_grace_s=3.0)
    try:
        w = p.world
        b = p.booking_now(seconds=600)
        fam, pri = await p.pair(b)
        admin = await p.staff_session("admin_a")
        try:
            await fam.wait_state("live")
            await fam.wait_frames("video0", 10)
            status, body = await post(
                admin,
                f"{p.url}{API}/staff/prisoners/{w.prisoner_a}/erase",
                {"reason": "transferred", "confirm": True},
            )
            assert status == 200 and body["bookings_stopped"] == [b], body
            assert (await fam.wait_state("ended", timeout=5.0))["reason"] == "booking_cancelled"
            assert (await pri.wait_state("ended", timeout=5.0))["reason"] == "booking_cancelled"
            booking = w.store.booking(b)
            assert (booking.status, booking.reason) == ("completed", "booking_cancelled")
            assert audit.verify(w.store.connection).ok
        finally:
            await admin.close()
            await fam.close()
            await pri.close()
    finally:
        await p.server.close()


async def test_a_deleted_accounts_address_may_register_again_as_a_new_person(family):  # noqa: F811
    """What the retired ``/family/close`` was checked for, now on delete-account: the
    sign-in ends with codes (not only statuses), the old password no longer signs in, and
    the address registers again as someone the relay does not know."""
    c = family
    me, _, _ = await approved_family(c)
    old = await ok(await c.get("/api/v1/family/me", headers=me))
    await err(
        await c.post(
            "/api/v1/family/delete-account",
            headers=me,
            json={"password": "wrong one!", "confirm": True},
        ),
        401,
        "bad_credentials",
    )
    done = await ok(
        await c.post(
            "/api/v1/family/delete-account", headers=me, json={"password": PW, "confirm": True}
        )
    )
    assert done["ok"] is True
    await err(await c.get("/api/v1/family/me", headers=me), 401, "unauthenticated")
    await err(
        await c.post("/api/v1/family/login", json={"email": "jo@example.org", "password": PW}),
        401,
        "bad_credentials",
    )
    await register(c)
    _, again = await sign_in(c)
    new = await ok(await c.get("/api/v1/family/me", headers=again))
    assert new["visitor_id"] != old["visitor_id"]
    assert new["email"] == "jo@example.org" and new["name"] == "Jo Family"
    contacts = await ok(await c.get("/api/v1/family/contacts", headers=again))
    assert contacts["contacts"] == []  # a new person: none of the old approvals
