"""Recordings at rest: AES-256-GCM in sealed chunks, so a crash loses only the last chunk.

File layout (all integers big-endian)::

    header   MAGIC (8) | file_id (16, random) | key_id (8)
    chunk*   length (u32, of the ciphertext incl. its 16-byte tag) | flags (u8) | ciphertext

Each file gets its own AES key, HKDF-SHA256(master key, salt=file_id), so chunk nonces (the
chunk index, 12 bytes) never repeat under one key. A chunk's additional authenticated data is
the whole header, its index and its flags: a chunk that is altered, moved, dropped from the
middle or copied from another file fails to open, and a clean end is marked by the FINAL flag
on the last chunk, so a file cut short (the relay crashed, or someone truncated it) is told
apart from a complete one. ``key_id`` (an HMAC of the master key) tells "wrong key" from
"tampered" without revealing anything about the key.

Tools::

    python -m relay.records.sealed decrypt IN OUT [--allow-truncated]

takes the key from ``RELAY_RECORDING_KEY`` or from ``RELAY_DATA_DIR``/recording.key, like the
relay does (relay/config.py).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from relay import private
from relay.config import Config
from relay.records.storage import Appender, FileAppender

MAGIC = b"RLYREC\x00\x01"
HEADER_SIZE = len(MAGIC) + 16 + 8
CHUNK_HEAD = struct.Struct(">IB")
TAG_SIZE = 16
FLAG_FINAL = 0x01
MAX_CHUNK = 256 * 1024 * 1024
"""No chunk of a real recording comes near this; a larger length field means a damaged file."""
KEY_FILE = "recording.key"


class RecordingError(Exception):
    """The file cannot be trusted: not a recording, wrong key, tampered or reordered."""


class TruncatedRecording(RecordingError):
    """The file ends before its FINAL chunk (a crash, or someone cut it short)."""


# --- keys ----------------------------------------------------------------------------------


def load_key(config: Config, create: bool = True) -> bytes:
    """The master key: ``config.recording_key`` (hex), else ``data_dir/recording.key``.

    The key file is created once (mode 0600) when neither exists and ``create`` (the relay;
    tools pass False). An existing key file that other users can read is refused.
    """
    if config.recording_key:
        try:
            key = bytes.fromhex(config.recording_key.strip())
        except ValueError:
            raise ValueError("RELAY_RECORDING_KEY is not hex") from None
        if len(key) != 32:
            raise ValueError("RELAY_RECORDING_KEY must be 32 bytes (64 hex digits) for AES-256")
        return key
    path = Path(config.data_dir) / KEY_FILE
    if not create:
        if not path.exists():
            raise FileNotFoundError(
                f"no recording key: set RELAY_RECORDING_KEY or RELAY_DATA_DIR (no {path})"
            )
        return _read_key_file(path)
    key = os.urandom(32)
    if private.create_private(path, key.hex().encode("ascii") + b"\n"):
        return key
    return _read_key_file(path)  # another process made it first


def _read_key_file(path: Path) -> bytes:
    key = bytes.fromhex(private.read_private(path, "the recording key").decode().strip())
    if len(key) != 32:
        raise ValueError(f"{path} does not hold a 32-byte key")
    return key


def key_id(key: bytes) -> bytes:
    return hmac.new(key, b"relay recording key id", hashlib.sha256).digest()[:8]


def _file_key(key: bytes, file_id: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=file_id, info=b"relay recording v1")
    return AESGCM(hkdf.derive(key))


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


def _aad(header: bytes, index: int, flags: int) -> bytes:
    return header + index.to_bytes(8, "big") + bytes([flags])


# --- writing -------------------------------------------------------------------------------


class SealedWriter:
    """Appends sealed chunks to a new file. Not thread-safe: one writer thread per file."""

    def __init__(self, path: Path | Appender, key: bytes, fsync: bool = True) -> None:
        """``path``: a new file, or an object opened for append in the recordings storage
        (relay/records/storage.py)."""
        self.path = path if isinstance(path, Path) else None
        self.fsync = fsync
        file_id = os.urandom(16)
        self.header = MAGIC + file_id + key_id(key)
        self._aead = _file_key(key, file_id)
        self._index = 0
        self._closed = False
        self.size = 0
        self.sha256 = hashlib.sha256()
        if isinstance(path, Path):
            # O_EXCL: never write into someone else's file; 0600: only the relay's user reads it
            path = FileAppender(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._file: Appender = path
        self._write(self.header)

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self.sha256.update(data)
        self.size += len(data)

    def seal(self, plaintext: bytes, final: bool = False) -> int:
        """Encrypt and append one chunk, then make it durable; returns bytes written."""
        if self._closed:
            raise ValueError("the recording is already closed")
        flags = FLAG_FINAL if final else 0
        ciphertext = self._aead.encrypt(
            _nonce(self._index), plaintext, _aad(self.header, self._index, flags)
        )
        record = CHUNK_HEAD.pack(len(ciphertext), flags) + ciphertext
        self._write(record)
        if self.fsync:
            self._file.sync()  # durable chunk by chunk: a crash loses at most the next one
        self._index += 1
        if final:
            self.close()
        return len(record)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._file.close()


# --- reading -------------------------------------------------------------------------------


@dataclass
class ReadResult:
    chunks: int = 0
    plaintext_bytes: int = 0
    complete: bool = False


class SealedReader:
    """Iterates a recording's plaintext chunk by chunk, checking each one."""

    def __init__(self, source: BinaryIO, key: bytes, allow_truncated: bool = False) -> None:
        self._src = source
        self._key = key
        self.allow_truncated = allow_truncated
        self.result = ReadResult()

    def chunks(self) -> Iterator[bytes]:
        header = self._src.read(HEADER_SIZE)
        if len(header) < HEADER_SIZE or not header.startswith(MAGIC):
            raise RecordingError("not an encrypted recording (bad header)")
        file_id, kid = header[8:24], header[24:32]
        if not hmac.compare_digest(kid, key_id(self._key)):
            raise RecordingError("this recording was sealed with a different key")
        aead = _file_key(self._key, file_id)
        index = 0
        while True:
            head = self._src.read(CHUNK_HEAD.size)
            if not head:
                break
            if len(head) < CHUNK_HEAD.size:
                self._truncated(f"cut inside chunk {index}'s header")
                return
            length, flags = CHUNK_HEAD.unpack(head)
            if length < TAG_SIZE or length > MAX_CHUNK or flags & ~FLAG_FINAL:
                raise RecordingError(f"chunk {index} has a damaged header")
            if self.result.complete:
                raise RecordingError("data follows the final chunk")
            body = self._src.read(length)
            if len(body) < length:
                self._truncated(f"cut inside chunk {index}")
                return
            try:
                plain = aead.decrypt(_nonce(index), body, _aad(header, index, flags))
            except InvalidTag:
                raise RecordingError(
                    f"chunk {index} failed authentication (altered, reordered or missing chunks)"
                ) from None
            index += 1
            self.result.chunks = index
            self.result.plaintext_bytes += len(plain)
            if flags & FLAG_FINAL:
                self.result.complete = True
            yield plain
        if not self.result.complete:
            self._truncated(f"ends after chunk {index - 1} without its final chunk")

    def _truncated(self, why: str) -> None:
        if not self.allow_truncated:
            raise TruncatedRecording(f"the recording is incomplete: {why}")


