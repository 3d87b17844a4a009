"""The sealed file format, the container writer and the recorder's parts, without a relay."""

from __future__ import annotations

import os
import struct

import pytest

from protocol.codecs import vp8_size
from protocol.webm import webm_clusters
from relay.config import Config
from relay.records.sealed import (
    CHUNK_HEAD,
    HEADER_SIZE,
    RecordingError,
    SealedWriter,
    TruncatedRecording,
    decrypt_bytes,
    load_key,
    main,
)
from tests.support import video_clip

KEY = bytes(range(32))


def sealed(tmp_path, chunks, final=True, name="r.enc") -> bytes:
    writer = SealedWriter(tmp_path / name, KEY, fsync=False)
    for i, chunk in enumerate(chunks):
        writer.seal(chunk, final=final and i == len(chunks) - 1)
    writer.close()
    assert oct((tmp_path / name).stat().st_mode & 0o777) == "0o600"
    return (tmp_path / name).read_bytes()


def split(raw: bytes) -> tuple[bytes, list[bytes]]:
    header, rest, records = raw[:HEADER_SIZE], raw[HEADER_SIZE:], []
    while rest:
        length, _ = CHUNK_HEAD.unpack(rest[: CHUNK_HEAD.size])
        records.append(rest[: CHUNK_HEAD.size + length])
        rest = rest[CHUNK_HEAD.size + length :]
    return header, records


def test_round_trip_and_truncation(tmp_path):
    raw = sealed(tmp_path, [b"one", b"two", b"three"])
    assert decrypt_bytes(raw, KEY)[0] == b"onetwothree"
    header, records = split(raw)
    # the last chunk lost (crash, or cut on purpose): detected; the rest is still readable
    cut = header + b"".join(records[:2])
    with pytest.raises(TruncatedRecording):
        decrypt_bytes(cut, KEY)
    plain, result = decrypt_bytes(cut, KEY, allow_truncated=True)
    assert plain == b"onetwo" and not result.complete
    # cut in the middle of a chunk: the partial chunk is dropped, never half-trusted
    plain, _ = decrypt_bytes(raw[:-5], KEY, allow_truncated=True)
    assert plain == b"onetwo"


def test_reordering_tampering_and_wrong_key_are_refused(tmp_path):
    raw = sealed(tmp_path, [b"one", b"two", b"three"])
    header, records = split(raw)
    with pytest.raises(RecordingError, match="authentication"):
        decrypt_bytes(header + records[1] + records[0] + records[2], KEY)
    with pytest.raises(RecordingError, match="authentication"):  # a chunk dropped mid-file
        decrypt_bytes(header + records[0] + records[2], KEY)
    flipped = bytearray(raw)
    flipped[HEADER_SIZE + CHUNK_HEAD.size + 1] ^= 0x40
    with pytest.raises(RecordingError):
        decrypt_bytes(bytes(flipped), KEY)
    # clearing the FINAL flag of the last chunk is tampering too, not a "crash"
    last = bytearray(records[2])
    last[4] = 0
    with pytest.raises(RecordingError, match="authentication"):
        decrypt_bytes(header + records[0] + records[1] + bytes(last), KEY, allow_truncated=True)
    # a chunk from another file with the same key does not fit
    other_header, other = split(sealed(tmp_path, [b"ONE", b"TWO"], name="other.enc"))
    with pytest.raises(RecordingError):
        decrypt_bytes(header + other[0], KEY, allow_truncated=True)
    with pytest.raises(RecordingError, match="different key"):
        decrypt_bytes(raw, bytes(32))
    with pytest.raises(RecordingError, match="not an encrypted recording"):
        decrypt_bytes(b"\x1a\x45\xdf\xa3" + bytes(40), KEY)


def test_key_sources(tmp_path):
    cfg = Config(data_dir=tmp_path, recording_key="ab" * 32)
    assert load_key(cfg) == bytes([0xAB]) * 32
    with pytest.raises(ValueError):
        load_key(Config(data_dir=tmp_path, recording_key="ab" * 16))
    generated = load_key(Config(data_dir=tmp_path))
    assert load_key(Config(data_dir=tmp_path)) == generated
    os.chmod(tmp_path / "recording.key", 0o644)
    with pytest.raises(PermissionError):
        load_key(Config(data_dir=tmp_path))


def test_decrypt_command(tmp_path, monkeypatch, capsys):
    (tmp_path / "r.enc").write_bytes(sealed(tmp_path, [b"abc", b"def"], final=False))
    monkeypatch.setenv("RELAY_RECORDING_KEY", KEY.hex())
    assert main(["decrypt", str(tmp_path / "r.enc"), str(tmp_path / "out.webm")]) == 2
    assert not (tmp_path / "out.webm").exists(), "no half-checked plaintext left behind"
    assert main(["decrypt", "--allow-truncated", str(tmp_path / "r.enc"),
                 str(tmp_path / "out.webm")]) == 0
    assert (tmp_path / "out.webm").read_bytes() == b"abcdef"
    assert "INCOMPLETE" in capsys.readouterr().out
    # a tool never makes up a key of its own
    monkeypatch.delenv("RELAY_RECORDING_KEY")
    monkeypatch.setenv("RELAY_DATA_DIR", str(tmp_path / "nowhere"))
    assert main(["decrypt", str(tmp_path / "r.enc"), str(tmp_path / "x.webm")]) == 1
    assert not (tmp_path / "nowhere").exists()


