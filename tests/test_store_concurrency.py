"""Two relay "nodes" (two processes, each its own connection) writing to one PostgreSQL at
once: the write lock keeps the audit chain whole and gives the last free laptop to exactly
one booking, as SQLite's single writer does for one node."""

from __future__ import annotations

import multiprocessing

import pytest

from relay.records.audit import AuditLog, verify
from relay.records.store import Store, StoreError
from relay.records.store.engine import open_database
from tests.test_store_world import DAY, HOUR, NOW, make_world

SLOTS = 8
APPENDS_PER_SLOT = 15
NODE_TIMEOUT_S = 120


def _node(
    url: str,
    name: str,
    prisoner_id: int,
    visitor_id: int,
    staff_id: int,
    barrier: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue,
) -> None:
    """One node: for every slot, ask for the call and approve it at once, with audit
    appends around it; reports which slots it won."""
    store = Store.open(url)
    audit = AuditLog(store.connection)
    won: list[int] = []
    try:
        barrier.wait(timeout=60)
        for slot in range(SLOTS):
            for i in range(APPENDS_PER_SLOT):
                audit.append("node_test", {"node": name, "slot": slot, "i": i}, booking_id=slot)
            try:
                b = store.request_booking(
                    prisoner_id=prisoner_id,
                    call_type="legal",
                    starts_at=NOW + DAY + slot * HOUR,
                    minutes=30,
                    main_visitor_id=visitor_id,
                    visitor_ids=[],
                    requested_by="staff",
                    now=NOW,
                    actor=name,
                )
                store.approve_booking(b.id, staff_id, NOW)
                won.append(slot)
            except StoreError as exc:
                assert exc.code == "slot_full", exc.code
        results.put((name, won, None))
    except BaseException as exc:  # noqa: BLE001 (reported to the test, which fails)
        results.put((name, won, repr(exc)))
    finally:
        store.close()


@pytest.mark.timeout(300)
def test_two_nodes_one_chain_one_winner_per_laptop(pg_url):
    w = make_world(pg_url)
    s = w.store
    s.set_laptop_active(w.laptops_a[1][0], False)  # one laptop left for every slot
    mum = w.vid("mum")
    s.close()

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    nodes = [
        ctx.Process(
            target=_node, args=(pg_url, "node1", w.prisoner_a, mum, w.admin_a, barrier, results)
        ),
        ctx.Process(
            target=_node, args=(pg_url, "node2", w.prisoner_a2, mum, w.officer_a, barrier, results)
        ),
    ]
    for p in nodes:
        p.start()
    try:
        reports = {}
        for _ in nodes:
            name, won, error = results.get(timeout=NODE_TIMEOUT_S)
            assert error is None, f"{name}: {error}"
            reports[name] = won
    finally:
        for p in nodes:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()

    # every slot was won exactly once, by one node or the other
    assert sorted(reports["node1"] + reports["node2"]) == list(range(SLOTS)), reports
    db = open_database(pg_url)
    try:
        approved = db.execute(
            "SELECT starts_at, COUNT(*) FROM bookings WHERE status = 'approved'"
            " GROUP BY starts_at ORDER BY starts_at"
        ).fetchall()
        assert [(r[0], r[1]) for r in approved] == [
            (NOW + DAY + slot * HOUR, 1) for slot in range(SLOTS)
        ]
        verdict = verify(db)
        assert verdict.ok, verdict.problem
        assert verdict.records == 2 * SLOTS * APPENDS_PER_SLOT
        nodes_seen = db.execute(
            "SELECT COUNT(*) FROM audit WHERE detail LIKE ?", ('%"node":"node2"%',)
        ).fetchone()[0]
        assert nodes_seen == SLOTS * APPENDS_PER_SLOT
        order = [
            r[0]
            for r in db.execute(
                "SELECT detail LIKE '%\"node1\"%' FROM audit ORDER BY id"
            ).fetchall()
        ]
        switches = sum(a != b for a, b in zip(order, order[1:], strict=False))
        print("node switches along the chain:", switches, "wins:", reports)
        assert switches > 2, "the two nodes did not write at the same time"
    finally:
        db.close()
