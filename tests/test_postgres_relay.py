"""The whole relay on PostgreSQL (``RELAY_DATABASE_URL``): ``python -m relay`` starts,
migrates, seeds the demo and serves a call; after ``kill -9`` a restarted relay carries the
call on with its end time, and the audit chain in PostgreSQL verifies. The URL's password
never reaches the output, and no SQLite file is made."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

import aiohttp
import pytest

from bench.scenarios import clients_for, flowing
from relay.records.audit import verify
from relay.records.store.engine import open_database
from tests.test_recording_crash import ROOT, _free_port, _wait_healthy

PASSWORD = "pg-pass-never-logged"  # trust auth ignores it; it must not be printed anywhere


def _with_password(url: str) -> str:
    return url.replace("postgresql://relay@", f"postgresql://relay:{PASSWORD}@")


def _start(tmp_path, port: int, url: str, seed: bool) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RELAY_DATA_DIR": str(tmp_path / "data"),
        "RELAY_RECORDINGS_DIR": str(tmp_path / "data" / "recordings"),
        "RELAY_PORT": str(port),
        "RELAY_VISION_ENABLED": "0",
        "RELAY_DATABASE_URL": url,
        "RELAY_SEED_DEMO": "1" if seed else "0",
        "RELAY_RECONNECT_GRACE_S": "30",
    }
    with open(tmp_path / "stdout", "ab") as out, open(tmp_path / "stderr", "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "relay"], cwd=ROOT, env=env, stdout=out, stderr=err
        )


async def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.get_running_loop().run_in_executor(None, proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(180)
async def test_relay_on_postgres_serves_survives_kill_9_and_keeps_the_chain(tmp_path, pg_url):
    url = _with_password(pg_url)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path, port, url, seed=True)
    clients = []
    try:
        await _wait_healthy(base, proc, timeout=60)
        banner = (tmp_path / "stdout").read_text()
        family_token = re.search(r"/join\?token=(\S+)", banner).group(1)
        laptop_id = int(re.search(r"--laptop-id (\d+)", banner).group(1))
        laptop_secret = re.search(r"--laptop-secret (\S+)", banner).group(1)
        booking = int(re.search(r"--booking (\d+)", banner).group(1))
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/readyz") as r:
                assert r.status == 200, await r.text()
            async with s.post(
                base + "/api/v1/laptop/token",
                json={
                    "laptop_id": laptop_id,
                    "laptop_secret": laptop_secret,
                    "booking_id": booking,
                },
            ) as r:
                prison_token = (await r.json())["token"]
        fam, pri = clients_for(base, family_token, prison_token)
        clients = [fam, pri]
        await fam.join()
        await pri.join()
        await fam.wait_state("live")
        await pri.wait_frames("video0", 10)
        ends_at = fam.joined["call"]["ends_at"]

        proc.send_signal(signal.SIGKILL)
        await asyncio.get_running_loop().run_in_executor(None, proc.wait, 20)
        await asyncio.sleep(1.0)
        proc = _start(tmp_path, port, url, seed=False)
        await _wait_healthy(base, proc, timeout=60)

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (fam.joins >= 2 and pri.joins >= 2):
            await asyncio.sleep(0.2)
        assert fam.joins >= 2 and pri.joins >= 2, "the clients did not rejoin by themselves"
        assert fam.joined["call"]["ends_at"] == ends_at
        await asyncio.sleep(2.0)
        assert await flowing(fam, "video0", 1.0) > 15
        assert await flowing(pri, "video0", 1.0) > 15
    finally:
        for c in clients:
            await c.close()
        await _stop(proc)

    db = open_database(pg_url)
    try:
        assert verify(db).ok
        kinds = [
            r[0]
            for r in db.execute(
                "SELECT kind FROM audit WHERE booking_id = ? ORDER BY id", (booking,)
            )
        ]
        assert "relay_restart" in kinds, kinds
    finally:
        db.close()
    cli = [sys.executable, "-m", "relay.records.audit", "verify", "--db", url]
    done = subprocess.run(
        cli,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0 and "audit trail intact" in done.stdout, done.stderr
    output = (tmp_path / "stdout").read_text() + (tmp_path / "stderr").read_text()
    output += done.stdout + done.stderr
    assert PASSWORD not in output
    assert "store opened: postgresql 127.0.0.1:" in output
    assert not list((tmp_path / "data").glob("*.sqlite*")), "a SQLite file was made"


async def test_staff_work_a_call_through_the_api_on_postgres(pg_product):
    from relay import keys

    product = pg_product
    b = product.booking_now()
    fam, pri = await product.pair(b)
    admin = await product.staff_session("admin_a")
    api = f"{product.url}/api/v1"
    try:
        await fam.wait_state("live")
        async with admin.post(f"{api}/staff/calls/{b}/pause", json={"note": "check"}) as r:
            assert r.status == 200 and (await r.json())["state"] == "paused"
        await fam.wait_state("paused")
        async with admin.post(f"{api}/staff/calls/{b}/resume") as r:
            assert (await r.json())["state"] == "live"
        await fam.wait_state("live")
        new = {"number": "p9999pp", "name": "Pat New"}
        async with admin.post(f"{api}/staff/prisoners", json=new) as r:
            assert r.status == 201, await r.text()
        async with admin.post(f"{api}/staff/prisoners", json=new) as r:
            assert r.status == 409 and (await r.json())["error"]["code"] == "prisoner_number_taken"
        async with admin.get(f"{api}/staff/bookings") as r:
            assert b in [x["id"] for x in (await r.json())["bookings"]]
        async with admin.post(f"{api}/staff/calls/{b}/end") as r:
            assert (await r.json())["state"] == "ended"
        await fam.wait_state("ended")
    finally:
        await admin.close()
        await fam.close()
        await pri.close()
    kinds = [r["kind"] for r in product.app[keys.AUDIT_LOG].for_booking(b)]
    assert {"join", "staff_pause", "staff_resume", "staff_end"} <= set(kinds)
    assert verify(product.world.store.connection).ok
    assert product.world.store.booking(b).status == "completed"
