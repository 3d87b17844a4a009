"""Face enrolment through the staff endpoints: a real relay, real models, real photos.

scikit-image's astronaut photo is the visitor's face; its cat photo has no face.
"""

from __future__ import annotations

import json
import time

import aiohttp
import numpy as np
import pytest
from skimage import data

from bench.identity_set import jpeg
from bench.product import start_product
from relay import keys
from relay.records import audit
from relay.records.sealed import MAGIC
from vision.identity import distance

PREFIX = "/api/identity"


def bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, :, ::-1])


ASTRONAUT = jpeg(bgr(data.astronaut()))
CAT = jpeg(bgr(data.chelsea()))


@pytest.fixture
async def product(tmp_path):
    p = await start_product(tmp_path, vision_enabled=True, identity_photo_max_bytes=400_000)
    yield p
    await p.server.close()


def audit_kinds(product) -> list[tuple[str, dict]]:
    rows = product.world.store.connection.execute(
        "SELECT kind, detail FROM audit WHERE kind LIKE 'face_%' ORDER BY id"
    ).fetchall()
    return [(r[0], json.loads(r[1])) for r in rows]


async def test_a_visitor_photo_is_enrolled_sealed_and_can_be_deleted(product) -> None:
    mum = product.world.vid("mum")
    url = f"{product.url}{PREFIX}/visitors/{mum}/face"
    admin = await product.staff_session("admin_a")
    try:
        async with admin.get(url) as r:
            assert r.status == 200 and (await r.json())["enrolled"] is False
        async with admin.put(url, data=ASTRONAUT, headers={"Content-Type": "image/jpeg"}) as r:
            body = await r.json()
            assert r.status == 201, body
        assert body["enrolled"] is True and body["face_px"] >= 80
        assert body["retention_until"] > time.time() + 300 * 86400
        async with admin.get(url) as r:
            assert (await r.json())["enrolled"] is True

        enrolments = product.app[keys.FACE_ENROLMENTS]
        (sealed,) = list(enrolments.faces_dir.iterdir())
        raw = sealed.read_bytes()
        assert raw.startswith(MAGIC) and b"\xff\xd8\xff" not in raw  # ciphertext, not the JPEG
        assert sealed.stat().st_mode & 0o077 == 0
        photo, media_type = enrolments.photo("visitor", mum)
        assert photo == ASTRONAUT and media_type == "image/jpeg"
        vectors = enrolments.descriptors([("visitor", mum), ("visitor", 999)])
        assert list(vectors) == [("visitor", mum)] and vectors[("visitor", mum)].shape == (128,)
        assert vectors[("visitor", mum)].tobytes() not in raw

        # a second photo replaces the first: one file, the same person
        flipped = jpeg(np.ascontiguousarray(bgr(data.astronaut())[:, ::-1]))
        async with admin.put(url, data=flipped) as r:
            assert r.status == 201
        (again,) = list(enrolments.faces_dir.iterdir())
        assert again != sealed
        new = enrolments.descriptors([("visitor", mum)])[("visitor", mum)]
        assert distance(new, vectors[("visitor", mum)]) < 0.3

        async with admin.delete(url) as r:
            assert r.status == 200 and (await r.json())["enrolled"] is False
        assert list(enrolments.faces_dir.iterdir()) == []
        async with admin.delete(url) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_enrolled"
    finally:
        await admin.close()
    kinds = [k for k, _ in audit_kinds(product)]
    assert kinds.count("face_enrolled") == 2
    assert "face_enrolment_deleted" in kinds and "face_enrolment_viewed" in kinds
    assert audit.verify(product.world.store.connection).ok
    assert all("Mum" not in json.dumps(d) for _, d in audit_kinds(product))


