"""The prison laptop command joins, sends a media file and records what it receives."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import av

from protocol.client import CallClient
from protocol.media import EncodedTrack, moving_pattern
from tests.support import admission, tone_clip, video_clip


def write_clip(path, seconds=2, fps=30):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i, image in enumerate(moving_pattern(320, 240, seconds * fps, seed=5)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


async def test_prison_command_exchanges_media(relay, tokens, tmp_path):
    tokens.add("fam-cli", admission(50, "family"))
    tokens.add("pri-cli", admission(50, "prison", participant="laptop:1"))
    clip = tmp_path / "clip.webm"
    write_clip(clip, seconds=20)
    received = tmp_path / "received.webm"
    family = CallClient(relay.base_url, "fam-cli", receive="encoded", keep_frames=True,
                        video=EncodedTrack("video", video_clip(seed=6), 30),
                        audio=EncodedTrack("audio", tone_clip(300), 50))
    await family.join()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "protocol.prison", "--relay", relay.base_url, "--token", "pri-cli",
        "--file", str(clip), "--duration", "60", "--media-address", "127.0.0.1",
        "--record", str(received),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        try:
            await family.wait_frames("video0", 30, timeout=60)
        except TimeoutError:
            if proc.returncode is None:
                proc.terminate()
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            raise AssertionError(f"laptop exited {proc.returncode}: {out.decode()[-3000:]}") from None
        await asyncio.sleep(2)  # let the laptop receive and record a while too
        proc.terminate()  # the laptop leaves cleanly on SIGTERM
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
        await family.close()
    text = out.decode()
    assert proc.returncode == 0, text
    # what the laptop sent reached the family side and decodes
    decoder = av.CodecContext.create("vp8", "r")
    got = family.encoded["video0"]
    assert got[0].keyframe
    pictures = [p for f in got[:30] for p in decoder.decode(av.Packet(f.data))]
    assert len(pictures) == 30 and pictures[0].width == 320
    assert "[call] live" in text
    # count decodable frames with ffprobe (a separate decoder, as a person's player would)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(received)],
        capture_output=True, text=True, timeout=60,
    )
    frames = int(probe.stdout.strip() or 0)
    assert frames > 20, f"the laptop recorded {frames} frames of the family side"
