"""Bad signalling input gets a clear error while another call keeps flowing."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from protocol import messages as m
from protocol.client import CallClient, JoinError
from protocol.media import EncodedTrack
from tests.support import admission, tone_clip, video_clip
from tests.test_forwarding import start_pair


async def _ws(relay):
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(relay.base_url + "/ws")
    return session, ws


async def _reply(ws) -> dict:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def test_bad_messages_get_codes_and_other_call_keeps_flowing(relay, tokens):
    fam, pri = await start_pair(relay, tokens, booking_id=10, receive="count", keep=False)
    session, ws = await _ws(relay)
    try:
        await pri.wait_frames("video0", 10)
        before = pri.packets["video0"]
        cases = [
            ("{not json", m.E_MALFORMED),
            ("[1,2,3]", m.E_NOT_OBJECT),
            (json.dumps({"type": "dance"}), m.E_UNKNOWN_TYPE),
            (json.dumps({"type": "join", "token": 5, "sdp": "x"}), m.E_FIELD),
            (json.dumps({"type": "join"}), m.E_FIELD),
            (json.dumps({"v": 9, "type": "ping"}), m.E_VERSION),
            (json.dumps({"type": "leave"}), m.E_NOT_JOINED),
            ("x" * (70 * 1024), m.E_TOO_LARGE),
        ]
        for raw, code in cases:
            await ws.send_str(raw)
            reply = await _reply(ws)
            assert reply["type"] == "error" and reply["code"] == code, (raw[:30], reply)
            assert "Traceback" not in reply["message"]
        await ws.send_bytes(b"\x00\x01")
        assert (await _reply(ws))["code"] == m.E_BINARY
        # the socket is still usable after all that
        await ws.send_str(m.make("ping", id=3))
        assert await _reply(ws) == {"v": 1, "type": "pong", "id": 3}
        # garbage SDP with a valid token: clear error, socket stays open
        tokens.add("sdp-fam", admission(11, "family"))
        await ws.send_str(m.make("join", token="sdp-fam", sdp="v=0\r\nthis is not sdp"))
        reply = await _reply(ws)
        assert reply["code"] == m.E_BAD_SDP
        # an unknown token is refused and the socket closed with a reason
        await ws.send_str(m.make("join", token="forged", sdp="v=0"))
        assert (await _reply(ws))["code"] == "token_bad_signature"
        closing = await asyncio.wait_for(ws.receive(), 5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        # meanwhile the other call kept flowing
        await asyncio.sleep(1.0)
        assert pri.packets["video0"] > before + 20
        assert fam.state == "live"
    finally:
        await ws.close()
        await session.close()
        await fam.close()
        await pri.close()


async def test_huge_frame_closes_with_reason(relay):
    session, ws = await _ws(relay)
    try:
        await ws.send_str("y" * (300 * 1024))
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    finally:
        await session.close()


async def test_duplicate_leg_is_refused_while_first_keeps_flowing(relay, tokens):
    fam, pri = await start_pair(relay, tokens, booking_id=12, receive="count", keep=False)
    await pri.wait_frames("video0", 10)
    dup = CallClient(relay.base_url, "fam12", receive="count",
                     video=EncodedTrack("video", video_clip(seed=1), 30),
                     audio=EncodedTrack("audio", tone_clip(440), 50))
    try:
        try:
            await dup.join()
            raise AssertionError("a second family leg was admitted")
        except JoinError as exc:
            assert exc.code == m.E_LEG_CONNECTED
        before = pri.packets["video0"]
        await asyncio.sleep(1.0)
        assert pri.packets["video0"] > before + 20
    finally:
        await dup.close(leave=False)
        await fam.close()
        await pri.close()


async def test_watcher_receives_both_sides(relay, tokens):
    fam, pri = await start_pair(relay, tokens, booking_id=13, receive="count", keep=False)
    await pri.wait_frames("video0", 10)
    tokens.add("watch13", admission(13, "watcher", participant="staff:1", approved_faces=0))
    watcher = CallClient(relay.base_url, "watch13", watcher=True, receive="encoded")
    try:
        await watcher.join()
        for stream in ("video0", "video1", "audio0", "audio1"):
            await watcher.wait_frames(stream, 10)
    finally:
        await watcher.close()
        await fam.close()
        await pri.close()
