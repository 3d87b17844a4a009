"""A real coturn (Debian ``coturn``) on 127.0.0.1 for one test: own port, own temporary
folder, stopped afterwards. Started the way scripts/coturn starts it for ``make coturn``;
optionally also TURN over TLS (``turns:``) with a certificate made by relay/tls.py."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from relay import tls

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


def free_tcp_port(other_than: int) -> int:
    """A TCP port free on loopback (coturn's TLS listener is TCP only: ``no-dtls``)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
        if port != other_than:
            return port


@dataclass(frozen=True)
class Coturn:
    """A running coturn: its plain port (UDP and TCP) and, with TLS, its TLS port and the
    certificate it serves (self-signed, so it is also the CA a client must trust)."""

    port: int
    tls_port: int | None = None
    ca: Path | None = None


async def _listening(proc: asyncio.subprocess.Process, port: int) -> None:
    for _ in range(100):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        if proc.returncode is not None:
            raise RuntimeError(f"coturn exited with {proc.returncode}")
        await asyncio.sleep(0.1)
    raise RuntimeError("coturn did not start listening")


@contextlib.asynccontextmanager
async def coturn(secret: str, with_tls: bool = False) -> AsyncIterator[Coturn]:
    """Run scripts/coturn on a free port with ``secret``. ``with_tls``: also TURN over TLS on
    another free port, with a fresh certificate for ``127.0.0.1`` and ``localhost`` (key 0600)
    in the temporary folder."""
    if not shutil.which("turnserver"):
        pytest.fail("Debian's coturn is required (apt-get install coturn; scripts/system-deps)")
    port = free_port()
    folder = tempfile.mkdtemp(prefix="coturn-")
    args = ["--port", str(port), "--secret", secret, "--dir", folder]
    server = Coturn(port)
    if with_tls:
        cert, key = tls.generate(Path(folder) / "tls", ("127.0.0.1", "localhost"), days=1)
        server = Coturn(port, free_tcp_port(port), cert)
        args += ["--tls-port", str(server.tls_port), "--cert", str(cert), "--pkey", str(key)]
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await _listening(proc, port)
        if server.tls_port is not None:
            await _listening(proc, server.tls_port)
        yield server
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
