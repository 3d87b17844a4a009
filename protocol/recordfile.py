"""Writing received encoded frames into a Matroska file as they are: no decoding, no encoding.

The prison laptop uses it to keep what the family side sent. (The relay's own recorder adds
encryption at rest and crash-safe chunking on top of the same idea.)
"""

from __future__ import annotations

import fractions

import av

from relay.frames import EncodedFrame

_CODECS = {"video/vp8": "vp8", "video/h264": "h264", "audio/opus": "opus"}


def vp8_size(keyframe: bytes) -> tuple[int, int]:
    """Width and height from a VP8 key frame header (RFC 6386 section 9.1)."""
    if len(keyframe) < 10 or keyframe[3:6] != b"\x9d\x01\x2a":
        raise ValueError("not a VP8 key frame")
    return (int.from_bytes(keyframe[6:8], "little") & 0x3FFF,
            int.from_bytes(keyframe[8:10], "little") & 0x3FFF)


class EncodedFileWriter:
    """One file, one stream per (name, mime); pts from RTP timestamps, starting at zero."""

    def __init__(self, path: str) -> None:
        self.container = av.open(path, "w", format="matroska")
        self.streams: dict[str, av.stream.Stream] = {}
        self._first_ts: dict[str, int] = {}
        self._last_pts: dict[str, int] = {}
        self.frames = 0

    def write(self, name: str, mime: str, frame: EncodedFrame) -> None:
        stream = self.streams.get(name)
        if stream is None:
            if mime.startswith("video/") and not frame.keyframe:
                return  # a stream starts at a keyframe
            stream = self._add_stream(name, mime, frame)
        first = self._first_ts.setdefault(name, frame.timestamp)
        pts = (frame.timestamp - first) & 0xFFFFFFFF
        if pts <= self._last_pts.get(name, -1):
            return
        self._last_pts[name] = pts
        packet = av.Packet(frame.data)
        packet.stream = stream
        packet.pts = packet.dts = pts
        packet.time_base = stream.time_base
        packet.is_keyframe = frame.keyframe
        self.container.mux(packet)
        self.frames += 1

    def _add_stream(self, name: str, mime: str, frame: EncodedFrame) -> av.stream.Stream:
        codec = _CODECS[mime.lower()]
        if codec == "opus":
            stream = self.container.add_stream("libopus", rate=48000)
            stream.time_base = fractions.Fraction(1, 48000)
        else:
            stream = self.container.add_stream(codec)
            if codec == "vp8":
                stream.width, stream.height = vp8_size(frame.data)
            stream.time_base = fractions.Fraction(1, 90000)
        self.streams[name] = stream
        return stream

    def close(self) -> None:
        self.container.close()
