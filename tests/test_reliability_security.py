"""Security: HTTPS/WSS with a configured certificate, console cookie and same-origin rules,
secrets never in the logs, dependencies pinned."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from bench.scenarios import clients_for, flowing
from protocol import messages as m
from protocol.client import CallClient
from relay import tls
from tests.test_recording_crash import ROOT, _free_port
from tests.test_store_world import PASSWORD


def test_self_signed_certificate_for_loopback(tmp_path):
    cert_path, key_path = tls.generate(tmp_path / "tls")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(map(str, sans.get_values_for_type(x509.IPAddress))) == {"127.0.0.1", "::1"}
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    out = subprocess.run([sys.executable, "-m", "relay.tls", "--out", str(tmp_path / "cli")],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0 and (tmp_path / "cli" / "cert.pem").exists()


async def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.get_running_loop().run_in_executor(None, proc.wait, 20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(120)
async def test_relay_over_https_and_wss_and_no_secret_in_its_logs(tmp_path):
    """``python -m relay`` with RELAY_TLS_CERT/KEY: a call over wss with a client that trusts
    the development certificate; untrusting clients and plain HTTP get nowhere; a call, bad
    tokens and a wrong password leave no secret in the logs."""
    cert, key = tls.generate(tmp_path / "tls")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RELAY_DATA_DIR": str(tmp_path / "data"),
           "RELAY_RECORDINGS_DIR": str(tmp_path / "data" / "recordings"),
           "RELAY_PORT": str(port), "RELAY_VISION_ENABLED": "0", "RELAY_TLS_CERT": str(cert),
           "RELAY_TLS_KEY": str(key), "RELAY_SEED_DEMO": "1"}
    out, err = open(tmp_path / "stdout", "wb"), open(tmp_path / "stderr", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "relay"], cwd=ROOT, env=env,
                            stdout=out, stderr=err)
    base = f"https://127.0.0.1:{port}"
    trust = tls.client_context(cert)
    clients: list[CallClient] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while b"Demo call" not in (tmp_path / "stdout").read_bytes():
            assert proc.poll() is None and asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
        banner = (tmp_path / "stdout").read_text()
        family_token = re.search(r"/join\?token=(\S+)", banner).group(1)
        laptop_id = int(re.search(r"--laptop-id (\d+)", banner).group(1))
        laptop_secret = re.search(r"--laptop-secret (\S+)", banner).group(1)
        booking = int(re.search(r"--booking (\d+)", banner).group(1))
        staff_password = re.search(r"password (\S+)", banner).group(1)
        connector = aiohttp.TCPConnector(ssl=trust)
        async with aiohttp.ClientSession(connector=connector) as s:
            await _wait_until(s, base + "/healthz")
            async with s.post(base + "/api/v1/laptop/token", json={
                    "laptop_id": laptop_id, "laptop_secret": laptop_secret,
                    "booking_id": booking}) as r:
                assert r.status == 200
                prison_token = (await r.json())["token"]
            # the console cookie over TLS: Secure, HttpOnly, SameSite=Strict
            async with s.post(base + "/api/v1/staff/login",
                              json={"username": "staff", "password": staff_password}) as r:
                assert r.status == 200
                cookie = r.headers["Set-Cookie"]
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
            async with s.get(f"{base}/join?token={family_token}") as r:
                assert r.status == 200  # the family's page: its URL carries the token
            async with s.post(base + "/api/v1/staff/login",
                              json={"username": "staff", "password": "wrong-" + staff_password}) as r:
                assert r.status == 401
            for i in range(3):
                async with s.ws_connect(base.replace("https", "wss") + "/ws") as ws:
                    await ws.send_str(m.make("join", token=family_token[:-4] + f"AAA{i}", sdp="v=0"))
                    reply = json.loads((await ws.receive(timeout=5)).data)
                    assert reply["type"] == "error"
        # nobody trusts a self-signed certificate by default; plain HTTP is not served
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await s.get(base + "/healthz")
            with pytest.raises(aiohttp.ClientError):
                await s.get(f"http://127.0.0.1:{port}/healthz")
        fam, pri = clients_for(base, family_token, prison_token)
        clients += [fam, pri]
        for c in clients:
            assert c.ws_url.startswith("wss://")
            c._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust))
        await fam.join()
        await pri.join()
        await pri.wait_frames("video0", 10)
        assert await flowing(fam, "video0", 1.0) > 15
        await fam.close()
        await pri.close()
        clients.clear()
    finally:
        for c in clients:
            await c.close()
        await _stop(proc)
        out.close()
        err.close()
    logs = (tmp_path / "stderr").read_text()
    assert '"leg joined"' in logs or "leg joined" in logs, logs[-2000:]
    secrets = {"family token": family_token, "prison token": prison_token,
               "laptop secret": laptop_secret, "staff password": staff_password,
               "token secret": (tmp_path / "data" / "secret.key").read_text().strip(),
               "session cookie": cookie.split(";")[0].split("=", 1)[1]}
    for name, value in secrets.items():
        assert value and value not in logs, f"the {name} appears in the relay's logs"
        for part in value.split("."):
            if len(part) >= 16:
                assert part not in logs, f"part of the {name} appears in the relay's logs"
    for line in logs.splitlines():
        json.loads(line)  # structured logs only


async def _wait_until(s: aiohttp.ClientSession, url: str) -> None:
    for _ in range(100):
        try:
            async with s.get(url) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientConnectorError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError(url)


async def test_console_cookie_and_same_origin(product):
    url = product.url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(url + "/api/v1/staff/login",
                          json={"username": "officer_a", "password": PASSWORD}) as r:
            cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain-HTTP development only; TLS sets it (test above)
        b = product.booking_now()
        host = url.split("//", 1)[1]
        # a browser on another site, even with the cookie, cannot change anything
        for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                        {"Sec-Fetch-Site": "cross-site"},
                        {"Origin": f"http://{host}.evil.example"}):
            async with s.post(f"{url}/api/v1/staff/calls/{b}/end", headers=headers) as r:
                assert r.status == 403, headers
                assert (await r.json())["error"]["code"] == "cross_origin"
            async with s.post(f"{url}/api/recordings/1/hold", headers=headers, json={}) as r:
                assert r.status == 403, headers
        async with s.post(f"{url}/api/v1/staff/logout",
                          headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403
        # its own pages (same origin) and non-browser clients (no Origin) still work
        async with s.post(f"{url}/api/v1/staff/bookings/{b}/watch-token",
                          headers={"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}) as r:
            assert r.status != 403, await r.text()
        async with s.get(f"{url}/api/v1/staff/me", headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 200  # reads are guarded by CORS (no ACAO header) and the cookie
            assert "Access-Control-Allow-Origin" not in r.headers
    async with aiohttp.ClientSession() as s, s.get(url + "/console") as r:
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_lock_pins_every_package():
    lock = (Path(__file__).resolve().parent.parent / "requirements.lock").read_text()
    entries = [ln.strip() for ln in lock.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(entries) > 20
    loose = [e for e in entries if not re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[A-Za-z0-9_.+!\-]+", e)]
    assert not loose, f"not pinned with ==: {loose}"
    names = {re.split(r"[=\[]", e)[0].lower().replace("_", "-") for e in entries}
    for needed in ("aiohttp", "aiortc", "aioice", "cryptography", "av", "argon2-cffi"):
        assert needed in names, needed
