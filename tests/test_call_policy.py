"""The policy engine end to end: staff pause/resume/end, time limit, reconnection, audit."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys

import pytest

from relay import keys
from relay.records.audit import verify


async def flowing(client, stream="video0", seconds=1.0) -> int:
    before = client.packets[stream]
    await asyncio.sleep(seconds)
    return client.packets[stream] - before


async def test_staff_pause_resume_end_and_other_call_unaffected(product):
    b1, b2 = product.booking_now(), product.booking_now()
    # b2 needs the second laptop: give it its own prisoner/laptop pairing via a fresh booking
    fam, pri = await product.pair(b1)
    other_fam, other_pri = None, None
    staff = await product.staff_session()
    try:
        await fam.wait_state("live")
        await pri.wait_frames("video0", 10)
        url = f"{product.url}/api/v1/staff/calls/{b1}"
        async with staff.post(url + "/pause", json={"note": "checking the room"}) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["state"] == "paused"
        msg = await fam.wait_state("paused")
        assert "member of staff paused" in " ".join(msg["paused_because"])
        await pri.wait_state("paused")
        await asyncio.sleep(0.3)  # packets already in flight
        live = product.app[keys.REGISTRY].get(b1)
        sent_before = sum(c.packets_sent for leg in live.call.legs.values() for c in leg.consumers)
        withheld_before = sum(p.packets_withheld for leg in live.call.legs.values()
                              for p in leg.producers.values())
        assert await flowing(fam, "video0", 1.0) == 0 and await flowing(pri, "audio0", 0.5) == 0
        sent_after = sum(c.packets_sent for leg in live.call.legs.values() for c in leg.consumers)
        withheld_after = sum(p.packets_withheld for leg in live.call.legs.values()
                             for p in leg.producers.values())
        assert sent_after == sent_before, "no packet is forwarded to either side while paused"
        assert withheld_after > withheld_before + 50
        async with staff.post(url + "/resume") as r:
            assert (await r.json())["state"] == "live"
        await fam.wait_state("live")
        assert await flowing(fam, "video0", 2.0) > 20, "video returns after resume (keyframe)"
        # another call runs alongside and is untouched by this one's end
        other_fam, other_pri = await product.pair(b2)
        await other_pri.wait_frames("video0", 10)
        async with staff.post(url + "/end") as r:
            assert (await r.json())["state"] == "ended"
        ended = await fam.wait_state("ended")
        assert ended["reason"] == "staff"
        await asyncio.wait_for(pri.ended.wait(), 5)
        assert await flowing(other_pri, "video0", 1.0) > 15
        assert other_pri.state == "live"
        assert product.world.store.booking(b1).status == "completed"
        kinds = [r["kind"] for r in product.app[keys.AUDIT_LOG].for_booking(b1)]
        assert {"join", "staff_pause", "staff_resume", "staff_end"} <= set(kinds)
    finally:
        await staff.close()
        for c in (fam, pri, other_fam, other_pri):
            if c is not None:
                await c.close()


async def test_staff_of_another_establishment_cannot_touch_the_call(product):
    b = product.booking_now()
    fam, pri = await product.pair(b)
    other = await product.staff_session("officer_b")
    try:
        await fam.wait_state("live")
        async with other.post(f"{product.url}/api/v1/staff/calls/{b}/pause") as r:
            assert r.status == 404
        async with other.get(f"{product.url}/api/v1/staff/calls") as r:
            assert (await r.json())["calls"] == []
        assert fam.state == "live"
    finally:
        await other.close()
        await fam.close()
        await pri.close()


async def test_slot_ends_on_time_with_warnings(product):
    b = product.booking_now(seconds=7)
    fam, pri = await product.pair(b)
    try:
        warnings = []
        fam.on_message = lambda m: m["type"] == "warning" and warnings.append(m["seconds_left"])
        ended = await fam.wait_state("ended", timeout=15)
        assert ended["reason"] == "time_limit"
        assert warnings == [4, 2]
        await asyncio.wait_for(pri.ended.wait(), 5)
        assert product.world.store.booking(b).status == "completed"
    finally:
        await fam.close()
        await pri.close()


async def test_dropped_leg_rejoins_and_keeps_the_end_time(product):
    b = product.booking_now(seconds=120)
    fam, pri = await product.pair(b)
    try:
        await fam.wait_state("live")
        ends_at = fam.joined["call"]["ends_at"]
        await fam.drop()
        await pri.wait_for(lambda m: m["type"] == "state" and m["reason"] == "family_reconnecting")
        await asyncio.sleep(1.0)
        await fam.join()
        assert fam.joined["call"]["ends_at"] == ends_at
        # media flows again both ways on the new connection
        assert await flowing(fam, "video0", 2.0) > 20
        assert await flowing(pri, "video0", 2.0) > 20
        await pri.wait_for(lambda m: m["type"] == "state" and m["reason"] == "rejoined")
        kinds = [r["kind"] for r in product.app[keys.AUDIT_LOG].for_booking(b)]
        assert "drop" in kinds and "rejoin" in kinds
    finally:
        await fam.close()
        await pri.close()


async def test_leg_that_does_not_return_ends_the_call_and_returns_allowance(product):
    b = product.booking_now(seconds=120)
    fam, pri = await product.pair(b)
    try:
        await fam.wait_state("live")
        await pri.drop()
        ended = await fam.wait_state("ended", timeout=10)
        assert ended["reason"] == "leg_lost"
        booking = product.world.store.booking(b)
        assert booking.status == "failed"
    finally:
        await fam.close()
        await pri.close(leave=False)


async def test_audit_tampering_is_detected(product, tmp_path):
    b = product.booking_now()
    fam, pri = await product.pair(b)
    await fam.wait_state("live")
    await fam.close()
    await pri.close()
    await asyncio.sleep(0.5)
    db = product.config.db_path
    conn = sqlite3.connect(db)
    assert verify(conn).ok
    cli = [sys.executable, "-m", "relay.records.audit", "verify", "--db", str(db)]
    assert subprocess.run(cli, capture_output=True, timeout=60).returncode == 0
    conn.execute("UPDATE audit SET detail = '{\"role\":\"prison\"}' WHERE id = 1")
    conn.commit()
    verdict = verify(conn)
    assert not verdict.ok and "record 1" in verdict.problem
    out = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "BROKEN" in out.stdout
    conn.close()


@pytest.mark.parametrize("cut", ["middle", "end"])
def test_audit_deletion_is_detected(db_target, cut):
    from relay.records.audit import AuditLog
    from relay.records.store import Store

    store = Store.open(db_target)
    log = AuditLog(store.connection)
    for i in range(5):
        log.append("state", {"i": i}, booking_id=1)
    conn = store.connection
    conn.execute("DELETE FROM audit WHERE id = ?", (3 if cut == "middle" else 5,))
    assert not verify(conn).ok
    store.close()


async def test_a_side_that_rejoins_is_given_the_latest_staff_message_again(product):
    """A phone that lost its connection for a moment must not miss what staff asked; the
    side that stayed is not told twice."""
    b = product.booking_now(seconds=120)
    fam, pri = await product.pair(b)
    staff = await product.staff_session()
    text = "Please keep the child in view of the camera."
    try:
        await fam.wait_state("live")
        async with staff.post(
            f"{product.url}/api/v1/staff/calls/{b}/message", json={"text": text}
        ) as r:
            assert r.status == 200, await r.text()
        first = await fam.wait_for(lambda x: x["type"] == "notice")
        await pri.wait_for(lambda x: x["type"] == "notice")
        assert first["text"] == text and "replayed" not in first
        await fam.drop()
        await pri.wait_for(lambda x: x["type"] == "state" and x["reason"] == "family_reconnecting")
        seen = len(fam.messages)
        await fam.join()
        again = await fam.wait_for(
            lambda x: x["type"] == "notice" and fam.messages.index(x) >= seen
        )
        assert again == {**first, "replayed": True}
        await pri.wait_for(lambda x: x["type"] == "state" and x["reason"] == "rejoined")
        assert sum(x["type"] == "notice" for x in pri.messages) == 1
    finally:
        await staff.close()
        await fam.close()
        await pri.close()
