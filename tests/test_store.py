from __future__ import annotations

import logging
import os
import sqlite3

import psycopg
import pytest

from protocol.tokens import JoinClaims
from relay import auth
from relay.auth import load_secret
from relay.config import Config
from relay.records import store as store_mod
from relay.records.store import Store, StoreError
from relay.records.store import schema as store_schema
from relay.records.store.engine import IntegrityError, is_url
from tests.test_store_world import DAY, HOUR, NOW, approved, book, code_of, make_world


@pytest.fixture
def w(db_target):
    world = make_world(db_target)
    yield world
    world.store.close()


def test_migrations_idempotent_on_reopen(empty_db_target):
    s = Store.open(empty_db_target)
    assert s.schema_version() == len(store_mod.MIGRATIONS)
    est = s.create_establishment("X", NOW)
    s.close()
    s = Store.open(empty_db_target)  # reopen: nothing re-applied, data kept
    assert s.schema_version() == len(store_mod.MIGRATIONS)
    assert s.find_establishment("X") == est
    rows = s.connection.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
    assert rows == len(store_mod.MIGRATIONS)
    s.close()
    if not is_url(empty_db_target):
        with sqlite3.connect(empty_db_target) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failed_migration_rolls_back(empty_db_target, monkeypatch):
    Store.open(empty_db_target).close()
    good = len(store_mod.MIGRATIONS)
    monkeypatch.setattr(
        store_schema, "MIGRATIONS", [*store_mod.MIGRATIONS, "CREATE TABLE t2 (x INT); BROKEN SQL;"]
    )
    with pytest.raises((sqlite3.Error, psycopg.Error)):
        Store.open(empty_db_target)
    monkeypatch.undo()
    s = Store.open(empty_db_target)
    try:
        assert s.schema_version() == good
        assert "t2" not in s.connection.table_names()
    finally:
        s.close()


def test_foreign_keys_enforced(w):
    with pytest.raises(IntegrityError):
        w.store.add_prisoner(999, "Z1", "Nobody")


def claims_for(w, b, who="mum", role="family", nbf=None, exp=None):
    participant = {
        "family": f"visitor:{w.vid(who) if who in w.visitors else who}",
        "prison": f"laptop:{b.laptop_id}",
        "watcher": f"staff:{w.officer_a}",
    }[role]
    # a watcher's token names the staff session that asked for it (issue 21)
    jti = auth.session_ref(w.store.create_session(w.officer_a, NOW)) if role == "watcher" else ""
    return JoinClaims(
        b.id, participant, role,
        b.starts_at - 600 if nbf is None else nbf,
        b.ends_at if exp is None else exp,
        jti,
    )


def test_admit_happy_paths(w):
    b = approved(w, NOW + DAY, others=("dad", "kid"))
    s = w.store
    fam = s.admit(claims_for(w, b), b.starts_at)
    assert (fam.approved_faces, fam.display_name, fam.call_type) == (3, "Mum", "social")
    assert fam.policy.record_social and fam.policy.max_visitors == 4
    pri = s.admit(claims_for(w, b, role="prison"), b.starts_at - 300)
    assert (pri.approved_faces, pri.display_name) == (1, "Alan Prisoner")
    wat = s.admit(claims_for(w, b, role="watcher"), b.starts_at + 60)
    assert (wat.approved_faces, wat.role) == (0, "watcher")


