"""A small, fixed world of records shared by the booking tests (and a sanity test of it)."""

from __future__ import annotations

import pytest

from bench.world import DAY, HOUR, NOW, PASSWORD, World, make_world
from relay.records.store import AdmissionRefused, StoreError

__all__ = ["DAY", "HOUR", "NOW", "PASSWORD", "World", "approved", "book", "code_of", "make_world"]

def book(w, starts, minutes=30, main="mum", others=(), call_type="social", prisoner=None):
    return w.store.request_booking(
        prisoner_id=prisoner or w.prisoner_a, call_type=call_type, starts_at=starts,
        minutes=minutes, main_visitor_id=w.vid(main), visitor_ids=[w.vid(o) for o in others],
        requested_by="family", now=NOW, actor="test",
    )


def approved(w, starts, **kw):
    b = book(w, starts, **kw)
    return w.store.approve_booking(b.id, w.officer_a, NOW)


def code_of(fn, *a, **kw):
    with pytest.raises((StoreError, AdmissionRefused)) as e:
        fn(*a, **kw)
    return e.value.code


def test_world_builds(tmp_path):
    w = make_world(tmp_path / "w.sqlite")
    assert w.store.policy(w.est_a).capacity == 2
    assert w.store.check_visitor(w.vid("mum"), w.visitors["mum"][1]).name == "Mum"
    w.store.close()
