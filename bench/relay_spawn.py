"""Running the real ``python -m relay`` as a subprocess, the way an operator does."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RelayProcess:
    proc: subprocess.Popen
    url: str
    banner: str
    family_token: str
    laptop_id: str
    laptop_secret: str
    booking_id: int
    log_path: str

    async def prison_token(self) -> str:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{self.url}/api/v1/laptop/token",
                              json={"laptop_id": int(self.laptop_id),
                                    "laptop_secret": self.laptop_secret,
                                    "booking_id": self.booking_id}) as r:
                body = await r.json()
                assert r.status == 200, body
                return body["token"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


async def start_relay(data_dir, port: int | None = None, env: dict[str, str] | None = None,
                      timeout: float = 30.0) -> RelayProcess:
    port = port or free_port()
    log_path = str(data_dir / f"relay-{port}-{time.time_ns()}.log")
    environ = {**os.environ, "RELAY_PORT": str(port), "RELAY_DATA_DIR": str(data_dir),
               "RELAY_RECORDINGS_DIR": str(data_dir / "recordings"), "PYTHONUNBUFFERED": "1",
               **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "relay"], stdout=log,
                                stderr=subprocess.STDOUT, env=environ)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    banner = ""
    while time.monotonic() < deadline:
        banner = open(log_path).read()
        if "relay listening on" in banner:
            break
        if proc.poll() is not None:
            raise RuntimeError(f"relay exited {proc.returncode}: {banner[-2000:]}")
        await asyncio.sleep(0.2)
    else:
        proc.kill()
        raise TimeoutError(f"relay did not start: {banner[-2000:]}")
    family = re.search(r"/join\?token=(\S+)", banner)
    laptop = re.search(r"--laptop-id (\S+) --laptop-secret (\S+) --booking (\d+)", banner)
    return RelayProcess(proc, url, banner, family.group(1) if family else "",
                        laptop.group(1) if laptop else "", laptop.group(2) if laptop else "",
                        int(laptop.group(3)) if laptop else 0, log_path)
