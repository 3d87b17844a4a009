from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from protocol import tokens
from relay.auth import load_secret
from relay.config import Config
from relay.records.store import Store
from relay.seed import format_banner, seed_demo
from tests.test_store_world import NOW


def _config(tmp_path, db_target, **kw) -> Config:
    """The SQLite run keeps the default file; the PostgreSQL run names its URL."""
    url = db_target if isinstance(db_target, str) else ""
    return Config(data_dir=tmp_path, database_url=url, **kw)


def test_seed_demo_is_joinable_and_idempotent(tmp_path, db_target):
    cfg = _config(tmp_path, db_target, port=8099)
    store = Store.open(cfg.database_target)
    info = seed_demo(store, cfg, NOW)
    assert info["seeded"] and info["created"]
    assert info["console_url"] == "http://127.0.0.1:8099/console"
    assert info["prison_command"].startswith(
        ".venv/bin/python -m protocol.prison --relay http://127.0.0.1:8099")
    token = parse_qs(urlparse(info["family_url"]).query)["token"][0]
    claims = tokens.verify(load_secret(cfg), token, NOW + 1)
    adm = store.admit(claims, NOW + 1)
    assert adm.approved_faces == 2 and adm.call_type == "social"
    assert store.check_laptop(info["laptop_id"], info["laptop_secret"]) is not None
    assert store.check_staff_password("staff", info["staff_password"]) is not None
    assert info["staff_password"] in format_banner(info)
    assert "/laptop?enrol=" in format_banner(info)
    code = info["laptop_url"].split("enrol=")[1]
    laptop, _key = store.redeem_enrolment(code, NOW + 5)
    assert laptop.id == info["laptop_id"]

    # again while the call is on: same booking, fresh demo credentials
    again = seed_demo(store, cfg, NOW + 60)
    assert not again["created"] and again["booking_id"] == info["booking_id"]
    assert store.check_staff_password("staff", info["staff_password"]) is None
    assert store.check_staff_password("staff", again["staff_password"]) is not None
    assert store.establishment_count() == 1

    # after the slot: a fresh call starting now
    later = NOW + 3600
    third = seed_demo(store, cfg, later)
    assert third["booking_id"] != info["booking_id"]
    assert store.booking(info["booking_id"]).status == "completed"
    token = parse_qs(urlparse(third["family_url"]).query)["token"][0]
    assert store.admit(tokens.verify(load_secret(cfg), token, later), later).booking_id == third[
        "booking_id"
    ]
    store.close()
    # reopen (migrations idempotent) and seed again
    store = Store.open(cfg.database_target)
    assert seed_demo(store, cfg, later + 10)["booking_id"] == third["booking_id"]
    store.close()


def test_seed_refuses_to_mix_with_real_records(tmp_path, db_target):
    cfg = _config(tmp_path, db_target)
    store = Store.open(cfg.database_target)
    store.create_establishment("HMP Real", NOW)
    assert seed_demo(store, cfg, NOW)["seeded"] is False
    store.close()
