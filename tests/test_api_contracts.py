"""The API's contracts: each shape defined once (models), the served OpenAPI document is the
models' generated schema, the route table's role check covers the recordings routes, legal
calls are booked by staff only, call lengths come from the establishment, and the bounded
JSON parser refuses what it should with a code."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic.json_schema import models_json_schema

from bench.world import OPEN_ALL_HOURS
from protocol import messages, tokens, vocabulary
from relay import keys
from relay.app import build_app
from relay.config import Config
from relay.records.store import Booking as StoreBooking
from relay.records.store.values import EstablishmentPolicy
from relay.web import models
from relay.web.jsonbody import MAX_DEPTH
from relay.web.openapi import REF
from relay.web.routes import OPERATIONS, RECORDINGS_PREFIX
from tests.kiosk import device_key, give_pin, kiosk
from tests.test_api import SECRET, bearer, err, family_request, login, ok
from tests.test_store_world import DAY, NOW, make_world

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path / "relay.sqlite")
    yield w
    w.store.close()


@pytest.fixture
async def product(aiohttp_client, world, tmp_path):
    """The whole relay (booking API and recordings routes) on the world's store."""
    config = Config(data_dir=tmp_path, secret_key=SECRET, bad_token_limit_per_min=0,
                    seed_demo=False, vision_enabled=False)
    app = build_app(config, store=world.store, clock=lambda: NOW)
    client = await aiohttp_client(app)
    client.world = world
    client.app_ = app
    return client


# --------------------------------------------------------------------------- one definition


