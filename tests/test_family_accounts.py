"""Family accounts, households, vetting and notifications over real HTTP, a real SQLite
file and a real SMTP server on loopback (aiosmtpd): what arrives is read back."""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import stat
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from relay import keys
from relay.app import build_app
from relay.config import Config
from relay.records import photos
from tests.kiosk import device_key, give_pin, kiosk
from tests.mailbox import Mailbox, body_of, link_token
from tests.test_api import SECRET, err, login, ok
from tests.test_store_world import DAY, NOW, make_world

PW = "a long family password"


def jpeg(width=640, height=480, colour=(180, 120, 90), fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
async def family(aiohttp_client, tmp_path):
    """The relay with the test world, mailing through aiosmtpd on 127.0.0.1."""
    w = make_world(tmp_path / "relay.sqlite")
    clock = {"now": NOW}
    async with Mailbox() as box:
        config = Config(
            data_dir=tmp_path,
            secret_key=SECRET,
            public_url="https://relay.example",
            seed_demo=False,
            vision_enabled=False,
            smtp_host="127.0.0.1",
            smtp_port=box.port,
            smtp_tls="none",
            notify_poll_s=0.2,
            bad_token_limit_per_min=50,
        )
        app = build_app(config, store=w.store, clock=lambda: clock["now"])
        client = await aiohttp_client(app)
        client.world, client.box, client.clock, client.app_ = w, box, clock, app
        yield client  # the app closes the store


async def register(c, email="jo@example.org", name="Jo Family", dob="1985-04-04", lang="en"):
    since = len(c.box.messages)
    await ok(
        await c.post(
            "/api/v1/family/register",
            json={
                "email": email,
                "password": PW,
                "name": name,
                "date_of_birth": dob,
                "language": lang,
            },
        ),
        202,
    )
    msg = await c.box.wait(email, "confirm" if lang == "en" else "cadarnhewch", since=since)
    await ok(await c.post("/api/v1/family/verify", json={"token": link_token(msg, "verify")}))
    return msg


async def sign_in(c, email="jo@example.org", password=PW):
    c.session.cookie_jar.clear()
    r = await c.post("/api/v1/family/login", json={"email": email, "password": password})
    body = await ok(r)
    c.session.cookie_jar.clear()  # each test names whose cookie it sends
    return body, {"Cookie": f"relay_family={r.cookies['relay_family'].value}"}


async def approved_family(c, email="jo@example.org", with_child=True):
    """Register, add a child, apply to prisoner A with both photos, staff approve."""
    await register(c, email)
    _, me = await sign_in(c, email)
    kid = None
    if with_child:
        kid = await ok(
            await c.post(
                "/api/v1/family/household",
                headers=me,
                json={"name": "Sam Family", "date_of_birth": "2017-01-01", "relationship": "son"},
            ),
            201,
        )
    app = await ok(
        await c.post(
            "/api/v1/family/applications",
            headers=me,
            json={
                "prisoner_number": "A1234BC",
                "prisoner_name": "alan PRISONER",
                "relationship": "brother",
                "date_of_birth": "1985-04-04",
                "address": "1 High Street, Wrexham",
                "member_ids": [kid["visitor_id"]] if kid else [],
            },
        ),
        201,
    )
    for kind in ("identity", "face"):
        await ok(
            await c.put(
                f"/api/v1/family/applications/{app['id']}/photo?kind={kind}",
                data=jpeg(),
                headers={**me, "Content-Type": "image/jpeg"},
            )
        )
    await ok(await c.post(f"/api/v1/family/applications/{app['id']}/submit", headers=me))
    admin = await login(c, "admin_a")
    await ok(
        await c.post(
            f"/api/v1/staff/vetting/{app['id']}/decide", headers=admin, json={"decision": "approve"}
        )
    )
    await c.box.wait(email, "approved to call")
    return me, kid, app


async def test_register_verify_sign_in_and_out(family, caplog):
    c = family
    await ok(
        await c.post(
            "/api/v1/family/register",
            json={
                "email": " Jo@Example.org ",
                "password": PW,
                "name": "Jo",
                "date_of_birth": "1985-04-04",
            },
        ),
        202,
    )
    msg = await c.box.wait("jo@example.org", "confirm")
    assert msg["From"] and "relay.example/app#verify=" in body_of(msg)
    # not verified yet
    await err(
        await c.post("/api/v1/family/login", json={"email": "jo@example.org", "password": PW}),
        403,
        "email_not_verified",
    )
    token = link_token(msg, "verify")
    await ok(await c.post("/api/v1/family/verify", json={"token": token}))
    await err(await c.post("/api/v1/family/verify", json={"token": token}), 400, "bad_token")
    # the link expires
    await ok(
        await c.post(
            "/api/v1/family/register",
            json={
                "email": "late@example.org",
                "password": PW,
                "name": "Late",
                "date_of_birth": "1985-04-04",
            },
        ),
        202,
    )
    late = link_token(await c.box.wait("late@example.org", "confirm"), "verify")
    c.clock["now"] += c.app_[keys.CONFIG].email_token_ttl_s + 1
    await err(await c.post("/api/v1/family/verify", json={"token": late}), 400, "bad_token")
    # wrong password: a human message, counted like staff logins
    await err(
        await c.post(
            "/api/v1/family/login", json={"email": "jo@example.org", "password": "not it at all"}
        ),
        401,
        "bad_credentials",
    )
    me, cookie = await sign_in(c, "JO@example.org")
    assert me["email"] == "jo@example.org" and me["identity_verified"] is False
    assert (await ok(await c.get("/api/v1/family/me", headers=cookie)))["name"] == "Jo"
    # registering the same address again says the same, and tells the owner instead
    r = await ok(
        await c.post(
            "/api/v1/family/register",
            json={
                "email": "jo@example.org",
                "password": PW,
                "name": "Other",
                "date_of_birth": "1990-01-01",
            },
        ),
        202,
    )
    assert r["message"]
    await c.box.wait("jo@example.org", "tried to register")
    # the session cookie is HttpOnly and SameSite=Strict
    c.session.cookie_jar.clear()
    r = await c.post("/api/v1/family/login", json={"email": "jo@example.org", "password": PW})
    morsel = r.cookies["relay_family"]
    assert morsel["httponly"] and morsel["samesite"] == "Strict"
    # sign out everywhere ends both sessions
    await ok(await c.post("/api/v1/family/logout-everywhere", headers=cookie))
    await err(await c.get("/api/v1/family/me", headers=cookie), 401, "unauthenticated")
    assert "Traceback" not in caplog.text and PW not in caplog.text
    assert "jo@example.org" not in caplog.text  # addresses are personal data


async def test_password_reset_by_email_ends_sessions(family):
    c = family
    await register(c)
    _, old = await sign_in(c)
    await ok(
        await c.post("/api/v1/family/password-reset", json={"email": "nobody@example.org"}), 202
    )
    await ok(await c.post("/api/v1/family/password-reset", json={"email": "jo@example.org"}), 202)
    token = link_token(await c.box.wait("jo@example.org", "reset"), "reset")
    new = "another long password"
    await ok(
        await c.post(
            "/api/v1/family/password-reset/confirm", json={"token": token, "password": new}
        )
    )
    await err(
        await c.post(
            "/api/v1/family/password-reset/confirm", json={"token": token, "password": new}
        ),
        400,
        "bad_token",
    )
    await err(await c.get("/api/v1/family/me", headers=old), 401, "unauthenticated")
    await err(
        await c.post("/api/v1/family/login", json={"email": "jo@example.org", "password": PW}),
        401,
        "bad_credentials",
    )
    await sign_in(c, password=new)
    assert not c.world.store.due_messages(c.clock["now"] + 1, 10)  # all sent
    # a sent message keeps no link (its one-use token) in the database
    rows = c.world.store.connection.execute("SELECT params FROM outbox").fetchall()
    assert all(r[0] == "{}" for r in rows)


async def test_family_booking_names_only_linked_visitors(family):
    """Regression (issue 21): a booking request told the caller other visitors' vetting
    state and age and let them name someone else as the main visitor."""
    c = family
    w = c.world
    me, kid, _ = await approved_family(c)
    body = {"prisoner_number": "A1234BC", "starts_at": NOW + DAY, "minutes": 30}
    # the leaks: an unverified stranger, and someone else as main visitor
    for extra, code in (
        ({"visitor_ids": [w.vid("unverified")]}, "visitor_not_in_household"),
        ({"visitor_ids": [w.vid("kid")]}, "visitor_not_in_household"),
        ({"main_visitor_id": w.vid("kid")}, "main_visitor_must_be_you"),
        ({"main_visitor_id": w.vid("dad")}, "main_visitor_must_be_you"),
    ):
        r = await err(
            await c.post("/api/v1/bookings", json={**body, **extra}, headers=me), 422, code
        )
        text = r["error"]["message"].lower()
        assert "verified" not in text and "age" not in text and "18" not in text
    # the same answer for an approved adult who has not agreed to come
    r = await err(
        await c.post("/api/v1/bookings", json={**body, "visitor_ids": [w.vid("dad")]}, headers=me),
        422,
        "visitor_not_in_household",
    )
    # own child: fine, and the caller is the main visitor
    b = await ok(
        await c.post(
            "/api/v1/bookings", headers=me, json={**body, "visitor_ids": [kid["visitor_id"]]}
        ),
        201,
    )
    mine = await ok(await c.get("/api/v1/family/me", headers=me))
    assert b["main_visitor_id"] == mine["visitor_id"]
    assert sorted(b["visitor_ids"]) == sorted([mine["visitor_id"], kid["visitor_id"]])
    # an adult who agreed (on their own account) may be brought
    await register(c, "gran@example.org", "Gran Family", "1950-02-02")
    _, gran = await sign_in(c, "gran@example.org")
    await ok(
        await c.post("/api/v1/family/consents", headers=gran, json={"email": "jo@example.org"})
    )
    gid = (await ok(await c.get("/api/v1/family/me", headers=gran)))["visitor_id"]
    r = await err(
        await c.post(
            "/api/v1/bookings",
            headers=me,
            json={**body, "starts_at": NOW + 2 * DAY, "visitor_ids": [gid]},
        ),
        422,
        "visitor_not_approved",
    )


async def test_under_age_account_holder_cannot_be_main_visitor(family):
    c = family
    await register(c, "teen@example.org", "Teen", "2012-06-06")
    _, teen = await sign_in(c, "teen@example.org")
    # a teen may not add children, and is told plainly
    await err(
        await c.post(
            "/api/v1/family/household",
            headers=teen,
            json={"name": "Adult", "date_of_birth": "1980-01-01", "relationship": "friend"},
        ),
        422,
        "not_a_child",
    )
    vid = (await ok(await c.get("/api/v1/family/me", headers=teen)))["visitor_id"]
    c.world.store.set_visitor_verified(vid, True)
    c.world.store.approve_contact(c.world.prisoner_a, vid, c.world.admin_a, NOW)
    await err(
        await c.post(
            "/api/v1/bookings",
            headers=teen,
            json={"prisoner_number": "A1234BC", "starts_at": NOW + DAY, "minutes": 30},
        ),
        422,
        "main_visitor_under_age",
    )


async def test_vetting_application_photos_and_decisions(family, tmp_path, caplog):
    c = family
    w = c.world
    await register(c)
    _, me = await sign_in(c)
    # a wrong name answers like an unknown number
    for number, name in (("A1234BC", "Alan Smith"), ("Z9999ZZ", "Alan Prisoner")):
        await err(
            await c.post(
                "/api/v1/family/applications",
                headers=me,
                json={
                    "prisoner_number": number,
                    "prisoner_name": name,
                    "relationship": "friend",
                    "date_of_birth": "1985-04-04",
                    "address": "1 High Street",
                },
            ),
            404,
            "prisoner_not_found",
        )
    app = await ok(
        await c.post(
            "/api/v1/family/applications",
            headers=me,
            json={
                "prisoner_number": "A1234BC",
                "prisoner_name": "Alan Prisoner",
                "relationship": "friend",
                "date_of_birth": "1985-04-04",
                "address": "1 High Street",
            },
        ),
        201,
    )
    url = f"/api/v1/family/applications/{app['id']}"
    await err(await c.post(f"{url}/submit", headers=me), 422, "photos_missing")
    # uploads are checked: type by content, size, and a real decode
    h = {**me, "Content-Type": "image/jpeg"}
    await err(
        await c.put(f"{url}/photo?kind=face", data=b"hello, not a photo", headers=h),
        422,
        "photo_bad_type",
    )
    await err(
        await c.put(f"{url}/photo?kind=face", data=b"\xff\xd8\xff" + b"\x00" * 5000, headers=h),
        422,
        "photo_unreadable",
    )
    big = c.app_[keys.CONFIG].photo_max_bytes + 10
    await err(
        await c.put(f"{url}/photo?kind=face", data=b"\xff\xd8\xff" + b"\x00" * big, headers=h),
        413,
        "photo_too_large",
    )
    await err(
        await c.put(
            f"{url}/photo?kind=face", data=jpeg(), headers={**me, "Content-Type": "text/plain"}
        ),
        415,
        "unsupported_media_type",
    )
    png = jpeg(3000, 2000, fmt="PNG")
    a = await ok(
        await c.put(
            f"{url}/photo?kind=identity", data=png, headers={**me, "Content-Type": "image/png"}
        )
    )
    a = await ok(await c.put(f"{url}/photo?kind=face", data=jpeg(colour=(10, 200, 30)), headers=h))
    assert a["photos"] == ["face", "identity"]
    # sealed at rest: nothing on disk is a JPEG
    files = list((tmp_path / "vetting").iterdir())
    assert len(files) == 2 and stat.S_IMODE(os.stat(tmp_path / "vetting").st_mode) == 0o700
    for f in files:
        raw = f.read_bytes()
        assert b"\xff\xd8\xff" not in raw[:64] and b"JFIF" not in raw
    await ok(await c.post(f"{url}/submit", headers=me))
    await err(
        await c.put(f"{url}/photo?kind=face", data=jpeg(), headers=h), 422, "application_not_draft"
    )
    # staff of another establishment see nothing; a family never gets photos
    other = await login(c, "officer_b")
    assert (await ok(await c.get("/api/v1/staff/vetting", headers=other)))["applications"] == []
    await err(
        await c.get(f"/api/v1/staff/vetting/{app['id']}/photo?kind=face", headers=other),
        404,
        "application_not_found",
    )
    await err(
        await c.get(f"/api/v1/staff/vetting/{app['id']}/photo?kind=face", headers=me),
        401,
        "unauthenticated",
    )
    # this establishment's officer sees the queue, the photos (audited), the existing contacts
    officer = await login(c, "officer_a")
    q = await ok(await c.get("/api/v1/staff/vetting", headers=officer))
    (item,) = q["applications"]
    assert item["address"] == "1 High Street" and item["applicant"]["name"] == "Jo Family"
    assert {p["name"] for p in item["existing_contacts"]} >= {"Mum", "Dad"}
    r = await c.get(f"/api/v1/staff/vetting/{app['id']}/photo?kind=identity", headers=officer)
    assert r.status == 200 and r.content_type == "image/jpeg"
    im = Image.open(io.BytesIO(await r.read()))
    assert im.format == "JPEG" and max(im.size) <= c.app_[keys.CONFIG].photo_max_px
    audit = w.store.connection.execute(
        "SELECT kind, actor FROM audit WHERE kind LIKE 'vetting_%'"
    ).fetchall()
    assert [tuple(x) for x in audit] == [("vetting_photo_viewed", f"staff:{w.officer_a}")]
    # deciding is for admins; a decline needs a reason, which the applicant sees
    await err(
        await c.post(
            f"/api/v1/staff/vetting/{app['id']}/decide",
            headers=officer,
            json={"decision": "decline", "reason": "x"},
        ),
        403,
        "forbidden",
    )
    admin = await login(c, "admin_a")
    await err(
        await c.post(
            f"/api/v1/staff/vetting/{app['id']}/decide", headers=admin, json={"decision": "decline"}
        ),
        400,
        "reason_required",
    )
    d = await ok(
        await c.post(
            f"/api/v1/staff/vetting/{app['id']}/decide",
            headers=admin,
            json={"decision": "decline", "reason": "photo ID is unreadable"},
        )
    )
    assert d["status"] == "declined"
    msg = await c.box.wait("jo@example.org", "application to call")
    assert "photo ID is unreadable" in body_of(msg)
    mine = await ok(await c.get("/api/v1/family/applications", headers=me))
    assert mine["applications"][0]["reason"] == "photo ID is unreadable"
    assert await c.get(f"/api/v1/staff/vetting/{app['id']}", headers=me) is not None
    kinds = [r[0] for r in w.store.connection.execute("SELECT kind FROM audit")]
    assert kinds.count("vetting_decided") == 1
    assert "Traceback" not in caplog.text


async def test_contacts_and_export(family):
    c = family
    me, kid, _ = await approved_family(c)
    contacts = (await ok(await c.get("/api/v1/family/contacts", headers=me)))["contacts"]
    assert {(x["prisoner_name"], x["status"]) for x in contacts} == {("Alan Prisoner", "approved")}
    assert len(contacts) == 2  # the holder and the child
    r = await c.get("/api/v1/family/export", headers=me)
    assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
    data = await r.json(content_type=None)
    assert data["account"]["email"] == "jo@example.org"
    assert data["household"][0]["name"] == "Sam Family"
    assert data["applications"][0]["address"] == "1 High Street, Wrexham"


async def test_every_booking_path_notifies_and_reminds(family):
    c = family
    w = c.world
    me, kid, _ = await approved_family(c)
    body = {"prisoner_number": "A1234BC", "minutes": 30}
    b1 = await ok(
        await c.post("/api/v1/bookings", headers=me, json={**body, "starts_at": NOW + 3 * DAY}), 201
    )
    officer = await login(c, "officer_a")
    await ok(await c.post(f"/api/v1/staff/bookings/{b1['id']}/approve", headers=officer))
    msg = await c.box.wait("jo@example.org", "is booked")
    assert "Alan Prisoner" in body_of(msg) and "HMP Alpha" in body_of(msg)
    # the time as the family chose it: the establishment's clock, named
    local = dt.datetime.fromtimestamp(NOW + 3 * DAY, ZoneInfo("Europe/London"))
    assert f"{local:%Y-%m-%d %H:%M} (Europe/London)" in body_of(msg)
    # declined (staff), with the reason
    b2 = await ok(
        await c.post("/api/v1/bookings", headers=me, json={**body, "starts_at": NOW + 4 * DAY}), 201
    )
    await ok(
        await c.post(
            f"/api/v1/staff/bookings/{b2['id']}/decline",
            headers=officer,
            json={"reason": "the room is closed that day"},
        )
    )
    assert "the room is closed" in body_of(await c.box.wait("jo@example.org", "request for"))
    # cancelled through the lifecycle by staff (no handler of this work involved)
    await ok(
        await c.post(
            f"/api/v1/bookings/{b1['id']}/cancel",
            headers=officer,
            json={"reason": "staff shortage"},
        )
    )
    assert "staff shortage" in body_of(await c.box.wait("jo@example.org", "cancelled"))
    # reminder a day before an approved call, once
    b3 = await ok(
        await c.post("/api/v1/bookings", headers=me, json={**body, "starts_at": NOW + 2 * DAY}), 201
    )
    await ok(await c.post(f"/api/v1/staff/bookings/{b3['id']}/approve", headers=officer))
    c.clock["now"] = NOW + DAY + 60
    await c.app_[keys.NOTIFIER].run_once()
    await c.app_[keys.NOTIFIER].run_once()
    await c.box.wait("jo@example.org", "reminder")
    assert len(c.box.find("jo@example.org", "reminder")) == 1
    # a prisoner's request to a visitor without an account mails nobody, and breaks nothing
    give_pin(w.store, w.prisoner_a2, w.admin_a, NOW)
    andy = await kiosk(c, device_key(w.store, w.laptops_a[0][0], w.admin_a, NOW), "A5678DE")
    await ok(
        await c.post(
            "/api/v1/kiosk/requests",
            json={**andy, "visitor_id": w.vid("mum"), "starts_at": NOW + 5 * DAY, "minutes": 30},
        ),
        201,
    )


async def test_welsh_account_gets_welsh_email(family):
    c = family
    msg = await register(c, "cy@example.org", "Dafydd", "1980-01-01", lang="cy")
    assert "Helo Dafydd" in body_of(msg) and msg["Content-Language"] == "cy"


async def test_unreachable_mail_server_is_retried_with_backoff(tmp_path, caplog):
    w = make_world(tmp_path / "relay.sqlite")
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    from relay.notify.sender import Notifier

    clock = {"now": NOW}
    config = Config(
        data_dir=tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_tls="none",
        notify_retry_s=(30.0, 60.0),
        notify_timeout_s=2.0,
    )
    n = Notifier(w.store, config, lambda: clock["now"])
    w.store.enqueue_message("t1", "x@example.org", "en", "booking_reminder", {}, NOW)
    with caplog.at_level(logging.WARNING):
        assert await n.run_once() == 0
    (row,) = w.store.connection.execute("SELECT status, attempts, next_attempt_at FROM outbox")
    assert tuple(row) == ("pending", 1, NOW + 30)
    assert await n.run_once() == 0  # not due yet: no attempt
    for t in (NOW + 31, NOW + 92):
        clock["now"] = t
        await n.run_once()
    (row,) = w.store.connection.execute("SELECT status, attempts FROM outbox")
    assert tuple(row) == ("failed", 3)
    assert "x@example.org" not in caplog.text and "giving up" in caplog.text
    w.store.close()


async def test_without_a_mail_server_messages_are_eml_files(tmp_path):
    w = make_world(tmp_path / "relay.sqlite")
    from relay.notify.sender import Notifier

    config = Config(data_dir=tmp_path)
    n = Notifier(w.store, config, lambda: NOW)
    assert n.destination == str(tmp_path / "outbox")
    w.store.enqueue_message(
        "t1",
        "x@example.org",
        "en",
        "verify_email",
        {"name": "X", "link": "http://l/app#verify=abc", "hours": 24},
        NOW,
    )
    assert await n.run_once() == 1
    (eml,) = (tmp_path / "outbox").iterdir()
    assert stat.S_IMODE(os.stat(tmp_path / "outbox").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(eml).st_mode) == 0o600
    assert b"Confirm your email address" in eml.read_bytes()
    w.store.close()


def test_photo_cleaning_strips_everything_but_pixels():
    src = io.BytesIO()
    Image.new("RGB", (800, 600), (1, 2, 3)).save(src, "JPEG", comment=b"secret gps note")
    out = photos.clean_jpeg(src.getvalue() + b"trailing junk", 10**7, 400)
    assert b"secret gps note" not in out and b"trailing junk" not in out
    assert Image.open(io.BytesIO(out)).size == (400, 300)


def test_catalogues_have_the_same_strings_and_every_email_renders():
    from relay.notify.catalogue import catalogue, render_email

    en, cy = catalogue("en"), catalogue("cy")
    assert set(en) == set(cy)
    templates = {k.split(".")[1] for k in en if k.startswith("email.") and k.endswith(".subject")}
    assert "booking_approved" in templates and "application_declined" in templates
    for lang in ("en", "cy"):
        for template in templates:
            subject, body = render_email(lang, template, {"name": "X", "when": "soon"})
            assert subject and "{" not in subject + body


def test_an_empty_reason_is_said_in_words():
    from relay.notify.catalogue import render_email

    _, body = render_email("cy", "booking_cancelled", {"reason": "", "when": "x"})
    assert "ni roddwyd rheswm" in body


def test_decided_applications_photos_are_deleted_after_their_retention(tmp_path):
    """The sealed photos of an application decided longer ago than
    ``vetting_photo_retention_days`` are deleted by the retention sweep (audited); the
    decision stays, and a recent application's photos are kept."""
    from relay.records.audit import AuditLog
    from relay.records.retention import sweep_vetting_photos

    w = make_world(tmp_path / "relay.sqlite")
    config = Config(data_dir=tmp_path, vetting_photo_retention_days=30)
    audit_log = AuditLog(w.store.connection)
    key = b"k" * 32
    made = {}
    for name, decided in (("Old", NOW - 40 * DAY), ("New", NOW - 10 * DAY)):
        vid, _ = w.store.add_visitor(f"{name} Applicant", "1980-01-01", False, decided)
        account = w.store.add_verified_account(f"{name}@example.org", "x", vid, decided)
        app_id = w.store.create_application(
            account_id=account,
            visitor_id=vid,
            prisoner_id=w.prisoner_a,
            relationship="aunt",
            date_of_birth="1980-01-01",
            address="1 Road",
            member_ids=[],
            now=decided,
        )
        paths = []
        for kind in ("identity", "face"):
            path, sha = photos.seal_photo(config.vetting_path, key, b"\xff\xd8\xff fake jpeg")
            w.store.put_photo(app_id, kind, path, sha, 16, decided)
            paths.append(path)
        w.store.submit_application(app_id, decided)
        w.store.decide_application(app_id, w.admin_a, False, "not known to the prisoner", decided)
        made[name] = (app_id, paths)

    assert sweep_vetting_photos(w.store, config, audit_log, NOW) == 2
    old_id, old_paths = made["Old"]
    assert not any(os.path.exists(p) for p in old_paths)
    assert w.store.photo(old_id, "face") is None and w.store.photo(old_id, "identity") is None
    assert w.store.application(old_id).status == "declined"  # the decision stays
    new_id, new_paths = made["New"]
    assert all(os.path.exists(p) for p in new_paths) and w.store.photo(new_id, "face")
    kinds = [r[0] for r in w.store.connection.execute("SELECT kind FROM audit").fetchall()]
    assert kinds.count("vetting_photo_deleted") == 2
    assert sweep_vetting_photos(w.store, config, audit_log, NOW) == 0  # nothing twice
