"""TURN through a real coturn on loopback (issue 17): REST credentials, the Python client and
Chromium forced to relayed candidates only, over UDP, TCP and TLS (``turns:``), and clients
that do not trust the TURN server's certificate getting no relay at all."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ssl
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from protocol.aiortc_glue import selected_candidate_types, selected_turn_tls
from protocol.client import CallClient, JoinError
from protocol.media import EncodedTrack
from relay import turn
from relay.app import build_app
from relay.config import Config
from tests.browser import chromium, trust_certificate_flag, wait_decoding_video
from tests.coturn import coturn
from tests.support import TokenTable, admission, tone_clip, video_clip

SECRET = "test-turn-secret"


@contextlib.asynccontextmanager
async def relay_with(config: Config, tokens: TokenTable) -> AsyncIterator[TestServer]:
    server = TestServer(build_app(config, admit=tokens), host="127.0.0.1")
    await server.start_server()
    server.base_url = str(server.make_url("")).rstrip("/")
    try:
        yield server
    finally:
        await server.close()


def turn_urls(port: int) -> tuple[str, ...]:
    return (f"turn:127.0.0.1:{port}?transport=udp", f"turn:127.0.0.1:{port}?transport=tcp")


def test_rest_credential_is_coturns_and_ends_with_the_slot(config):
    username, password = turn.rest_credential(b"s3cret", "visitor:7", 1_900_000_000)
    assert username == "1900000000:visitor:7"
    expected = hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(password) == expected
    now = time.time()
    cfg = config.replace(turn_urls=("turn:t.example:3478?transport=udp",), turn_secret="k")
    (server,) = turn.ice_servers(cfg, b"k", "visitor:7", now + 600, now)
    assert int(server["username"].split(":")[0]) == int(now + 600)  # the slot's end, not the TTL
    (server,) = turn.ice_servers(
        cfg.replace(turn_credential_ttl_s=60), b"k", "visitor:7", now + 600, now
    )
    assert int(server["username"].split(":")[0]) == int(now + 60)
    assert server["urls"] == ["turn:t.example:3478?transport=udp"]


def test_secret_file_is_generated_once_private(config):
    assert turn.load_turn_secret(config) == b""  # no TURN configured: nothing made
    assert not (config.data_dir / turn.SECRET_FILE).exists()
    cfg = config.replace(turn_urls=("turn:127.0.0.1:3478",))
    first = turn.load_turn_secret(cfg)
    path = config.data_dir / turn.SECRET_FILE
    assert len(first) == 64 and path.stat().st_mode & 0o777 == 0o600
    assert turn.load_turn_secret(cfg) == first


async def test_no_ice_servers_by_default_and_bad_token_refused(relay, tokens):
    tokens.add("fam-n", admission(70, "family"))
    family = CallClient(
        relay.base_url, "fam-n", turn="udp", video=EncodedTrack("video", video_clip(seed=1), 30)
    )
    try:
        joined = await family.join()
        assert family.ice == {
            "type": "ice_servers",
            "v": 1,
            "ice_servers": [],
            "ice_transport_policy": "all",
        }
        assert joined["ice_servers"] == [] and joined["ice_transport_policy"] == "all"
    finally:
        await family.close()
    stranger = CallClient(relay.base_url, "not-a-token", turn="udp", reconnect=False)
    with pytest.raises(JoinError) as refused:
        await stranger.join()
    assert refused.value.code == "token_bad_signature"
    await stranger.close()


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_python_client_joins_through_coturn_relay_only(config, tokens, transport):
    tokens.add("fam-t", admission(71, "family", participant="visitor:9"))
    tokens.add("pri-t", admission(71, "prison", participant="laptop:1"))
    async with coturn(SECRET, with_tls=transport == "tls") as running:
        urls = turn_urls(running.port)
        trust = None
        if running.tls_port is not None:
            urls += (f"turns:127.0.0.1:{running.tls_port}?transport=tcp",)
            trust = ssl.create_default_context(cafile=str(running.ca))  # the test CA only
        cfg = config.replace(turn_urls=urls, turn_secret=SECRET, ice_relay_only=True)
        async with relay_with(cfg, tokens) as relay:
            family = CallClient(
                relay.base_url,
                "fam-t",
                turn=transport,
                turn_tls=trust,
                receive="count",
                video=EncodedTrack("video", video_clip(seed=2), 30),
                audio=EncodedTrack("audio", tone_clip(440), 50),
            )
            prison = CallClient(
                relay.base_url,
                "pri-t",
                receive="count",
                video=EncodedTrack("video", video_clip(seed=3), 30),
                audio=EncodedTrack("audio", tone_clip(550), 50),
            )
            try:
                await family.join()
                (server,) = family.ice["ice_servers"]
                assert server["urls"] == list(urls)
                expiry, participant = server["username"].split(":", 1)
                assert participant == "visitor:9"
                assert int(expiry) <= tokens.table["fam-t"].ends_at
                assert "typ relay" in family._pc.localDescription.sdp
                assert "typ host" not in family._pc.localDescription.sdp
                await prison.join()
                await family.wait_frames("video0", 30, timeout=40)
                await prison.wait_frames("video0", 30, timeout=40)
                await family.wait_frames("audio0", 30, timeout=40)
                await prison.wait_frames("audio0", 30, timeout=40)
                assert selected_candidate_types(family._pc) == ["relay"]
                (tls_version,) = selected_turn_tls(family._pc)
                if transport == "tls":  # the media's allocation is the one made over TLS
                    assert tls_version in ("TLSv1.2", "TLSv1.3")
                else:
                    assert tls_version is None
            finally:
                await family.close()
                await prison.close()


async def test_python_client_that_does_not_trust_the_turns_certificate_gets_no_relay(
    config, tokens, monkeypatch
):
    """The certificate check is real: with Python's default trust (no test CA), the TLS
    handshake to coturn fails, so a relay-only client has no candidate at all."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tokens.add("fam-u", admission(73, "family", participant="visitor:5"))
    async with coturn(SECRET, with_tls=True) as running:
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("127.0.0.1", running.tls_port, ssl=True)
        trusted = ssl.create_default_context(cafile=str(running.ca))
        _, writer = await asyncio.open_connection("127.0.0.1", running.tls_port, ssl=trusted)
        writer.close()
        urls = (f"turns:127.0.0.1:{running.tls_port}?transport=tcp",)
        cfg = config.replace(turn_urls=urls, turn_secret=SECRET, ice_relay_only=True)
        async with relay_with(cfg, tokens) as relay:
            family = CallClient(
                relay.base_url,
                "fam-u",
                turn="tls",
                receive="count",
                video=EncodedTrack("video", video_clip(seed=4), 30),
                reconnect=False,
            )
            try:
                await family.join()
                assert family.ice["ice_servers"][0]["urls"] == list(urls)
                assert "a=candidate" not in family._pc.localDescription.sdp
            finally:
                await family.close()