async def test_served_openapi_is_the_models_generated_schema(product):
    doc = await ok(await product.get("/api/v1/openapi.json"))
    assert doc["openapi"].startswith("3.1")
    components = doc["components"]["schemas"]

    def check(model, mode):
        _, generated = models_json_schema([(model, mode)], ref_template=REF)
        defs = generated["$defs"]
        for name, schema in defs.items():
            assert components[name] == schema, name

    for op in OPERATIONS:
        entry = doc["paths"][op.full_path][op.method.lower()]
        assert entry["operationId"] == op.op_id
        if op.body is None:
            assert "requestBody" not in entry, op.op_id
        else:
            ref = entry["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref == REF.format(model=op.body.__name__), op.op_id
            check(op.body, "validation")
        content = entry["responses"][str(op.status)]["content"]
        if op.response is not None:
            assert content["application/json"]["schema"]["$ref"] == REF.format(
                model=op.response.__name__), op.op_id
            check(op.response, "serialization")
        else:
            assert list(content) == [op.media_type]
        params = {p["name"]: p for p in entry.get("parameters", [])}
        assert {n for n, p in params.items() if p["in"] == "path"} == set(op.path_params)
        if op.query is not None:
            aliases = {f.alias or n for n, f in op.query.model_fields.items()}
            assert {n for n, p in params.items() if p["in"] == "query"} == aliases
    # every documented operation is in the table, and nothing else
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {(op.full_path, op.method.lower()) for op in OPERATIONS}


def test_booking_shape_is_the_store_value_field_for_field():
    store_fields = {f.name for f in dataclasses.fields(StoreBooking)} | {"minutes"}
    assert set(models.Booking.model_fields) == store_fields


def test_vocabularies_and_limits_are_defined_once():
    assert tokens.ROLES is vocabulary.ROLES and messages.ROLES is vocabulary.ROLES
    assert tokens.MAX_TOKEN_CHARS == messages.MAX_TOKEN_CHARS == vocabulary.MAX_TOKEN_CHARS
    schema = models.BookingRequest.model_json_schema()
    assert schema["properties"]["call_type"]["enum"] == list(vocabulary.CALL_TYPES)


def test_new_establishment_takes_the_policy_dataclass_defaults(world):
    est = world.store.create_establishment("HMP Defaults", NOW)
    policy = world.store.policy(est)
    blank = EstablishmentPolicy(establishment_id=est, name="HMP Defaults")
    assert dataclasses.replace(policy, capacity=0) == blank


# --------------------------------------------------------------------------- recordings routes


async def test_releasing_a_legal_hold_is_for_admins(product):
    w, app = product.world, product.app_
    index = app[keys.RECORDING_INDEX]
    rec = index.add(1, w.est_a, "1/booking-1.webm.enc", "video/webm", NOW - DAY, NOW + 90 * DAY)
    officer = await login(product, "officer_a")
    held = await ok(await product.post(f"{RECORDINGS_PREFIX}/recordings/{rec}/hold",
                                       json={"reason": "complaint 7"}, headers=officer))
    assert held["legal_hold"] is True
    await err(await product.delete(f"{RECORDINGS_PREFIX}/recordings/{rec}/hold",
                                   headers=officer), 403, "forbidden")
    assert index.get(rec).legal_hold is True
    refused = [r for r in app[keys.AUDIT_LOG].for_booking(1) if r["kind"] == "recording_access_refused"]
    assert refused and refused[-1]["detail"]["refused"] == 403
    admin = await login(product, "admin_a")
    released = await ok(await product.delete(f"{RECORDINGS_PREFIX}/recordings/{rec}/hold",
                                             headers=admin))
    assert released["legal_hold"] is False and index.get(rec).legal_hold is False
    # releasing what is not held says so
    await err(await product.delete(f"{RECORDINGS_PREFIX}/recordings/{rec}/hold",
                                   headers=admin), 409, "conflict")


async def test_recordings_routes_validate_like_the_api(product):
    w, app = product.world, product.app_
    rec = app[keys.RECORDING_INDEX].add(1, w.est_a, "1/b.webm.enc", "video/webm", NOW, NOW + DAY)
    officer = await login(product, "officer_a")
    body = await err(await product.post(f"/api/recordings/{rec}/hold", json={"why": "x"},
                                        headers=officer), 400, "invalid_request")
    assert body["error"]["message"].startswith("body.")
    await err(await product.get("/api/recordings?booking_id=0", headers=officer),
              400, "invalid_request")
    await err(await product.get("/api/recordings/abc", headers=officer), 404, "not_found")


# --------------------------------------------------------------------------- legal calls


async def test_family_and_kiosk_cannot_book_legal_calls(product):
    w = product.world
    body = await err(await family_request(product, call_type="legal"), 403,
                     "legal_call_not_allowed")
    assert "staff" in body["error"]["message"]
    # the kiosk has no call type to send: its requests are social (a legal one is refused)
    give_pin(w.store, w.prisoner_a, w.admin_a, NOW)
    alan = await kiosk(product, device_key(w.store, w.laptops_a[0][0], w.admin_a, NOW), "A1234BC")
    ask = {**alan, "visitor_id": w.vid("mum"), "starts_at": NOW + DAY, "minutes": 30}
    await err(await product.post("/api/v1/kiosk/requests", json={**ask, "call_type": "legal"}),
              400, "invalid_request")
    assert w.store.visitor_bookings(w.vid("mum")) == []
    # a social request from both still works
    await ok(await family_request(product), 201)
    b = await ok(await product.post("/api/v1/kiosk/requests",
                                    json={**ask, "starts_at": NOW + 3 * DAY}), 201)
    assert b["call_type"] == "social"


async def test_staff_book_a_legal_call_approved_at_once(product):
    w = product.world
    officer = await login(product, "officer_a")
    body = {"prisoner_number": "A1234BC", "call_type": "legal", "starts_at": NOW + DAY,
            "minutes": 60, "main_visitor_id": w.vid("mum")}
    b = await ok(await product.post("/api/v1/staff/bookings", json=body, headers=officer), 201)
    assert (b["call_type"], b["status"], b["requested_by"]) == ("legal", "approved", "staff")
    assert b["laptop_id"] is not None and b["minutes"] == 60
    # the same rules as any request: a prisoner of another establishment is not found
    other = {**body, "prisoner_number": "B1111ZZ"}
    await err(await product.post("/api/v1/staff/bookings", json=other, headers=officer),
              404, "prisoner_not_found")
    # not for families
    await err(await product.post("/api/v1/staff/bookings", json=body,
                                 headers=bearer(w, "mum")), 401, "unauthenticated")
    # an approval that cannot be given leaves no request behind: the laptop asked for is taken
    laptop = w.laptops_a[0][0]
    later = {**body, "starts_at": NOW + 2 * DAY, "laptop_id": laptop}
    await ok(await product.post("/api/v1/staff/bookings", headers=officer, json=later), 201)
    taken = {**later, "prisoner_number": "A5678DE"}
    refused = await product.post("/api/v1/staff/bookings", headers=officer, json=taken)
    assert refused.status == 409, await refused.text()
    assert w.store.list_bookings(w.est_a, status="requested") == []
    declined = w.store.list_bookings(w.est_a, status="declined")
    assert len(declined) == 1 and declined[0].reason.startswith("not approved")


# --------------------------------------------------------------------------- call lengths


async def test_call_length_is_the_establishments(product):
    s = product.world.store
    est = s.create_establishment("HMP Gamma", NOW, allowed_call_minutes=(45,), call_minutes=45)
    s.set_visiting_hours(est, OPEN_ALL_HOURS)
    s.add_laptop(est, "laptop g", "room g")
    prisoner = s.add_prisoner(est, "G4545GG", "Gary Prisoner")
    vid, secret = s.add_visitor("Gwen", "1971-01-01", True, NOW)
    staff = s.add_staff(est, "admin_g", "pw-gamma-0123456789", "admin")
    s.approve_contact(prisoner, vid, staff, NOW)
    key = {"Authorization": f"Bearer {vid}.{secret}"}
    body = {"prisoner_number": "G4545GG", "starts_at": NOW + DAY, "minutes": 45}
    b = await ok(await product.post("/api/v1/bookings", json=body, headers=key), 201)
    assert b["minutes"] == 45 and b["ends_at"] - b["starts_at"] == 45 * 60
    body = await err(await product.post("/api/v1/bookings", headers=key,
                                        json={**body, "minutes": 30}), 422, "bad_call_length")
    assert "45" in body["error"]["message"]
    # and the documented schema no longer fixes the lengths
    minutes = models.BookingRequest.model_json_schema()["properties"]["minutes"]
    assert "enum" not in minutes


# --------------------------------------------------------------------------- parsing


async def test_body_errors_name_the_field_and_keep_their_codes(product):
    w = product.world
    key = {**bearer(w, "mum"), "Content-Type": "application/json"}
    cases = [
        ('{"starts_at": 1, "minutes": 30}', 400, "invalid_request", "body.prisoner_number"),
        ('{"prisoner_number": "A1234BC", "starts_at": 1, "minutes": "30"}', 400,
         "invalid_request", "body.minutes"),
        ('{"prisoner_number": "A1234BC", "starts_at": 1, "minutes": 30, "x": 1}', 400,
         "invalid_request", "body.x"),
        ('{"prisoner_number": ', 400, "bad_json", ""),
        ('{"prisoner_number": NaN}', 400, "bad_json", ""),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), 400, "json_too_deep", ""),
        ('{"prisoner_number": "\\ud800", "starts_at": 1, "minutes": 30}', 400,
         "bad_unicode", ""),
        ("[1]", 400, "invalid_request", "body"),
    ]
    for raw, status, code, field in cases:
        body = await err(await product.post("/api/v1/bookings", data=raw, headers=key),
                         status, code)
        assert body["error"]["message"].startswith(field), (raw, body)
    await err(await product.post("/api/v1/bookings", data=b"x" * (70 * 1024), headers=key),
              413, "body_too_large")
    await err(await product.post("/api/v1/bookings", data="{}", headers={
        **bearer(w, "mum"), "Content-Type": "text/plain"}), 415, "unsupported_media_type")
    # a deep string of brackets inside a string is not nesting
    fine = '{"prisoner_number": "' + "[" * 30 + '", "starts_at": 1, "minutes": 30}'
    await err(await product.post("/api/v1/bookings", data=fine, headers=key), 404,
              "prisoner_not_found")
    # query parameters too
    officer = await login(product, "officer_a")
    await err(await product.get("/api/v1/staff/bookings?limit=0", headers=officer), 400,
              "invalid_request")
    await err(await product.get("/api/v1/staff/bookings?from=inf", headers=officer), 400,
              "invalid_request")
    listed = await ok(await product.get("/api/v1/staff/bookings?status=approved&limit=5",
                                        headers=officer))
    assert all(b["status"] == "approved" for b in listed["bookings"])
