"""Operations: /metrics during a live call, health endpoints, structured logs without secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import subprocess

import aiohttp
import pytest

from relay import keys
from relay.logs import JsonFormatter


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def scrape(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url + "/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return await r.text()


async def test_metrics_move_during_a_call_and_stop_while_paused(product, tmp_path):
    b = product.booking_now()
    fam, pri = await product.pair(b)
    staff = await product.staff_session()
    session = aiohttp.ClientSession()
    try:
        await pri.wait_frames("video0", 15)
        m1 = await scrape(session, product.url)
        await asyncio.sleep(1.0)
        m2 = await scrape(session, product.url)
        for d in ("family_to_prison", "prison_to_family"):
            moved = (sample(m2, "relay_media_packets_forwarded_total", kind="video", direction=d)
                     - sample(m1, "relay_media_packets_forwarded_total", kind="video", direction=d))
            assert moved > 20, f"{d}: forwarded video packets should move ({moved})"
        assert sample(m2, "relay_calls", state="live") == 1
        assert sample(m2, "relay_legs_connected", role="family") >= 1
        assert sample(m2, "relay_forward_latency_seconds_count") > 0
        async with staff.post(f"{product.url}/api/v1/staff/calls/{b}/pause") as r:
            assert r.status == 200
        await fam.wait_state("paused")
        await asyncio.sleep(0.3)
        p1 = await scrape(session, product.url)
        await asyncio.sleep(1.0)
        p2 = await scrape(session, product.url)
        for kind in ("video", "audio"):
            assert (sample(p2, "relay_media_packets_forwarded_total", kind=kind)
                    == sample(p1, "relay_media_packets_forwarded_total", kind=kind))
            assert (sample(p2, "relay_media_packets_withheld_total", kind=kind)
                    > sample(p1, "relay_media_packets_withheld_total", kind=kind))
        assert sample(p2, "relay_call_pauses_total", reason="staff") >= 1
        assert sample(p2, "relay_calls", state="paused") == 1
        # no per-call or per-person label values anywhere
        assert not re.search(r'(booking|call_id|participant|visitor)="', p2)
        # the exposition is valid Prometheus text
        promtool = shutil.which("promtool")
        if promtool is None:
            pytest.fail("promtool is required (Debian package prometheus; .ci/run installs it)")
        check = subprocess.run([promtool, "check", "metrics"], input=p2, text=True,
                               capture_output=True, timeout=60)
        problems = [line for line in (check.stdout + check.stderr).splitlines()
                    if line.strip() and "no help text" not in line]
        assert check.returncode == 0 or not problems, check.stdout + check.stderr
    finally:
        await session.close()
        await staff.close()
        await fam.close()
        await pri.close()


async def test_health_and_readiness(product):
    async with aiohttp.ClientSession() as s:
        async with s.get(product.url + "/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "alive"
        async with s.get(product.url + "/readyz") as r:
            assert r.status == 200 and (await r.json())["ready"] is True
        product.app[keys.REGISTRY].accepting = False
        async with s.get(product.url + "/readyz") as r:
            assert r.status == 503 and "shutting down" in (await r.json())["problems"]
        product.app[keys.REGISTRY].accepting = True


async def test_logs_are_json_with_call_ids_and_no_secrets(product, caplog):
    caplog.set_level(logging.INFO)
    b = product.booking_now()
    fam_token = await product.family_token(b)
    fam, pri = await product.pair(b)
    try:
        await fam.wait_state("live")
    finally:
        await fam.close()
        await pri.close()
    await asyncio.sleep(0.3)
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records]
    entries = [json.loads(line) for line in lines]
    assert any(e.get("call_id") == b and e.get("leg") in ("family", "prison") for e in entries)
    text = "\n".join(lines)
    assert fam_token not in text and fam_token.split(".")[-1] not in text
    assert "correct horse" not in text
    # even a message that carries a token is masked by the formatter
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET /join?token=%s", (fam_token,), None)
    assert fam_token not in formatter.format(record)
