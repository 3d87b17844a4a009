"""The recorder's CPU cost per call: the relay process with and without recording.

Not part of the normal run (it takes about a minute); run it with

    RELAY_RECORDING_COST=1 python -m pytest tests/test_recording_cost.py -q -s -p no:warnings

Each round starts the relay in a subprocess (tests/test_recording_crash.py's entry), joins one
call of two clients sending pre-encoded VGA VP8 at about 1 Mbit/s and 30 fps plus Opus each
way, and reads the relay process's user+system CPU over ``SECONDS`` of the call. A round counts
only if the offered load arrived (frames per second at the far clients).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from protocol.client import CallClient
from protocol.media import EncodedTrack, encode_video, moving_pattern
from tests.support import admission, tone_clip
from tests.test_recording_crash import KEY_HEX, ROOT, _free_port, _Tokens, _wait_healthy

SECONDS = float(os.environ.get("RELAY_RECORDING_COST_S", "20"))
pytestmark = pytest.mark.skipif(
    os.environ.get("RELAY_RECORDING_COST") != "1", reason="set RELAY_RECORDING_COST=1 to measure"
)


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _round(tmp_path, record: bool, clip) -> dict:
    port = _free_port()
    data = tmp_path / ("on" if record else "off") / str(time.monotonic_ns())
    config = {"data_dir": str(data), "recordings_dir": str(data / "recordings"), "port": port,
              "seed_demo": False, "vision_enabled": False, "recording_key": KEY_HEX}
    tokens = _Tokens()
    base = f"http://127.0.0.1:{port}"
    legs = []
    for role, seed_tone in (("family", 440), ("prison", 660)):
        token = tokens.add(f"{role}", admission(1, role))
        legs.append(CallClient(base, token, receive="count", reconnect=False,
                               video=EncodedTrack("video", clip, 30),
                               audio=EncodedTrack("audio", tone_clip(seed_tone), 50)))
    spec = json.dumps({"config": config, "tokens": tokens.spec, "record": record})
    proc = subprocess.Popen([sys.executable, "-m", "tests.test_recording_crash", spec], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        await _wait_healthy(base, proc)
        for leg in legs:
            await leg.join()
        await asyncio.sleep(3.0)  # connected, keyframes through
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        packets0 = [dict(leg.packets) for leg in legs]
        await asyncio.sleep(SECONDS)
        cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
        packets1 = [dict(leg.packets) for leg in legs]
    finally:
        for leg in legs:
            await leg.close()
        proc.terminate()
        proc.wait(timeout=20)
    wall = t1 - t0
    video_pps = [(b.get("video0", 0) - a.get("video0", 0)) / wall for a, b in zip(packets0, packets1, strict=True)]
    audio_pps = [(b.get("audio0", 0) - a.get("audio0", 0)) / wall for a, b in zip(packets0, packets1, strict=True)]
    files = [os.path.join(d, f) for d, _, fs in os.walk(data / "recordings") for f in fs]
    return {"record": record, "cpu_per_call": (cpu1 - cpu0) / wall, "video_pps": video_pps,
            "audio_pps": audio_pps, "recording_bytes": sum(os.path.getsize(f) for f in files)}


@pytest.mark.timeout(600)
async def test_recorder_cpu_cost(tmp_path):
    clip = encode_video(moving_pattern(640, 480, 90, seed=3), bitrate=1_000_000, keyframe_interval=90)
    kbps = sum(len(f.data) for f in clip) * 8 / 3 / 1000
    print(f"\nclip: VGA VP8 {kbps:.0f} kbit/s, 30 fps; {SECONDS:.0f} s per round")
    results = []
    for record in (False, True, False, True):
        result = await _round(tmp_path, record, clip)
        expected = None
        ok = all(pps > 0.9 * 50 for pps in result["audio_pps"])
        results.append(result)
        print(f"recording={'on ' if record else 'off'} relay CPU {100 * result['cpu_per_call']:.1f} % "
              f"of a core; far-end video {[round(p) for p in result['video_pps']]} pkt/s, audio "
              f"{[round(p) for p in result['audio_pps']]} pkt/s{'' if ok else ' INVALID: load short'}"
              f"{'' if expected else ''}; on disk {result['recording_bytes'] / 1e6:.1f} MB")
    on = [r["cpu_per_call"] for r in results if r["record"]]
    off = [r["cpu_per_call"] for r in results if not r["record"]]
    print(f"recorder cost per call: {100 * (sum(on) / len(on) - sum(off) / len(off)):.1f} % of a core")


def test_recorder_work_per_call_second(tmp_path):
    """The recorder's own work, timed directly: event-loop side per packet, writer per chunk."""
    import fractions
    from types import SimpleNamespace

    import av
    from aiortc.codecs.vpx import Vp8Encoder
    from aiortc.rtp import RtpPacket

    from protocol.frames import FrameHub
    from protocol.webm import webm_header
    from relay.config import Config
    from relay.media.recorder import CallRecording, _FileWriter, _Tap
    from relay.records.storage import FolderStorage

    clip = encode_video(moving_pattern(640, 480, 90, seed=3), bitrate=1_000_000, keyframe_interval=90)
    tone = tone_clip(440)
    seconds = 30
    packets = []  # (stream key, RtpPacket, arrival_ms) for both legs, in arrival order
    for leg, ssrc in (("family", 1), ("prison", 2)):
        enc = Vp8Encoder()
        seq = 0
        for i in range(30 * seconds):
            p = av.Packet(clip[i % len(clip)].data)
            p.pts, p.time_base = i * 3000, fractions.Fraction(1, 90000)
            payloads, ts = enc.pack(p)
            for j, payload in enumerate(payloads):
                packets.append((int(i * 1000 / 30), (leg, "video"), RtpPacket(
                    payload_type=97, marker=j == len(payloads) - 1, sequence_number=seq & 0xFFFF,
                    timestamp=ts, ssrc=ssrc, payload=payload)))
                seq += 1
        for i in range(50 * seconds):
            packets.append((i * 20, (leg, "audio"), RtpPacket(
                payload_type=96, sequence_number=i, timestamp=i * 960, ssrc=ssrc + 10,
                payload=tone[i % len(tone)].data)))
    packets.sort(key=lambda x: x[0])

    async def run() -> tuple[float, float, int]:
        config = Config(data_dir=tmp_path, recordings_dir=tmp_path / "rec")
        recorder = SimpleNamespace(config=config, video_mime=lambda c: "video/VP8",
                                   audit=lambda *a: None, forget=lambda r: None)
        call = SimpleNamespace(id=1, add_tap=lambda fn: None, held=frozenset())
        rec = CallRecording(recorder, call, SimpleNamespace(ended=asyncio.Event()))
        taps = {}
        for key in rec.streams:  # each stream's frames come through its producer's hub
            tap = _Tap(rec, rec.streams[key])
            hub = FrameHub("audio/opus" if key[1] == "audio" else "video/vp8")
            hub.subscribe(tap.on_frame, tap.on_restart)
            taps[key] = hub.tap
        start = time.process_time()
        for arrival, key, packet in packets:
            taps[key](packet, arrival)
        loop_side = time.process_time() - start
        rec.stop()
        rec.done.cancel()
        frames = sorted(rec._pending, key=lambda f: f[0])
        assert len(frames) == 2 * seconds * (30 + 50), "every frame reassembled"
        storage = FolderStorage(tmp_path / "store")
        storage.prepare()
        writer = _FileWriter(storage, "r.enc", bytes(32), fsync=True)
        start = time.process_time()
        head = webm_header({"family": (640, 480), "prison": (640, 480)}, "x", time.time())
        for n in range(0, seconds, 2):  # one chunk per 2 s
            batch = [f for f in frames if n * 1000 <= f[0] < (n + 2) * 1000]
            writer.write(head if n == 0 else b"", batch, final=n + 2 >= seconds)
        thread_side = time.process_time() - start
        return loop_side, thread_side, len(packets)

    loop_side, thread_side, n = asyncio.run(run())
    print(f"\n{n} packets ({n / seconds:.0f}/s for one call) over {seconds} s of call:")
    print(f"event loop: {1e6 * loop_side / n:.1f} us/packet = {100 * loop_side / seconds:.2f} % of a core")
    print(f"writer thread: {100 * thread_side / seconds:.2f} % of a core (webm + AES-GCM + fsync)")