def test_vp8_size_and_long_batches_split_clusters():
    clip = video_clip(seed=1)
    assert vp8_size(clip[0].data) == (320, 240)
    assert vp8_size(clip[1].data) is None  # not a keyframe
    frames = [(i * 1000, 1, True, b"x") for i in range(70)]  # 70 s in one batch
    data = webm_clusters(frames)
    assert data.count(bytes.fromhex("1f43b675")) == 3  # int16 ms block offsets: <= 32 s each
    # each block's offset is relative to its own cluster
    first_block = data.index(b"\xa3")
    assert struct.unpack(">h", data[first_block + 3 : first_block + 5])[0] == 0


@pytest.mark.parametrize(("width", "height", "preset"), [
    (320, 240, "ultrafast"), (640, 360, "medium"), (1920, 1080, "ultrafast"), (176, 144, "medium"),
])
def test_h264_picture_size(width, height, preset):
    import fractions

    import av
    import numpy as np

    from protocol.codecs import h264_config, split_annexb

    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 30)
    ctx.options = {"preset": preset}
    frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")
    frame = frame.reformat(format="yuv420p")
    frame.pts = 0
    data = b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])
    record, size = h264_config(data)
    assert size == (width, height)
    sps = next(n for n in split_annexb(data) if n[0] & 0x1F == 7)
    assert record[1] == sps[1]  # profile (66 baseline for ultrafast, 100 high otherwise)


async def test_a_recorder_bug_never_breaks_the_call(tmp_path):
    """An exception on the packet path stops the recording, not the forwarding."""
    import asyncio
    from types import SimpleNamespace

    from aiortc.rtp import RtpPacket

    from protocol.frames import FrameHub
    from relay.media.recorder import CallRecording, _Tap

    trail = []
    recorder = SimpleNamespace(config=Config(data_dir=tmp_path, recordings_dir=tmp_path / "r"),
                               video_mime=lambda c: "video/VP8", forget=lambda r: None,
                               audit=lambda *a: trail.append(a))
    rec = CallRecording(recorder, SimpleNamespace(id=3, add_tap=lambda fn: None, held=frozenset()),
                        SimpleNamespace(ended=asyncio.Event()))
    tap = _Tap(rec, rec.streams[("family", "audio")])
    hub = FrameHub("audio/opus")  # what the producer feeds every packet through
    hub.subscribe(tap.on_frame, tap.on_restart)
    tap.recording.add_frame = None  # the bug
    hub.tap(RtpPacket(payload_type=96, ssrc=1, payload=b"\x01"), 0)  # does not raise
    assert rec.failed and rec.stopping and trail[0][1] == "recording_failed"
    await asyncio.wait_for(rec.done, 5)


async def test_out_of_order_and_duplicate_frames(tmp_path):
    import asyncio
    from types import SimpleNamespace

    from protocol.frames import EncodedFrame
    from relay.media.recorder import CallRecording

    recorder = SimpleNamespace(config=Config(data_dir=tmp_path, recordings_dir=tmp_path / "r"),
                               video_mime=lambda c: "video/VP8", forget=lambda r: None,
                               audit=lambda *a: None)
    rec = CallRecording(recorder, SimpleNamespace(id=3, add_tap=lambda fn: None, held=frozenset()),
                        SimpleNamespace(ended=asyncio.Event()))
    audio = rec.streams[("family", "audio")]
    audio.restart()
    base = 0xFFFFF000  # and the RTP timestamp wraps on the way
    for n, arrival in ((0, 1000), (1, 1020), (3, 1060), (2, 1061), (3, 1062), (4, 1080)):
        rec.add_frame(audio, EncodedFrame(bytes([n]), (base + n * 960) & 0xFFFFFFFF, True, arrival))
    frames = sorted(rec._pending, key=lambda f: f[0])
    assert [(pts, data) for pts, _, _, data in frames] == [
        (0, b"\x00"), (20, b"\x01"), (40, b"\x02"), (60, b"\x03"), (80, b"\x04")]
    assert audio.late == 1  # the second copy of frame 3
    # once a stretch is on disk, a frame older than it is dropped, not written out of order
    other = rec.streams[("prison", "audio")]
    other.restart()
    for n in (0, 1, 3, 4):
        rec.add_frame(other, EncodedFrame(b"p", n * 960, True, 1000 + n * 20))
    other.written_pts = 60
    rec.add_frame(other, EncodedFrame(b"old", 2 * 960, True, 1100))
    assert other.late == 1 and len(rec._pending) == 9
    rec.stop()
    rec.done.cancel()
