"""The prison command the banner prints joins the demo call as printed; bad credentials give
one clear line and exit code 2; a looped file keeps its video flowing past the loop point."""

from __future__ import annotations

import asyncio
import shlex
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from aiohttp.test_utils import TestServer

from protocol.client import CallClient
from protocol.media import EncodedTrack
from relay.app import build_app
from relay.config import Config
from relay.records.store import Store
from relay.seed import format_banner, seed_demo
from tests.support import tone_clip, video_clip
from tests.test_prison_cli import write_clip

ROOT = Path(__file__).resolve().parents[1]


async def _demo_relay(tmp_path):
    config = Config(
        data_dir=tmp_path,
        recordings_dir=tmp_path / "rec",
        seed_demo=False,
        vision_enabled=False,
        recording_enabled=False,
    )
    store = Store.open(config.db_path)
    server = TestServer(build_app(config, store=store), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    info = seed_demo(store, config.replace(public_url=url), time.time())
    return server, info


async def _run(
    cmd: list[str], until: str | None, timeout: float = 60, linger: float = 0.0
) -> tuple[int, str, str]:
    """Run ``cmd``; once ``until`` is printed, let it run ``linger`` s more, then SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out = b""
    try:
        if until is not None:
            deadline = time.monotonic() + timeout
            while until.encode() not in out and time.monotonic() < deadline:
                line = await asyncio.wait_for(proc.stdout.readline(), deadline - time.monotonic())
                if not line:
                    break
                out += line
            await asyncio.sleep(linger)
            proc.terminate()
        rest, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
    return proc.returncode, (out + rest).decode(), err.decode()


async def test_printed_prison_command_joins_and_bad_credentials_exit_2(tmp_path):
    server, info = await _demo_relay(tmp_path)
    try:
        banner = format_banner(info)
        line = next(x for x in banner.splitlines() if x.strip().startswith("prison:"))
        printed = line.split("prison:", 1)[1].strip()
        assert printed.startswith(".venv/bin/python -m protocol.prison "), printed
        assert "--media-address 127.0.0.1" in printed
        token = parse_qs(urlsplit(info["family_url"]).query)["token"][0]
        family = CallClient(
            info["family_url"].split("/join")[0],
            token,
            receive="count",
            video=EncodedTrack("video", video_clip(seed=7), 30),
            audio=EncodedTrack("audio", tone_clip(440), 50),
        )
        await family.join()
        try:
            rc, out, err = await _run(shlex.split(printed), until="[call] live", linger=4)
        finally:
            await family.close()
        assert "[call] live" in out, (rc, out, err)
        assert rc == 0 and "Traceback" not in err, err
        assert "video0" in out and "received: nothing" not in out, out

        wrong = shlex.split(printed)
        wrong[wrong.index("--laptop-secret") + 1] = "not-the-secret"
        rc, out, err = await _run(wrong, until=None)
        assert rc == 2, (rc, out, err)
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and "bad_credentials" in lines[0], err
        assert "Traceback" not in err
    finally:
        await server.close()


async def test_looped_file_keeps_sending_past_the_loop_point(product, tmp_path):
    clip = tmp_path / "short.webm"
    write_clip(clip, seconds=2)
    bid = product.booking_now()
    laptop_id, secret = product.world.laptops_a[0]
    family = CallClient(
        product.url,
        await product.family_token(bid),
        receive="count",
        video=EncodedTrack("video", video_clip(seed=8), 30),
        audio=EncodedTrack("audio", tone_clip(440), 50),
    )
    await family.join()
    cmd = [
        ".venv/bin/python",
        "-m",
        "protocol.prison",
        "--relay",
        product.url,
        "--laptop-id",
        str(laptop_id),
        "--laptop-secret",
        secret,
        "--booking",
        str(bid),
        "--file",
        str(clip),
        "--loop",
        "--duration",
        "9",
        "--media-address",
        "127.0.0.1",
    ]
    try:
        proc = asyncio.ensure_future(_run(cmd, until=None, timeout=90))
        await family.wait_frames("video0", 10, timeout=30)
        first = family.frames["video0"]
        await asyncio.sleep(5)  # more than two laps of the 2 s clip
        later = family.frames["video0"]
        rc, out, err = await proc
    finally:
        await family.close()
    assert rc == 0, (out, err)
    # 30 fps for 5 s is 150; past a loop point that broke, nothing more would arrive
    assert later - first > 60, f"{later - first} frames in 5 s across loop points"