async def test_unusable_photos_are_refused_with_the_reason(product) -> None:
    mum = product.world.vid("mum")
    url = f"{product.url}{PREFIX}/visitors/{mum}/face"
    admin = await product.staff_session("admin_a")
    try:
        cases = [
            (CAT, 422, "no_face"),
            (b"GIF89a not a photo", 415, "unsupported_photo_type"),
            (b"\xff\xd8\xff\xe0 broken jpeg" + b"\0" * 100, 422, "photo_unreadable"),
            (b"\xff\xd8\xff" + b"\0" * 400_001, 413, "photo_too_large"),
            (b"", 400, "no_photo"),
            (jpeg((bgr(data.astronaut()) * 0.15).astype(np.uint8)), 422, "too_dark"),
        ]
        for photo, status, code in cases:
            async with admin.put(url, data=photo) as r:
                body = await r.json()
                assert (r.status, body["error"]["code"]) == (status, code), body
                assert body["error"]["message"]
        async with admin.get(url) as r:
            assert (await r.json())["enrolled"] is False
    finally:
        await admin.close()
    refused = [d["refused"] for k, d in audit_kinds(product) if k == "face_enrolment_refused"]
    assert "no_face" in refused and "unsupported_photo_type" in refused


async def test_who_may_enrol_whom(product) -> None:
    w = product.world
    officer = await product.staff_session("officer_a")
    try:
        visitor_url = f"{product.url}{PREFIX}/visitors/{w.vid('mum')}/face"
        async with officer.put(visitor_url, data=ASTRONAUT) as r:
            assert r.status == 403  # visitors are enrolled by admins, as they are registered
        async with officer.get(visitor_url) as r:
            assert r.status == 200
        own = f"{product.url}{PREFIX}/prisoners/{w.prisoner_a}/face"
        async with officer.put(own, data=ASTRONAUT) as r:
            assert r.status == 201, await r.text()
        other = f"{product.url}{PREFIX}/prisoners/{w.prisoner_b}/face"
        async with officer.put(other, data=ASTRONAUT) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "prisoner_not_found"
        async with officer.get(f"{product.url}{PREFIX}/visitors/99999/face") as r:
            assert r.status == 404
        async with officer.delete(own) as r:
            assert r.status == 403
    finally:
        await officer.close()
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{product.url}{PREFIX}/prisoners/{w.prisoner_a}/face") as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "unauthenticated"


async def test_retention_deletes_old_enrolments(product) -> None:
    w = product.world
    enrolments = product.app[keys.FACE_ENROLMENTS]
    result = await enrolments.enrol_face("prisoner", w.prisoner_a, ASTRONAUT, actor="test")
    assert result.face_px >= 80
    assert enrolments.sweep() == 0
    enrolments.clock = lambda: time.time() + 366 * 86400
    assert enrolments.sweep() == 1
    assert enrolments.get("prisoner", w.prisoner_a) is None
    assert list(enrolments.faces_dir.iterdir()) == []
    deleted = [d for k, d in audit_kinds(product) if k == "face_enrolment_deleted"]
    assert deleted == [{"kind": "prisoner", "subject_id": w.prisoner_a, "reason": "retention"}]


async def test_without_the_detector_enrolment_says_so(tmp_path) -> None:
    p = await start_product(tmp_path)  # vision off, as on a relay configured without it
    try:
        admin = await p.staff_session("admin_a")
        url = f"{p.url}{PREFIX}/visitors/{p.world.vid('mum')}/face"
        async with admin.put(url, data=ASTRONAUT) as r:
            body = await r.json()
            assert r.status == 409 and body["error"]["code"] == "identity_unavailable"
        await admin.close()
    finally:
        await p.server.close()


def test_identity_settings_come_from_the_relay_config() -> None:
    from relay.config import Config

    config = Config.from_env({"RELAY_IDENTITY_THRESHOLD": "0.42", "RELAY_FACES_DIR": "/x"})
    assert config.vision.identity_threshold == 0.42 and config.faces_dir == "/x"
    assert Config().vision.identity_threshold == 0.5
