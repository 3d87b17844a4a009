"""Two relay nodes in one process on a real redis-server: the family page, opened from node
A, follows ``moved`` to node B, which runs the call (call.js; the page's CSP lets its socket
reach the other node and no other address), and exchanges media with a Python prison leg
that entered at node A too. With Redis gone, a joining leg is refused with a code, not a
traceback (fail closed)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from protocol.client import CallClient, JoinError, ws_url_for
from protocol.media import EncodedTrack
from relay import auth, keys
from relay.app import build_app
from relay.config import Config
from tests.browser import chromium, wait_decoding_video
from tests.redis_server import free_port, redis_server
from tests.support import TokenTable, admission, tone_clip, video_clip


def _node(tmp_path, name: str, redis_url: str, tokens: TokenTable) -> TestServer:
    port = free_port()
    config = Config(
        data_dir=tmp_path / name,
        recordings_dir=tmp_path / name / "recordings",
        seed_demo=False,
        vision_enabled=False,
        recording_enabled=False,
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        redis_url=redis_url,
        node_id=name,
    )
    return TestServer(build_app(config, admit=tokens), host="127.0.0.1", port=port)


async def _until_known(server: TestServer, node_id: str, timeout: float = 15.0) -> None:
    """Wait for ``server``'s node to have read ``node_id``'s entry (one refresh, 2 s)."""
    directory = server.app[keys.CLUSTER].directory
    deadline = time.monotonic() + timeout
    while node_id not in directory.known:
        assert time.monotonic() < deadline, f"{node_id} never appeared in the nodes hash"
        await asyncio.sleep(0.1)


async def test_family_page_follows_moved_to_the_node_that_runs_the_call(tmp_path):
    tokens = TokenTable()
    tokens.add("fam-m", admission(61, "family"))
    tokens.add("pri-m", admission(61, "prison"))
    with redis_server(tmp_path / "redis") as redis_url:
        a, b = _node(tmp_path, "a", redis_url, tokens), _node(tmp_path, "b", redis_url, tokens)
        await a.start_server()
        await b.start_server()
        await _until_known(a, "b")  # node A's page may name node B's socket only once seen
        redis = Redis.from_url(redis_url, decode_responses=True)
        prison = CallClient(
            f"http://127.0.0.1:{a.port}",
            "pri-m",
            receive="count",
            video=EncodedTrack("video", video_clip(seed=3), 30),
            audio=EncodedTrack("audio", tone_clip(500), 50),
        )
        try:
            await redis.hset("relay:placement", "61", "b")  # the call runs on node B
            async with chromium() as browser:
                page = await browser.new_page()
                response = await page.goto(f"http://127.0.0.1:{a.port}/join?token=fam-m")
                csp = await response.header_value("content-security-policy")
                assert f"ws://127.0.0.1:{b.port}" in csp
                await page.wait_for_function(
                    "window.__call && window.__call.joins === 1", timeout=20000
                )
                assert await page.evaluate("window.__call.nodeUrl") == ws_url_for(
                    f"http://127.0.0.1:{b.port}"
                )
                await prison.join()
                assert prison.ws_url == ws_url_for(f"http://127.0.0.1:{b.port}")
                assert 61 in b.app[keys.REGISTRY].calls and 61 not in a.app[keys.REGISTRY].calls
                await prison.wait_frames("video0", 30, timeout=30)
                await wait_decoding_video(page, 30)
                assert await page.text_content("#banner") == "Connected"
            async with aiohttp.ClientSession() as http:  # node-level gauges only
                async with http.get(f"http://127.0.0.1:{a.port}/metrics") as r:
                    text = await r.text()
            assert "relay_cluster_nodes_live 2.0" in text
            assert "relay_cluster_redis_up 1.0" in text
        finally:
            await prison.close()
            await redis.aclose()
            await a.close()
            await b.close()


@pytest.mark.timeout(60)
async def test_redis_down_refuses_a_join_with_a_code_not_a_traceback(tmp_path, caplog):
    tokens = TokenTable()
    tokens.add("fam-d", admission(62, "family"))
    node = _node(tmp_path, "d", f"redis://127.0.0.1:{free_port()}/0", tokens)
    await node.start_server()
    client = CallClient(
        f"http://127.0.0.1:{node.port}",
        "fam-d",
        receive="count",
        video=EncodedTrack("video", video_clip(seed=1), 30),
        reconnect=False,
    )
    try:
        with caplog.at_level(logging.INFO), pytest.raises(JoinError) as refused:
            await client.join()
        assert refused.value.code == "cluster_unavailable"
        assert 62 not in node.app[keys.REGISTRY].calls
        assert "Traceback" not in caplog.text
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{node.port}/readyz") as r,
        ):
            assert r.status == 503 and "redis unreachable" in await r.text()
    finally:
        await client.close()
        await node.close()


async def test_a_staff_logout_on_one_node_closes_its_watcher_on_another(tmp_path):
    """A watch token is only as good as the session that asked for it, on every node."""
    tokens = TokenTable()
    with redis_server(tmp_path / "redis") as redis_url:
        a, b = _node(tmp_path, "a", redis_url, tokens), _node(tmp_path, "b", redis_url, tokens)
        await a.start_server()
        await b.start_server()
        store = a.app[keys.STORE]
        est = store.create_establishment("HMP Logout", time.time())
        store.add_staff(est, "officer_l", "correct horse battery staple", "officer")
        redis = Redis.from_url(redis_url, decode_responses=True)
        watcher = None
        jar = aiohttp.CookieJar(unsafe=True)
        try:
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                api = f"http://127.0.0.1:{a.port}/api/v1"
                creds = {"username": "officer_l", "password": "correct horse battery staple"}
                async with http.post(api + "/staff/login", json=creds) as r:
                    assert r.status == 200, await r.text()
                cookie = next(c.value for c in jar if c.key == "relay_staff")
                ref = auth.session_ref(cookie)
                tokens.add(
                    "watch-l",
                    replace(
                        admission(63, "watcher", participant="staff:1", approved_faces=0),
                        session_ref=ref,
                    ),
                )
                await redis.hset("relay:placement", "63", "b")
                watcher = CallClient(
                    f"http://127.0.0.1:{a.port}",
                    "watch-l",
                    watcher=True,
                    receive="count",
                    reconnect=False,
                )
                await watcher.join()
                assert watcher.ws_url == ws_url_for(f"http://127.0.0.1:{b.port}")
                async with http.post(api + "/staff/logout") as r:
                    assert r.status == 200
                told = await watcher.wait_for(lambda m: m.get("code") == "session_ended", 10)
                assert "log in again" in told["message"]
        finally:
            if watcher is not None:
                await watcher.close()
            await redis.aclose()
            await a.close()
            await b.close()
