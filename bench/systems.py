"""The systems under test, each started fresh per point in its own process on loopback."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from bench import janus
from bench.procs import PYTHON, Child, free_port, free_udp_range

STARTUP_TIMEOUT = 30.0


class System:
    name = ""
    has_metrics = False
    forwards_packets = True
    """True where received RTP packets should match what the far side sent (no re-encoding)."""

    def __init__(self, log_dir: Path, max_seconds: float) -> None:
        self.log_dir = log_dir
        self.max_seconds = max_seconds
        self.port = 0
        self.child: Child | None = None
        self.info: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str | None:
        return f"{self.url}/metrics" if self.has_metrics else None

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    def skip_reason(self) -> str | None:
        return None

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self.child is not None:
            await self.child.stop()


class RelaySystem(System):
    name = "relay"
    has_metrics = True

    def __init__(self, log_dir: Path, max_seconds: float, features: set[str], calls: int) -> None:
        super().__init__(log_dir, max_seconds)
        self.features = features
        self.calls = calls

    async def start(self) -> None:
        self.port = free_port()
        data_dir = tempfile.mkdtemp(prefix="relay-", dir=self.log_dir)
        argv = [
            PYTHON, "-m", "bench.relay_proc", "--port", str(self.port),
            "--media-address", "127.0.0.1", "--calls", str(self.calls),
            "--features", ",".join(sorted(self.features)), "--data-dir", data_dir,
            "--max-seconds", str(self.max_seconds),
        ]
        self.child = Child("relay", argv, self.log_dir)
        await self.child.start()
        self.info = await self.child.read_json(STARTUP_TIMEOUT, want="ready")
        await wait_http(f"{self.url}/healthz", STARTUP_TIMEOUT)


class NaiveSystem(System):
    name = "naive"
    forwards_packets = False

    async def start(self) -> None:
        self.port = free_port()
        argv = [PYTHON, "-m", "bench.naive", "--port", str(self.port), "--max-seconds", str(self.max_seconds)]
        self.child = Child("naive", argv, self.log_dir)
        await self.child.start()
        self.info = await self.child.read_json(STARTUP_TIMEOUT, want="ready")
        await wait_http(f"{self.url}/healthz", STARTUP_TIMEOUT)


class JanusSystem(System):
    name = "janus"

    def skip_reason(self) -> str | None:
        return janus.skip_reason()

    async def start(self) -> None:
        self.port = free_port()
        conf = Path(tempfile.mkdtemp(prefix="janus-conf-", dir=self.log_dir))
        argv = ["timeout", "-s", "TERM", str(int(self.max_seconds))]
        argv += janus.command(conf, self.port, free_udp_range())
        # Janus logs to stdout: keep it in the log file, never in an unread pipe
        self.child = Child("janus", argv, self.log_dir, stdout_to_log=True)
        await self.child.start()
        await wait_http(f"{self.url}/janus/info", STARTUP_TIMEOUT, child=self.child)
        self.info = {"entry_point": "janus (VideoCall plugin)", "config_dir": str(conf)}

    @property
    def pid(self) -> int:
        # `timeout` execs nothing: Janus is its child; measure Janus itself
        assert self.child is not None
        return _only_child(self.child.pid)


def _only_child(pid: int) -> int:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pid
    return int(children[0]) if children else pid


async def wait_http(url: str, timeout: float, child: Child | None = None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while loop.time() < deadline:
            if child is not None and not child.alive():
                raise RuntimeError(f"{child.name} exited; {child.tail()}")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


async def scrape(url: str | None) -> str | None:
    if url is None:
        return None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(url) as resp:
            return await resp.text()