def decrypt_file(src: Path, dst: Path, key: bytes, allow_truncated: bool = False) -> ReadResult:
    """Write a recording's plaintext (a playable WebM) to ``dst`` (created 0600)."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            reader = SealedReader(fin, key, allow_truncated=allow_truncated)
            for plain in reader.chunks():
                fout.write(plain)
    except BaseException:
        dst.unlink(missing_ok=True)  # no half-verified plaintext left lying around
        raise
    return reader.result


def decrypt_bytes(data: bytes, key: bytes, allow_truncated: bool = False) -> tuple[bytes, ReadResult]:
    import io

    reader = SealedReader(io.BytesIO(data), key, allow_truncated=allow_truncated)
    plain = b"".join(reader.chunks())
    return plain, reader.result


def sha256_file(path: Path) -> tuple[int, str]:
    with open(path, "rb") as f:
        return sha256_stream(f)


def sha256_stream(f: BinaryIO) -> tuple[int, str]:
    """Size and SHA-256 of what ``f`` holds from here to its end."""
    h = hashlib.sha256()
    size = 0
    while block := f.read(1 << 20):
        h.update(block)
        size += len(block)
    return size, h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relay.records.sealed")
    sub = parser.add_subparsers(dest="command", required=True)
    dec = sub.add_parser("decrypt", help="decrypt a recording to a playable WebM file")
    dec.add_argument("src", type=Path)
    dec.add_argument("dst", type=Path)
    dec.add_argument(
        "--allow-truncated",
        action="store_true",
        help="write what can be verified of a recording that was cut short (relay crash)",
    )
    args = parser.parse_args(argv)
    try:
        key = load_key(Config.from_env(), create=False)
    except (OSError, ValueError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    try:
        result = decrypt_file(args.src, args.dst, key, allow_truncated=args.allow_truncated)
    except TruncatedRecording as exc:
        print(f"{exc}; rerun with --allow-truncated to keep what was written", file=sys.stderr)
        return 2
    except RecordingError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    state = "complete" if result.complete else "INCOMPLETE (cut short)"
    print(f"{args.dst}: {result.plaintext_bytes} bytes from {result.chunks} chunks, {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