SELECTED_PAIR_JS = """async () => {
    const stats = await window.__call.pc.getStats();
    let transport = null;
    stats.forEach((s) => { if (s.type === 'transport') transport = s; });
    const pair = stats.get(transport.selectedCandidatePairId);
    const local = stats.get(pair.localCandidateId);
    return {type: local.candidateType, relayProtocol: local.relayProtocol,
            policy: window.__call.pc.getConfiguration().iceTransportPolicy};
}"""


async def _family_page_pair(relay, family: str, prison_token: str, seed: int,
                            flags: list[str] | None = None) -> dict:
    """The family page joins with ``family``'s token, a Python prison leg with
    ``prison_token``; once media flows both ways, the page's selected candidate pair."""
    prison = CallClient(
        relay.base_url,
        prison_token,
        receive="count",
        video=EncodedTrack("video", video_clip(seed=seed), 30),
        audio=EncodedTrack("audio", tone_clip(400 + 20 * seed), 50),
    )
    async with chromium(flags) as browser:
        page = await browser.new_page()
        await page.goto(f"{relay.base_url}/join?token={family}")
        await page.wait_for_function("window.__call && window.__call.joins === 1", timeout=30000)
        await prison.join()
        try:
            await prison.wait_frames("video0", 30, timeout=40)
            await prison.wait_frames("audio0", 30, timeout=40)
            await wait_decoding_video(page, 30, timeout_ms=40000)
            return await page.evaluate(SELECTED_PAIR_JS)
        finally:
            await prison.close()


async def test_chromium_family_page_joins_over_turn_tcp_relay_only(config, tokens):
    tokens.add("fam-c", admission(72, "family", participant="visitor:4"))
    tokens.add("pri-c", admission(72, "prison"))
    async with coturn(SECRET) as running:
        urls = (f"turn:127.0.0.1:{running.port}?transport=tcp",)  # TCP only: UDP to coturn unused
        cfg = config.replace(turn_urls=urls, turn_secret=SECRET, ice_relay_only=True)
        async with relay_with(cfg, tokens) as relay:
            pair = await _family_page_pair(relay, "fam-c", "pri-c", seed=5)
    assert pair == {"type": "relay", "relayProtocol": "tcp", "policy": "relay"}


async def test_chromium_family_page_joins_over_turns_relay_only(config, tokens):
    """TURN over TLS from the family page: Chromium checks the TURN server's certificate
    itself, so it is told to accept exactly this test certificate's key."""
    tokens.add("fam-s", admission(74, "family", participant="visitor:6"))
    tokens.add("pri-s", admission(74, "prison"))
    async with coturn(SECRET, with_tls=True) as running:
        urls = (f"turns:127.0.0.1:{running.tls_port}?transport=tcp",)
        cfg = config.replace(turn_urls=urls, turn_secret=SECRET, ice_relay_only=True)
        async with relay_with(cfg, tokens) as relay:
            flags = [trust_certificate_flag(running.ca)]
            pair = await _family_page_pair(relay, "fam-s", "pri-s", seed=6, flags=flags)
    assert pair == {"type": "relay", "relayProtocol": "tls", "policy": "relay"}


async def test_chromium_without_trust_in_the_turns_certificate_gathers_nothing(config, tokens):
    """The same page without the flag: Chromium's own certificate check refuses the test
    certificate, so with relay-only it has no candidate and cannot connect."""
    tokens.add("fam-x", admission(75, "family", participant="visitor:8"))
    async with coturn(SECRET, with_tls=True) as running:
        urls = (f"turns:127.0.0.1:{running.tls_port}?transport=tcp",)
        cfg = config.replace(turn_urls=urls, turn_secret=SECRET, ice_relay_only=True)
        async with relay_with(cfg, tokens) as relay:
            async with chromium() as browser:
                page = await browser.new_page()
                await page.goto(f"{relay.base_url}/join?token=fam-x")
                await page.wait_for_function(
                    "window.__call && window.__call.joins === 1", timeout=30000
                )
                await page.wait_for_function(
                    "window.__call.pc.iceGatheringState === 'complete'", timeout=30000
                )
                candidates = await page.evaluate(
                    """async () => {
                        const stats = await window.__call.pc.getStats();
                        const out = [];
                        stats.forEach((s) => { if (s.type === 'local-candidate') out.push(s); });
                        return out.length;
                    }"""
                )
                assert candidates == 0
                assert await page.evaluate("window.__call.pc.iceConnectionState") != "connected"
