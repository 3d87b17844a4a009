"""Writing received encoded frames into a WebM file as they are: no decoding, no encoding.

The prison laptop uses it to keep what the family side sent. It reuses the WebM writer the
relay's recorder uses (protocol/webm.py), which writes cluster by cluster so a file cut short still
plays; the laptop's file carries the family tracks only (the prison tracks stay empty).
"""

from __future__ import annotations

import time

from protocol.codecs import vp8_size
from protocol.frames import EncodedFrame
from protocol.webm import STREAMS, webm_clusters, webm_header

FLUSH_FRAMES = 60


class EncodedFileWriter:
    """VP8 + Opus from the far side (the family) into one WebM file."""

    def __init__(self, path: str, source_role: str = "family") -> None:
        self.path = path
        self.role = source_role
        self.frames = 0
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._header_written = False
        self._pending: list[tuple[int, int, bool, bytes]] = []
        self._first_ts: dict[str, int] = {}
        self._last_ms: dict[str, int] = {}
        self._size: tuple[int, int] | None = None
        self._started = time.time()

    def write(self, name: str, mime: str, frame: EncodedFrame) -> None:
        kind = "audio" if mime.startswith("audio/") else "video"
        if mime.lower() not in ("video/vp8", "audio/opus"):
            return
        if kind == "video" and self._size is None:
            if not frame.keyframe or (size := vp8_size(frame.data)) is None:
                return  # the file starts at a keyframe
            self._size = size
        if self._size is None:
            return  # audio waits for the first picture so both start together
        clock = 90000 if kind == "video" else 48000
        first = self._first_ts.setdefault(kind, frame.timestamp)
        ms = ((frame.timestamp - first) & 0xFFFFFFFF) * 1000 // clock
        if ms < self._last_ms.get(kind, -1):
            return
        self._last_ms[kind] = ms
        track = STREAMS.index((self.role, kind)) + 1
        self._pending.append((ms, track, frame.keyframe, frame.data))
        self.frames += 1
        if len(self._pending) >= FLUSH_FRAMES:
            self.flush()

    def flush(self) -> None:
        if self._size is None or not self._pending:
            return
        if not self._header_written:
            self._file.write(webm_header({self.role: self._size}, "received", self._started))
            self._header_written = True
        self._pending.sort(key=lambda f: f[0])
        self._file.write(webm_clusters(self._pending))
        self._file.flush()
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._file.close()
