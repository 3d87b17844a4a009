"""The fence on a call's runtime row (relay/records/call_state.py, docs/multinode.md
"Fencing"): once another node has taken a call's row, the node that ran it writes nothing
more for it (state, heartbeat, end, outcome, audit) and hands its legs over.

The records-level test runs on both engines with two connections (two nodes on one
database). The relay-level tests run the whole product in process with real aiortc legs;
"another node" taking the call is its write to the shared records (the write a node that
re-placed and restored the call makes), nothing else is faked.
"""

from __future__ import annotations

import asyncio
import json
import time

from relay import keys
from relay.records.audit import verify
from relay.records.call_state import CallStateRecords
from relay.records.store import Store
from tests.support import until

OTHER = "n-other"


def test_a_taken_row_refuses_the_old_owner(db_target):
    a_store, b_store = Store.open(db_target), Store.open(db_target)
    try:
        a, b = CallStateRecords(a_store.connection), CallStateRecords(b_store.connection)
        assert a.save(7, "live", set(), set(), 999.0, 10.0, None, owner="a", take=True)
        assert a.save(7, "paused", {"staff"}, {"staff"}, 999.0, 11.0, None, owner="a", take=False)
        assert a.heartbeat([7], 12.0, owner="a") == set()
        # node b re-placed the call and restored it: the row is b's now
        assert b.save(7, "waiting", {"staff"}, {"staff"}, 999.0, 13.0, None, owner="b", take=True)
        assert b.owner(7) == "b"
        assert not a.save(7, "live", set(), set(), 999.0, 14.0, None, owner="a", take=False)
        assert a.heartbeat([7], 15.0, owner="a") == {7}
        saved = b.load(7)
        assert saved.pause_reasons == {"staff"} and saved.heartbeat_at == 13.0
        assert b.heartbeat([7], 16.0, owner="b") == set()
        # a sweep that saw heartbeat 13 stale does not end a call refreshed since (16)
        assert not a.mark_ended(7, 17.0, owner="a", seen_heartbeat=13.0)
        assert b.open_calls()[0].booking_id == 7
        assert a.mark_ended(7, 18.0, owner="a", seen_heartbeat=16.0)
        assert b.owner(7) == "a" and b.open_calls() == []
        # a row from before migration 10 (no owner) is anyone's to write
        a.conn.execute(
            "INSERT INTO call_runtime (booking_id, state, pause_reasons,"
            " awaiting_staff, ends_at, heartbeat_at) VALUES (8, 'live', '[]', '[]',"
            " 999.0, 1.0)"
        )
        assert a.owner(8) == ""
        assert a.save(8, "live", set(), set(), 999.0, 2.0, None, owner="a", take=False)
        assert a.heartbeat([8], 3.0, owner="a") == set()
    finally:
        a_store.close()
        b_store.close()


def _take_elsewhere(product, booking_id: int) -> None:
    """What the node that re-placed the call writes when it restores it."""
    records = CallStateRecords(product.world.store.connection)
    row = records.load(booking_id)
    assert row is not None
    records.save(
        booking_id,
        "waiting",
        row.pause_reasons,
        row.awaiting_staff,
        time.time() + 600,
        time.time(),
        None,
        owner=OTHER,
        take=True,
    )


def _ends_and_status(product, booking_id: int) -> tuple[int, str]:
    conn = product.world.store.connection
    rows = conn.execute(
        "SELECT detail FROM audit WHERE booking_id = ? AND kind = 'state'", (booking_id,)
    ).fetchall()
    ends = sum(1 for r in rows if json.loads(r[0]).get("to") == "ended")
    status = conn.execute("SELECT status FROM bookings WHERE id = ?", (booking_id,)).fetchone()
    return ends, str(status[0])


def _restarting(client) -> int:
    return sum(1 for m in client.messages if m["type"] == "restarting")


async def test_heartbeat_finds_the_call_taken_and_hands_it_over(product):
    b = product.booking_now()
    fam, pri = await product.pair(b)
    try:
        await fam.wait_state("live", 15)
        await pri.wait_state("live", 15)
        _take_elsewhere(product, b)
        started = time.monotonic()
        for leg in (fam, pri):  # at the next heartbeat (2 s)
            await leg.wait_for(lambda m: m["type"] == "restarting", 10)
        print(f"\nhanded over {time.monotonic() - started:.1f}s after the row was taken")
        assert _ends_and_status(product, b) == (0, "approved")  # no end, no outcome here
        assert CallStateRecords(product.world.store.connection).owner(b) == OTHER
        # the legs come back (here: the only node) and the call starts from the records
        await until(_async(lambda: fam.joins == 2 and pri.joins == 2), 20, "both rejoined")
        await fam.wait_state("live", 15)
        assert product.app[keys.REGISTRY].get(b) is not None
        assert CallStateRecords(product.world.store.connection).owner(b) != OTHER
    finally:
        await fam.close()
        await pri.close()


async def test_an_end_on_a_taken_call_is_a_hand_over_not_an_end(product):
    b = product.booking_now()
    fam, pri = await product.pair(b)
    try:
        await fam.wait_state("live", 15)
        await pri.wait_state("live", 15)
        _take_elsewhere(product, b)
        await fam.close()  # leaves on purpose before the heartbeat: the end is fenced
        await pri.wait_for(lambda m: m["type"] == "restarting", 10)
        assert not any(m.get("state") == "ended" for m in pri.messages)
        assert _ends_and_status(product, b) == (0, "approved")
        assert _restarting(pri) == 1
        # the prison leg rejoins (here: the only node), the call waiting for the family
        await until(_async(lambda: pri.joins == 2), 20, "the prison leg rejoined")
        await pri.wait_state("waiting", 15)
        assert _ends_and_status(product, b) == (0, "approved")
        assert verify(product.world.store.connection).ok
    finally:
        await fam.close()
        await pri.close()


def _async(check):
    async def run() -> bool:
        return check()

    return run


async def test_a_take_during_the_end_keeps_the_outcome_off(product):
    """The narrowest race: another node takes the row after this node checked it still
    runs the call and before the outcome is written. The outcome is written under the
    database's write lock with a last owner read, so it stays off the booking."""
    b = product.booking_now()
    fam, pri = await product.pair(b)
    try:
        await fam.wait_state("live", 15)
        await pri.wait_state("live", 15)
        policy = product.app[keys.REGISTRY].get(b).policy

        def taken_at_the_end() -> None:  # runs after the end's own save, before its outcome
            if policy.state == "ended":
                _take_elsewhere(product, b)

        policy.listeners.append(taken_at_the_end)
        await fam.close()
        await asyncio.wait_for(pri.ended.wait(), 10)
        assert _ends_and_status(product, b) == (1, "approved")  # ended here, no outcome
        assert CallStateRecords(product.world.store.connection).owner(b) == OTHER
        assert verify(product.world.store.connection).ok
    finally:
        await fam.close()
        await pri.close()
