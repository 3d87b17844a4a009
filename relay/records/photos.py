"""Vetting photos: checked, cleaned and sealed at rest.

An upload is accepted only when its first bytes say JPEG or PNG, it is within
``photo_max_bytes``, and PyAV (already a runtime dependency) decodes it. What is kept is a
fresh JPEG re-encoded from the decoded pixels (no metadata, no trailing bytes, no location
tags survive), at most ``photo_max_px`` on its long side, sealed with the recordings key
and file format (relay/records/sealed.py): one key and one format for everything sensitive
at rest. The sealed file's name is random; the store keeps its path and digest.
"""

from __future__ import annotations

import fractions
import hashlib
import os
import secrets
from pathlib import Path

import av

from relay.records.sealed import SealedWriter, decrypt_bytes

_MAGIC = {b"\xff\xd8\xff": "mjpeg", b"\x89PNG\r\n\x1a\n": "png"}
JPEG_QUALITY = 3
"""ffmpeg's mjpeg q:v scale (2 best .. 31 worst): 3 keeps faces and document text sharp."""


class PhotoError(Exception):
    """An upload that is refused; ``code`` and ``message`` go to the family."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def clean_jpeg(data: bytes, max_bytes: int, max_px: int) -> bytes:
    """The upload decoded and re-encoded as a plain JPEG, or PhotoError."""
    if len(data) > max_bytes:
        raise PhotoError("photo_too_large", f"a photo may be at most {max_bytes // 1024} KB")
    codec = next((c for magic, c in _MAGIC.items() if data.startswith(magic)), None)
    if codec is None:
        raise PhotoError("photo_bad_type", "send a JPEG or PNG photo")
    try:
        dec = av.CodecContext.create(codec, "r")
        frames = dec.decode(av.Packet(data)) or dec.decode(None)
    except (av.error.FFmpegError, ValueError):
        frames = []
    if not frames or frames[0].width < 16 or frames[0].height < 16:
        raise PhotoError("photo_unreadable", "this photo could not be read; take it again")
    frame = frames[0]
    scale = min(1.0, max_px / max(frame.width, frame.height))
    width = max(16, int(frame.width * scale) // 2 * 2)
    height = max(16, int(frame.height * scale) // 2 * 2)
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuvj420p"
    enc.time_base = fractions.Fraction(1, 1)
    enc.options = {"q:v": str(JPEG_QUALITY)}
    out = frame.reformat(width=width, height=height, format="yuvj420p")
    out.pts = 0
    return b"".join(bytes(p) for p in [*enc.encode(out), *enc.encode(None)])


def seal_photo(folder: Path, key: bytes, jpeg: bytes) -> tuple[str, str]:
    """Seal into a new random file under ``folder`` (0700); returns (path, sha256 of JPEG)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / f"{secrets.token_hex(16)}.sealed"
    SealedWriter(path, key).seal(jpeg, final=True)
    return str(path), hashlib.sha256(jpeg).hexdigest()


def open_photo(path: str, key: bytes) -> bytes:
    """The JPEG of a sealed photo (RecordingError if it was tampered with)."""
    jpeg, _ = decrypt_bytes(Path(path).read_bytes(), key)
    return jpeg


def delete_photo(path: str) -> None:
    Path(path).unlink(missing_ok=True)
