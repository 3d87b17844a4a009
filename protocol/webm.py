"""A small live-WebM (EBML) writer: header with four tracks, then self-contained Clusters.

Shared by the relay's recorder (relay/media/recorder.py) and the laptop client's file writer
(protocol/recordfile.py). It is written here rather than through PyAV's muxer: FFmpeg's
interleaver holds every packet back until each stream has had one, and PyAV streams open an
encoder each (see relay/media/recorder.py).
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

STREAMS = (("family", "video"), ("family", "audio"), ("prison", "video"), ("prison", "audio"))
"""The four tracks, always in this order: 1 family video, 2 family audio, 3 prison video, 4 prison audio."""
CLOCK = {"video": 90000, "audio": 48000}
PLACEHOLDER_SIZE = (640, 480)
"""Header size for a leg whose first keyframe had not arrived when the file began."""


@dataclass(frozen=True)
class VideoFormat:
    """How one video codec goes into Matroska."""

    mime: str
    codec_id: str
    doc_type: str
    media_type: str
    suffix: str


VP8 = VideoFormat("video/vp8", "V_VP8", "webm", "video/webm", ".webm.enc")
H264 = VideoFormat("video/h264", "V_MPEG4/ISO/AVC", "matroska", "video/x-matroska", ".mkv.enc")
VIDEO_FORMATS = {f.mime: f for f in (VP8, H264)}



def _size(n: int) -> bytes:
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return (n | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError("element too large")


def _el(eid: int, body: bytes) -> bytes:
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big") + _size(len(body)) + body


def _uint(eid: int, value: int) -> bytes:
    return _el(eid, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _str(eid: int, value: str) -> bytes:
    return _el(eid, value.encode("utf-8"))


UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"
MATROSKA_EPOCH = 978307200  # 2001-01-01T00:00:00Z, Matroska's DateUTC origin
OPUS_HEAD = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 0, 48000, 0, 0)
"""WebRTC Opus is signalled as 2 channels; pre-skip 0: the stream is taken up mid-way."""


def webm_header(
    sizes: dict[str, tuple[int, int]],
    title: str,
    started_at: float,
    video: VideoFormat | None = None,
    private: dict[str, bytes] | None = None,
) -> bytes:
    """EBML header, Segment (unknown size), Info and the four Tracks."""
    video = video or VP8
    private = private or {}
    ebml = _el(
        0x1A45DFA3,
        _uint(0x4286, 1) + _uint(0x42F7, 1) + _uint(0x42F2, 4) + _uint(0x42F3, 8)
        + _str(0x4282, video.doc_type) + _uint(0x4287, 4) + _uint(0x4285, 2),
    )
    date = int((started_at - MATROSKA_EPOCH) * 1e9).to_bytes(8, "big", signed=True)
    info = _el(
        0x1549A966,
        _uint(0x2AD7B1, 1_000_000)  # TimestampScale: 1 ms
        + _str(0x4D80, "relay recorder") + _str(0x5741, "relay recorder")
        + _el(0x4461, date) + _str(0x7BA9, title),
    )
    entries = []
    for number, (role, kind) in enumerate(STREAMS, start=1):
        body = (
            _uint(0xD7, number) + _uint(0x73C5, secrets.randbits(63) or 1)
            + _uint(0x9C, 0) + _str(0x536E, f"{role} {kind}")
        )
        if kind == "video":
            width, height = sizes.get(role) or PLACEHOLDER_SIZE
            body += _uint(0x83, 1) + _str(0x86, video.codec_id)
            if role in private:
                body += _el(0x63A2, private[role])
            body += _el(0xE0, _uint(0xB0, width) + _uint(0xBA, height))
        else:
            body += _uint(0x83, 2) + _str(0x86, "A_OPUS") + _el(0x63A2, OPUS_HEAD)
            body += _uint(0x56AA, 0) + _uint(0x56BB, 80_000_000)  # CodecDelay, SeekPreRoll (ns)
            body += _el(0xE1, _el(0xB5, struct.pack(">d", 48000.0)) + _uint(0x9F, 2))
        entries.append(_el(0xAE, body))
    tracks = _el(0x1654AE6B, b"".join(entries))
    return ebml + bytes.fromhex("18538067") + UNKNOWN_SIZE + info + tracks


Frame = tuple[int, int, bool, bytes]
"""(pts in ms, track number, keyframe, encoded frame)"""

MAX_CLUSTER_SPAN_MS = 30_000  # block timestamps are int16 ms relative to their cluster


def webm_clusters(frames: list[Frame]) -> bytes:
    """Clusters of SimpleBlocks for frames sorted by pts."""
    out = []
    i = 0
    while i < len(frames):
        base = frames[i][0]
        parts = [_uint(0xE7, base)]
        while i < len(frames) and frames[i][0] - base <= MAX_CLUSTER_SPAN_MS:
            pts, track, key, data = frames[i]
            head = struct.pack(">BhB", 0x80 | track, pts - base, 0x80 if key else 0)
            parts.append(_el(0xA3, head + data))
            i += 1
        out.append(_el(0x1F43B675, b"".join(parts)))
    return b"".join(out)


