"""Two relay nodes, one SQLite file (WAL) and one storage folder: a node's recording outlives it.

Node A records a live call (real aiortc clients, real VP8 and Opus) and is killed with
``kill -9``; node B, which never saw the call, marks the recording interrupted once A's
heartbeat is stale, serves it to a signed-in officer through the recordings API, and its
sealed chunks verify up to the last durable one. The call's legs then rejoin on B, which
records a second segment of the same booking.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time

import aiohttp
import pytest

from bench.world import PASSWORD, make_world
from relay.records.recordings import RecordingIndex
from relay.records.sealed import TruncatedRecording, decrypt_bytes
from relay.records.storage import FolderStorage
from relay.records.store.engine import open_database
from tests.support import until
from tests.test_recording import KEY_HEX, clients, demux, seconds
from tests.test_recording_crash import _Tokens, _wait_healthy, start_relay

BOOKING = 7


async def staff_login(base: str) -> aiohttp.ClientSession:
    s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with s.post(
        f"{base}/api/v1/staff/login", json={"username": "officer_a", "password": PASSWORD}
    ) as r:
        assert r.status == 200, await r.text()
    return s


def rows(db) -> list:
    conn = open_database(db)
    try:
        return RecordingIndex(conn).list(booking_id=BOOKING)
    finally:
        conn.close()


@pytest.mark.timeout(150)
async def test_another_node_serves_the_recording_of_a_killed_node(tmp_path):
    make_world(tmp_path / "relay.sqlite").store.close()  # officer_a of establishment 1
    shared = tmp_path / "shared"
    tokens = _Tokens()
    fam, pri = clients("http://127.0.0.1:1", tokens, BOOKING, reconnect=False)
    common = {
        "storage_dir": str(shared),
        "recordings_dir": str(shared / "recordings"),
        "recording_heartbeat_s": 0.5,
        "recording_stale_s": 3.0,
    }
    base_a, node_a = start_relay(tmp_path, tokens, node_id="node-a", **common)
    node_b = None
    staff = None
    try:
        await _wait_healthy(base_a, node_a)
        base_b, node_b = start_relay(tmp_path, tokens, node_id="node-b", **common)
        await _wait_healthy(base_b, node_b)
        for client in (fam, pri):
            client.ws_url = base_a.replace("http://", "ws://") + "/ws"
        await fam.join()
        await pri.join()
        await fam.wait_state("live")
        t0 = time.monotonic()
        await asyncio.sleep(4.5)
        node_a.send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, node_a.wait, 20)
        await fam.close(leave=False)
        await pri.close(leave=False)

        (row,) = rows(tmp_path / "relay.sqlite")
        assert (row.status, row.node, row.segment) == ("recording", "node-a", 1)
        staff = await staff_login(base_b)

        async def interrupted():
            async with staff.get(f"{base_b}/api/recordings/{row.id}") as r:
                assert r.status == 200, await r.text()
                body = await r.json()
            return body if body["status"] == "interrupted" else None

        # B notices A's heartbeat stopped (stale after 3 s, looked at every 0.5 s)
        shown = await until(interrupted, 20.0, "node B never marked the recording interrupted")
        assert shown["segment"] == 1 and shown["complete"] is False
        assert "path" not in shown and "node" not in shown

        raw = FolderStorage(shared / "recordings").open(row.path).read()
        assert shown["size"] == len(raw) and shown["sha256"] == hashlib.sha256(raw).hexdigest()
        with pytest.raises(TruncatedRecording):
            decrypt_bytes(raw, bytes.fromhex(KEY_HEX))
        plain, result = decrypt_bytes(raw, bytes.fromhex(KEY_HEX), allow_truncated=True)
        assert not result.complete and result.chunks >= 3
        async with staff.get(f"{base_b}/api/recordings/{row.id}/media") as r:
            assert r.status == 200 and r.headers["X-Recording-Status"] == "interrupted"
            served = await r.read()
        assert served == plain, "node B serves every chunk that verifies, nothing more"
        streams, packets = demux(served)
        assert [s["codec"] for s in streams] == ["vp8", "opus", "vp8", "opus"]
        span = max(seconds(p[-1]) for p in packets.values()) - min(
            seconds(p[0]) for p in packets.values()
        )
        lived = t_kill - t0
        # lost at worst: the 1 s chunk being filled, the reorder hold and scheduling
        assert lived - 3.0 < span < lived + 1.5, (span, lived)

        # the legs rejoin on B: the same booking's recording goes on as segment 2
        fam2, pri2 = clients("http://127.0.0.1:1", _Tokens(), BOOKING, reconnect=False)
        for client in (fam2, pri2):
            client.ws_url = base_b.replace("http://", "ws://") + "/ws"
        # the same tokens ("family7", "prison7": node B's table too) admit them on B
        try:
            await fam2.join()
            await pri2.join()
            await fam2.wait_state("live")
            await asyncio.sleep(3.0)
            async with staff.get(f"{base_b}/api/recordings?booking_id={BOOKING}") as r:
                assert r.status == 200
                listed = (await r.json())["recordings"]
            assert [(x["segment"], x["status"]) for x in listed] == [
                (1, "interrupted"),
                (2, "recording"),
            ]
        finally:
            await staff.close()
            staff = None
            node_b.send_signal(signal.SIGTERM)  # a drain: B finishes its segment
            await asyncio.get_running_loop().run_in_executor(None, node_b.wait, 30)
            await fam2.close(leave=False)
            await pri2.close(leave=False)
        first, second = rows(tmp_path / "relay.sqlite")
        assert first.status == "interrupted"
        assert (second.segment, second.node, second.status) == (2, "node-b", "complete")
        _plain2, result2 = decrypt_bytes(
            FolderStorage(shared / "recordings").open(second.path).read(), bytes.fromhex(KEY_HEX)
        )
        assert result2.complete and result2.chunks >= 2
    finally:
        if staff is not None:
            await staff.close()
        for proc in (node_a, node_b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        await fam.close(leave=False)
        await pri.close(leave=False)
