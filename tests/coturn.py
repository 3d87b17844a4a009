"""A real coturn (Debian ``coturn``) on 127.0.0.1 for one test: own port, own temporary
folder, stopped afterwards. Started the way scripts/coturn starts it for ``make coturn``."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "coturn"


def free_port() -> int:
    """A port free for both UDP and TCP on loopback (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port")


@contextlib.asynccontextmanager
async def coturn(secret: str) -> AsyncIterator[int]:
    """Run scripts/coturn on a free port with ``secret``; yields the port."""
    if not shutil.which("turnserver"):
        pytest.fail("Debian's coturn is required (apt-get install coturn; scripts/system-deps)")
    port = free_port()
    folder = tempfile.mkdtemp(prefix="coturn-")
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "--port",
        str(port),
        "--secret",
        secret,
        "--dir",
        folder,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            if proc.returncode is not None:
                raise RuntimeError(f"coturn exited with {proc.returncode}")
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("coturn did not start listening")
        yield port
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