def test_admit_refusals_logged_with_codes(w, caplog):
    s = w.store
    b = approved(w, NOW + DAY, others=("dad",))
    other = approved(w, NOW + 2 * DAY, minutes=30, prisoner=w.prisoner_a2)
    t = b.starts_at
    caplog.set_level(logging.WARNING, logger="relay.records.store")
    cases = [
        (claims_for(w, b), b.ends_at, "token_expired"),
        (claims_for(w, b), b.starts_at - 601, "token_not_yet_valid"),
        (claims_for(w, other, who="dad"), t, "wrong_booking"),
        (claims_for(w, b, who="sis"), t, "wrong_booking"),
        (JoinClaims(b.id, "laptop:99", "prison", 0, b.ends_at), t, "wrong_booking"),
        (JoinClaims(9999, "visitor:1", "family", 0, 1e10), t, "booking_not_found"),
        (JoinClaims(b.id, f"staff:{w.officer_b}", "watcher", 0, b.ends_at), t, "wrong_booking"),
        (JoinClaims(b.id, "visitor:1", "watcher", 0, b.ends_at), t, "token_malformed"),
        (claims_for(w, b, exp=b.ends_at + 3600), t, "token_stale"),
    ]
    for claims, now, code in cases:
        assert code_of(s.admit, claims, now) == code, claims
        assert f"code={code}" in caplog.text
    # a revoked visitor: refused at once; the booking carries on without them (one face
    # fewer) while its main visitor is approved, and is cancelled once she is revoked too
    contact = {c.visitor_id: c for c in s.contacts(w.est_a, w.prisoner_a)}
    faces = s.admit(claims_for(w, b), t).approved_faces
    revoked = s.revoke_contact(contact[w.vid("dad")].id, w.admin_a, NOW)
    assert (revoked.reduced, revoked.stopped) == ([b.id], [])
    assert code_of(s.admit, claims_for(w, b, who="dad"), t) == "approval_revoked"
    assert s.admit(claims_for(w, b), t).approved_faces == faces - 1
    assert s.revoke_contact(contact[w.vid("mum")].id, w.admin_a, NOW).cancelled == [b.id]
    assert code_of(s.admit, claims_for(w, b), t) == "approval_revoked"
    s.approve_contact(w.prisoner_a, w.vid("mum"), w.admin_a, NOW)
    assert code_of(s.admit, claims_for(w, b), t) == "booking_cancelled"
    # not approved yet / declined
    r = book(w, NOW + 3 * DAY)
    assert code_of(s.admit, claims_for(w, r), r.starts_at) == "booking_not_approved"
    s.decline_booking(r.id, w.officer_a, NOW, "no")
    assert code_of(s.admit, claims_for(w, r), r.starts_at) == "booking_declined"


def test_load_secret_generated_once(tmp_path):
    cfg = Config(data_dir=tmp_path / "d")
    k1 = load_secret(cfg)
    assert len(k1) >= 32 and load_secret(cfg) == k1
    assert os.stat(tmp_path / "d" / "secret.key").st_mode & 0o777 == 0o600
    assert load_secret(cfg.replace(secret_key="explicit")) == b"explicit"


def test_staff_sessions(w):
    s = w.store
    staff = s.check_staff_password("officer_a", "correct horse battery staple")
    assert staff and staff.role == "officer"
    assert s.check_staff_password("officer_a", "wrong") is None
    assert s.check_staff_password("nobody", "wrong") is None
    tok = s.create_session(staff.id, NOW)
    assert s.session_staff(tok, NOW + 60).id == staff.id
    assert s.session_staff(tok, NOW + 60 + store_mod.SESSION_IDLE_S + 1) is None
    tok2 = s.create_session(staff.id, NOW)
    s.delete_session(tok2)
    assert s.session_staff(tok2, NOW) is None
    with pytest.raises(StoreError):
        s.add_staff(w.est_a, "officer_a", "x", "officer")


def test_failed_after_completed_and_outcome_of_cancelled(w):
    s = w.store
    b = approved(w, NOW + HOUR)
    s.mark_call_outcome(b.id, "completed", "")
    s.mark_call_outcome(b.id, "failed", "media_timeout")
    assert s.booking(b.id).status == "failed"
    c = book(w, NOW + DAY)
    s.cancel_booking(c.id, "test", NOW)
    assert code_of(s.mark_call_outcome, c.id, "completed", "") == "booking_not_active"
