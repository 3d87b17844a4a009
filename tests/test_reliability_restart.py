"""kill -9 of the relay mid-call, restarted on the same port and data dir: the legs rejoin by
themselves (``CallClient`` auto-rejoin) and the call continues with its original end time.

Contract for restart recovery (being built in relay/): the audit trail shows a
``relay_restart`` record, the call keeps its ``ends_at``, media flows both ways again.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import aiohttp
import pytest

from bench.scenarios import clients_for, flowing
from relay.records.audit import verify
from tests.test_recording_crash import ROOT, _free_port, _wait_healthy


def _start(tmp_path, port: int, seed: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RELAY_DATA_DIR": str(tmp_path / "data"),
           "RELAY_RECORDINGS_DIR": str(tmp_path / "data" / "recordings"),
           "RELAY_PORT": str(port), "RELAY_VISION_ENABLED": "0",
           "RELAY_SEED_DEMO": "1" if seed else "0", "RELAY_RECONNECT_GRACE_S": "30"}
    with open(tmp_path / "stdout", "ab") as out, open(tmp_path / "stderr", "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "relay"], cwd=ROOT, env=env,
                                stdout=out, stderr=err)


@pytest.mark.timeout(120)
async def test_kill_9_and_restart_calls_continue_with_original_end(tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path, port, seed=True)
    clients = []
    try:
        await _wait_healthy(base, proc)
        banner = (tmp_path / "stdout").read_text()
        family_token = re.search(r"/join\?token=(\S+)", banner).group(1)
        laptop_id = int(re.search(r"--laptop-id (\d+)", banner).group(1))
        laptop_secret = re.search(r"--laptop-secret (\S+)", banner).group(1)
        booking = int(re.search(r"--booking (\d+)", banner).group(1))
        async with aiohttp.ClientSession() as s, s.post(base + "/api/v1/laptop/token", json={
                "laptop_id": laptop_id, "laptop_secret": laptop_secret,
                "booking_id": booking}) as r:
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
        proc = _start(tmp_path, port, seed=False)
        await _wait_healthy(base, proc)

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (fam.joins >= 2 and pri.joins >= 2):
            await asyncio.sleep(0.2)
        assert fam.joins >= 2 and pri.joins >= 2, "the clients did not rejoin by themselves"
        assert fam.joined["call"]["ends_at"] == ends_at
        assert pri.joined["call"]["ends_at"] == ends_at
        await asyncio.sleep(2.0)
        assert await flowing(fam, "video0", 1.0) > 15
        assert await flowing(pri, "video0", 1.0) > 15
        conn = sqlite3.connect(tmp_path / "data" / "relay.sqlite")
        try:
            assert verify(conn).ok
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            kinds = [k for (k,) in conn.execute(
                "SELECT kind FROM audit WHERE booking_id = ? ORDER BY id", (booking,))]
        finally:
            conn.close()
        assert "relay_restart" in kinds, kinds
    finally:
        for c in clients:
            await c.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.get_running_loop().run_in_executor(None, proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
