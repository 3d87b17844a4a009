"""kill -9 of the relay mid-call: what was written stays decryptable and playable.

The relay runs in a subprocess started from this module (``python -m
tests.test_recording_crash SPEC``): build_app with a token table, recording on,
web.run_app on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import av
import pytest

from relay.config import Config
from relay.records.recordings import RecordingIndex, recording_path, recover_unfinished
from relay.records.sealed import TruncatedRecording, decrypt_bytes
from relay.records.storage import FolderStorage
from relay.records.store.engine import open_database
from tests.test_recording import KEY_HEX, clients, demux, seconds

ROOT = Path(__file__).resolve().parent.parent


def _serve(spec: dict) -> None:
    from aiohttp import web

    from relay.app import build_app
    from tests.support import TokenTable, admission

    config = Config(**{k: Path(v) if k.endswith("_dir") else v for k, v in spec["config"].items()})
    config = config.replace(recording_enabled=spec.get("record", True))
    tokens = TokenTable()
    for token, (booking, role) in spec["tokens"].items():
        tokens.add(token, admission(booking, role))
    app = build_app(config, admit=tokens)
    web.run_app(app, host="127.0.0.1", port=config.port, print=None, handle_signals=True)


class _Tokens:
    """Collects tokens for the subprocess relay (the same shape as tests.support.TokenTable)."""

    def __init__(self) -> None:
        self.spec: dict[str, tuple[int, str]] = {}

    def add(self, token, admitted):
        self.spec[token] = (admitted.booking_id, admitted.role)
        return token


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the relay exited with {proc.returncode}")
            try:
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("the relay did not come up")


def start_relay(tmp_path, tokens: _Tokens, **overrides) -> tuple[str, subprocess.Popen]:
    port = _free_port()
    config = {
        "data_dir": str(tmp_path), "recordings_dir": str(tmp_path / "recordings"),
        "port": port, "seed_demo": False, "vision_enabled": False,
        "recording_key": KEY_HEX, "recording_chunk_s": 1.0, **overrides,
    }
    spec = json.dumps({"config": config, "tokens": tokens.spec})
    with open(tmp_path / "relay.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.test_recording_crash", spec],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    return f"http://127.0.0.1:{port}", proc


async def call_then_signal(tmp_path, sig: int, call_s: float = 5.0) -> tuple[float, float]:
    """A call through a subprocess relay, ended by ``sig``; returns (joined at, signalled at)."""
    tokens = _Tokens()
    placeholder = "http://127.0.0.1:1"
    fam, pri = clients(placeholder, tokens, 7, reconnect=False)
    base, proc = start_relay(tmp_path, tokens)
    for client in (fam, pri):
        client.ws_url = base.replace("http://", "ws://") + "/ws"
    try:
        await _wait_healthy(base, proc)
        t0 = time.monotonic()
        await fam.join()
        await pri.join()
        await fam.wait_state("live")
        await asyncio.sleep(call_s)
        proc.send_signal(sig)
        t_signal = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, proc.wait, 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await fam.close(leave=False)
        await pri.close(leave=False)
    return t0, t_signal


@pytest.mark.timeout(60)
async def test_kill_9_mid_call_leaves_a_playable_recording(tmp_path):
    t0, t_kill = await call_then_signal(tmp_path, signal.SIGKILL)
    conn = open_database(tmp_path / "relay.sqlite")
    index = RecordingIndex(conn)
    (row,) = index.list(booking_id=7)
    assert row.status == "recording", "the relay died before it could finish the row"
    cfg = Config(data_dir=tmp_path, recordings_dir=tmp_path / "recordings")
    raw = recording_path(cfg, row).read_bytes()
    with pytest.raises(TruncatedRecording):
        decrypt_bytes(raw, bytes.fromhex(KEY_HEX))
    plain, result = decrypt_bytes(raw, bytes.fromhex(KEY_HEX), allow_truncated=True)
    assert not result.complete and result.chunks >= 3

    streams, packets = demux(plain)
    assert [s["codec"] for s in streams] == ["vp8", "opus", "vp8", "opus"]
    span = max(seconds(p[-1]) for p in packets.values()) - min(seconds(p[0]) for p in packets.values())
    lived = t_kill - t0
    # lost: at most the chunk being filled (1 s), the reorder hold and a little scheduling
    assert lived - 3.0 < span < lived + 0.5, (span, lived)
    for video in (packets[0], packets[2]):
        assert video[0].is_keyframe and len(video) > 60
        decoder = av.CodecContext.create("vp8", "r")
        frames = [f for p in video for f in decoder.decode(av.Packet(bytes(p)))]
        frames += decoder.decode(None)
        assert len(frames) == len(video)

    # the next start marks the row interrupted, with the file's size and hash
    assert recover_unfinished(index, FolderStorage(cfg.recordings_dir), busy=set()) == [row.id]
    row = index.get(row.id)
    assert row.status == "interrupted" and row.size == len(raw) and row.sha256
    conn.close()


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))


@pytest.mark.timeout(60)
async def test_graceful_shutdown_finishes_the_recording(tmp_path):
    """SIGTERM (a deploy): the app ends the call and the recording is sealed complete."""
    t0, t_term = await call_then_signal(tmp_path, signal.SIGTERM, call_s=3.0)
    conn = open_database(tmp_path / "relay.sqlite")
    (row,) = RecordingIndex(conn).list(booking_id=7)
    conn.close()
    assert row.status == "complete" and row.ended_at is not None
    cfg = Config(data_dir=tmp_path, recordings_dir=tmp_path / "recordings")
    raw = recording_path(cfg, row).read_bytes()
    assert len(raw) == row.size
    plain, result = decrypt_bytes(raw, bytes.fromhex(KEY_HEX))
    assert result.complete
    _, packets = demux(plain)
    span = max(seconds(p[-1]) for p in packets.values()) - min(seconds(p[0]) for p in packets.values())
    assert abs(span - (t_term - t0)) < 1.0, (span, t_term - t0)
