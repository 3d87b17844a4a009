"""Issue 21 on the web side: security headers on every HTML response, the Host header and
the same-origin check, and staff watch tokens bound to a live staff session."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from protocol.client import CallClient, JoinError
from relay import keys
from relay.config import Config
from relay.web.origins import Origins
from relay.web.pages import PAGE_HEADERS, STATIC

pytestmark = pytest.mark.timeout(120)


def _html_paths(app: web.Application) -> list[str]:
    """Every plain GET route of the app (later pages included) and every static HTML file."""
    paths = []
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path")
        methods = {route.method for route in resource}
        if path and "GET" in methods and not path.startswith(("/api/", "/ws")):
            paths.append(path)
    paths += [f"/static/{p.name}" for p in sorted(STATIC.glob("*.html"))]
    return paths


async def test_every_html_response_has_the_security_headers(product):
    seen_html = []
    async with aiohttp.ClientSession() as s:
        for path in _html_paths(product.app):
            async with s.get(product.url + path) as r:
                assert r.status < 500, path
                if r.content_type != "text/html":
                    continue
                seen_html.append(path)
                for name, value in PAGE_HEADERS.items():
                    assert r.headers.get(name) == value, (path, name)
    assert {"/join", "/console", "/static/console.html", "/static/family.html"} <= set(seen_html)


@pytest.mark.parametrize(
    "path",
    ["/console", "/api/v1/staff/me", "/healthz", "/ws", "/static/style.css", "/api/recordings"],
)
async def test_a_foreign_host_header_is_refused_everywhere(product, path):
    async with aiohttp.ClientSession() as s:
        async with s.get(product.url + path, headers={"Host": "evil.example"}) as r:
            assert r.status == 421
            assert (await r.json())["error"]["code"] == "unknown_host"
        port = product.url.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.2"):
            async with s.get(product.url + "/healthz", headers={"Host": host}) as r:
                assert r.status == 200, host


def test_allowed_hosts_by_binding():
    loop = Origins(Config())
    assert all(map(loop.host_allowed, ["127.0.0.1:8080", "localhost:9", "[::1]:5", "127.0.0.9"]))
    assert not any(
        map(
            loop.host_allowed,
            ["evil.example", "127.0.0.1.evil.example", "10.0.0.5:8080", "a@127.0.0.1", "x/y", "é"],
        )
    )
    public = Origins(Config(host="0.0.0.0", public_url="https://visits.example.org"))
    assert public.host_allowed("visits.example.org") and public.host_allowed(
        "VISITS.example.org:443"
    )
    assert public.host_allowed("10.0.0.5:8080")  # an IP literal cannot be rebound
    assert not public.host_allowed("evil.example") and not public.host_allowed("localhost")
    one = Origins(Config(host="10.0.0.5", allowed_hosts=("relay-3.internal",)))
    assert one.host_allowed("10.0.0.5:8080") and one.host_allowed("relay-3.internal:8080")
    assert not one.host_allowed("10.0.0.6") and not one.host_allowed("localhost")


def test_origins_compare_scheme_host_and_port():
    o = Origins(Config(allowed_origins=("https://visits.example.org",)))
    assert o.origin_allowed("https://visits.example.org", None)
    assert o.origin_allowed("https://visits.example.org:443", None)
    for bad in (
        "http://visits.example.org",
        "https://visits.example.org:8443",
        "https://evil.example",
        "null",
        "",
    ):
        assert not o.origin_allowed(bad, None), bad
    derived = Origins(Config(port=8443, tls_cert="c"))
    assert derived.origin_allowed("https://127.0.0.1:8443", None)
    assert not derived.origin_allowed("http://127.0.0.1:8443", None)


async def test_same_origin_check_compares_the_scheme(product):
    url = product.url
    port = url.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as s:
        for origin in (
            f"https://127.0.0.1:{port}",
            f"http://127.0.0.1:{int(port) + 1}",
            f"http://localhost:{port}",
        ):
            async with s.post(url + "/api/v1/staff/logout", headers={"Origin": origin}) as r:
                assert r.status == 403, origin
                assert (await r.json())["error"]["code"] == "cross_origin"
        async with s.post(url + "/api/v1/staff/logout", headers={"Origin": url}) as r:
            assert r.status == 200


async def _watch_token(staff: aiohttp.ClientSession, url: str, booking: int) -> str:
    async with staff.post(f"{url}/api/v1/staff/bookings/{booking}/watch-token") as r:
        body = await r.json()
        assert r.status == 200, body
        return body["token"]


async def test_watch_token_lives_only_as_long_as_the_staff_session(product):
    url = product.url
    booking = product.booking_now()
    fam, pri = await product.pair(booking)
    first = await product.staff_session()
    second = await product.staff_session()
    watchers: list[CallClient] = []
    try:
        token = await _watch_token(first, url, booking)
        other = await _watch_token(second, url, booking)
        for t in (token, other):
            watcher = CallClient(url, t, watcher=True, receive="count", reconnect=False)
            watchers.append(watcher)
            await watcher.join()
        live = product.app[keys.REGISTRY].get(booking)
        assert len(live.call.watchers) == 2
        async with first.post(f"{url}/api/v1/staff/logout") as r:
            assert r.status == 200
        # the first session's watcher is told why and closed; the second keeps watching
        closed = await watchers[0].wait_for(
            lambda x: x["type"] == "error" and x["code"] == "session_ended", 10
        )
        assert "log in again" in closed["message"]
        for _ in range(100):
            if len(live.call.watchers) == 1:
                break
            await asyncio.sleep(0.1)
        assert len(live.call.watchers) == 1
        assert not any(x["type"] == "error" for x in watchers[1].messages)
        # and its token no longer admits anyone
        again = CallClient(url, token, watcher=True, receive="count", reconnect=False)
        watchers.append(again)
        with pytest.raises(JoinError) as refused:
            await again.join()
        assert refused.value.code == "session_ended"
    finally:
        for client in (*watchers, fam, pri):
            await client.close()
        await first.close()
        await second.close()
