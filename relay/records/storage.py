"""Where recordings and their sealed chunks live: a small storage interface, a folder by default.

Every node writes and reads recordings through ``Storage``, so a recording survives the node
that wrote it: the default backend, ``FolderStorage``, is a folder that all nodes mount (a
local disk for one node; NFS or another shared volume for several, see docs/deploy.md).
Objects are named by relative keys (``"3/booking-7-20260101T120000Z-ab12cd34.webm.enc"``),
made here from ids and random names, never taken from a client: a key with ``..``, a leading
``/``, an empty part or other characters is refused (``BadKey``), and a resolved path must
stay inside the root.

Durability: an object is opened for append (``create``, exclusive: one writer per key); the
recorder seals one chunk per ``recording_chunk_s`` and calls ``sync`` after each (fsync), so a
crash of the node (or the machine) loses at most the chunk being filled. Folders are 0700 and
files 0600 (relay/private.py): only the relay's user reads them.

Evidence frames are not here: they stay in the database (``audit_evidence``), written in the
same transaction as the hash-chained audit record that names them, and shared with the other
nodes through the database (PostgreSQL with several nodes).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from relay import private

_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,159}")
MAX_DEPTH = 4


class BadKey(ValueError):
    """A key that is not one of ours: absolute, with ``..``, odd characters or too deep."""


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or len(parts) > MAX_DEPTH or any(not _PART.fullmatch(p) or ".." in p for p in parts):
        raise BadKey(f"not a storage key: {key[:80]!r}")
    return key


class Appender(Protocol):
    """An object being written: appended to, made durable, closed."""

    def write(self, data: bytes) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...


class Storage(Protocol):
    """What recordings are written to and read from (blocking calls: run them off the loop)."""

    def create(self, key: str) -> Appender:
        """A new object for append; FileExistsError if the key is taken (one writer per key)."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Read from the start; FileNotFoundError when missing. Reads what is durable so far."""
        ...

    def size(self, key: str) -> int: ...
    def modified(self, key: str) -> float: ...
    def list(self, prefix: str = "") -> list[str]: ...

    def delete(self, key: str) -> bool:
        """Remove an object; False when it was not there."""
        ...


class FileAppender:
    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class FolderStorage:
    """Objects as files under ``root`` (a local or shared folder), keys as relative paths."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def prepare(self) -> None:
        """Create the root (0700) at start, so a missing or unwritable mount fails early."""
        self._folder(self.root)

    def path(self, key: str) -> Path:
        """The file of ``key``, refusing anything that would leave the root (a link too)."""
        check_key(key)
        root = self.root.resolve()
        path = (root / key).resolve()
        if root not in path.parents:
            raise BadKey(f"key leaves the storage folder: {key[:80]!r}")
        return path

    def _folder(self, folder: Path) -> None:
        """Create the folders down to ``folder``, each 0700, the new names made durable."""
        missing = []
        while not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for made in reversed(missing):
            private.private_dir(made)
            _sync_dir(made.parent)

    def create(self, key: str) -> Appender:
        path = self.path(key)
        self._folder(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, private.FILE_MODE)
        _sync_dir(path.parent)  # the new name survives a crash as well as its data
        return FileAppender(fd)

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")  # noqa: SIM115 - the caller closes it

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def modified(self, key: str) -> float:
        return self.path(key).stat().st_mtime

    def list(self, prefix: str = "") -> list[str]:
        base = self.root.resolve()
        if not base.is_dir():
            return []
        return sorted(k for k in _walk(base, base) if k.startswith(prefix))

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True


def _walk(base: Path, folder: Path) -> Iterator[str]:
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(base, Path(entry.path))
        elif entry.is_file(follow_symlinks=False):
            yield Path(entry.path).relative_to(base).as_posix()


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
