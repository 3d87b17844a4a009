"""Private files: the one helper for everything that must stay the relay's own.

The data folder (0700), the token-signing key, the recording key, the TLS key and the SQLite
database with its ``-wal``/``-shm`` files (names, dates of birth, audit, evidence frames) are
created for the relay's user alone (0600), and an existing one that the group or others may
read is refused at start with one line that says why and how to fix it: a key or database
that others could read has to be treated as leaked, so the relay does not quietly tighten it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("relay.private")

DIR_MODE = 0o700
FILE_MODE = 0o600
_OTHERS = 0o077
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


class NotPrivate(PermissionError):
    """A secret or database that other users can read (the message says how to fix it)."""


def private_dir(path: Path) -> Path:
    """Create ``path`` for this user only (0700). An existing folder that others may enter is
    only warned about, never changed (it may be shared, like ``/tmp``): the secrets and the
    database inside are checked one by one, and those are refused."""
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)  # whatever the umask
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & _OTHERS and not mode & stat.S_ISVTX:
        log.warning(
            "data folder %s is mode %o; make it private with: chmod 700 %s", path, mode, path
        )
    return path


def check_private(path: Path, what: str) -> None:
    """Refuse ``path`` when the group or others may read or write it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & _OTHERS:
        raise NotPrivate(
            f"{path} ({what}) is readable by other users (mode {mode:o}); "
            f"fix it with: chmod 600 {path}"
        )


def read_private(path: Path, what: str) -> bytes:
    check_private(path, what)
    return path.read_bytes()


def create_private(path: Path, data: bytes) -> bool:
    """Write ``data`` to a new file of mode 0600, durably; False when it already exists
    (another process won the race: read theirs)."""
    if not path.parent.is_dir():
        private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def prepare_database(path: Path) -> None:
    """Before SQLite opens ``path``: the folder private, the file created 0600 (SQLite gives
    its ``-wal`` and ``-shm`` the database's mode), and an existing database or side file
    that others can read refused."""
    if not path.parent.is_dir():
        private_dir(path.parent)
    for side in ("", *SQLITE_SIDE_FILES):
        file = path.with_name(path.name + side)
        if file.exists():
            check_private(file, "the database: names, dates of birth, audit, evidence")
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


def tighten_database(path: Path) -> None:
    """After opening: make sure the side files SQLite made are 0600 too (whatever the umask)."""
    for side in SQLITE_SIDE_FILES:
        file = path.with_name(path.name + side)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(file, FILE_MODE)
