"""SIGTERM during a live call: both sides are told the relay is restarting, the recording is
sealed and plays, and the call is not counted as over (the legs rejoin the next process)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3

import av
import pytest

from bench.relay_spawn import start_relay
from protocol.client import CallClient
from protocol.media import EncodedTrack
from relay.config import Config
from relay.records.recordings import RecordingIndex, recording_path
from relay.records.sealed import decrypt_bytes, load_key
from relay.records.store.engine import open_database
from tests.support import tone_clip, video_clip
from tests.test_recording import demux


@pytest.mark.timeout(120)
async def test_sigterm_tells_both_sides_and_leaves_a_playable_recording(tmp_path):
    relay = await start_relay(tmp_path, env={"RELAY_VISION_ENABLED": "0"})
    fam = pri = None
    try:
        assert "family:" in relay.banner and "/console" in relay.banner
        fam = CallClient(relay.url, relay.family_token, receive="count", reconnect=False,
                         video=EncodedTrack("video", video_clip(seed=1), 30),
                         audio=EncodedTrack("audio", tone_clip(440), 50))
        pri = CallClient(relay.url, await relay.prison_token(), receive="count", reconnect=False,
                         video=EncodedTrack("video", video_clip(seed=2), 30),
                         audio=EncodedTrack("audio", tone_clip(660), 50))
        await fam.join()
        await pri.join()
        await fam.wait_frames("video0", 60, timeout=30)
        relay.proc.send_signal(signal.SIGTERM)
        for client in (fam, pri):
            told = await client.wait_for(lambda m: m["type"] == "restarting", timeout=15)
            assert "restarting" in told["message"]
        code = await asyncio.get_running_loop().run_in_executor(None, relay.proc.wait, 20)
        assert code == 0
    finally:
        for c in (fam, pri):
            if c is not None:
                await c.close(leave=False)
        relay.stop()
    config = Config(data_dir=tmp_path, recordings_dir=tmp_path / "recordings")
    conn = open_database(config.db_path)
    (row,) = RecordingIndex(conn).list(booking_id=relay.booking_id)
    conn.close()
    assert row.status == "complete"
    booking = sqlite3.connect(config.db_path).execute(
        "SELECT status FROM bookings WHERE id = ?", (relay.booking_id,)).fetchone()
    assert booking[0] == "approved", "a restart is not the end of the call"
    plain, result = decrypt_bytes(recording_path(config, row).read_bytes(), load_key(config, create=False))
    assert result.complete
    streams, packets = demux(plain)
    assert [s["codec"] for s in streams] == ["vp8", "opus", "vp8", "opus"]
    decoder = av.CodecContext.create("vp8", "r")
    frames = [f for p in packets[0] for f in decoder.decode(av.Packet(bytes(p)))]
    assert len(frames) > 30
