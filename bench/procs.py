"""Child processes that always stop: own process group, bounded waits, kill in ``finally``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent
STREAM_LIMIT = 64 * 1024 * 1024
"""Longest JSON line read from a child (a snapshot of many legs carries per-frame delays)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_range(size: int = 200) -> tuple[int, int]:
    """A UDP port range that is free right now (for Janus's RTP ports)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            start = s.getsockname()[1]
        if start + size < 65000:
            return start, start + size
    return 40000, 40000 + size


class Child:
    """An asyncio subprocess in its own process group; stderr goes to a log file."""

    def __init__(
        self, name: str, argv: list[str], log_dir: Path, stdin: bool = False, stdout_to_log: bool = False
    ) -> None:
        self.name = name
        self.stdout_to_log = stdout_to_log
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        self.stdin = stdin
        self.proc: asyncio.subprocess.Process | None = None
        self._log = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, env: dict[str, str] | None = None) -> None:
        self._log = self.log_path.open("wb")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), full_env.get("PYTHONPATH", "")) if p
        )
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE if self.stdin else asyncio.subprocess.DEVNULL,
            stdout=self._log if self.stdout_to_log else asyncio.subprocess.PIPE,
            stderr=self._log,
            cwd=str(ROOT),
            env=full_env,
            start_new_session=True,
            limit=STREAM_LIMIT,
        )

    async def read_json(self, timeout: float, want: str | None = None) -> dict[str, Any]:
        """The next JSON line on stdout (skipping others); ``want``: its "event" or key."""
        assert self.proc is not None and self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no {want or 'reply'} within {timeout:.0f}s; {self.tail()}")
            line = await asyncio.wait_for(self.proc.stdout.readline(), left)
            if not line:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); {self.tail()}")
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if want is None or data.get("event") == want or want in data:
                return data

    async def send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    def tail(self, chars: int = 800) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        text = text.strip()
        return f"log tail: {text[-chars:]}" if text else "(empty log)"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it lingers."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), grace)
                except TimeoutError:
                    pass
            # the group may hold stragglers even when the leader is gone
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 2.0)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
