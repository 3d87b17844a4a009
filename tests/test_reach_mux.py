"""One UDP port for all media (issue 17): every leg of four calls on one relay socket, and a
garbage flood at that port stops no call."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from bench.scenarios import ice_connections
from protocol import aiortc_glue
from protocol.client import CallClient
from protocol.media import EncodedTrack
from relay import keys
from relay.app import build_app
from relay.config import Config
from tests.support import TokenTable, admission, tone_clip, video_clip

CALLS = 4


def udp_sockets_on(port: int) -> list[int]:
    """The kernel's receive-drop count of each socket bound to 127.0.0.1:``port``."""
    drops = []
    with open("/proc/net/udp") as table:
        next(table)
        for line in table:
            fields = line.split()
            addr, hex_port = fields[1].split(":")
            if addr == "0100007F" and int(hex_port, 16) == port:
                drops.append(int(fields[-1]))
    return drops


def nominated_local_ports(pc) -> set[int]:
    return {
        pair.local_candidate.port
        for conn in ice_connections(pc)
        for pair in conn._nominated.values()
    }


@contextlib.asynccontextmanager
async def mux_relay(config: Config, tokens: TokenTable) -> AsyncIterator[TestServer]:
    server = TestServer(build_app(config.replace(media_mux=True), admit=tokens), host="127.0.0.1")
    await server.start_server()
    server.base_url = str(server.make_url("")).rstrip("/")
    try:
        yield server
    finally:
        await server.close()
        aiortc_glue.use_media_mux(False)


def garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return b""
    if kind == 1:  # STUN binding request naming a ufrag nobody has
        username = f"{rng.getrandbits(32):08x}:zz".encode()
        attr = b"\x00\x06" + len(username).to_bytes(2, "big") + username
        attr += b"\x00" * (-len(attr) % 4)
        return (
            b"\x00\x01" + len(attr).to_bytes(2, "big") + b"\x21\x12\xa4\x42" + os.urandom(12) + attr
        )
    if kind == 2:  # RTP-looking
        return b"\x80\x60" + os.urandom(rng.randrange(10, 1200))
    return os.urandom(rng.randrange(1, 1400))


async def test_four_calls_share_one_media_port_and_survive_a_garbage_flood(config, tokens):
    rng = random.Random(17)
    clients: list[CallClient] = []
    async with mux_relay(config, tokens) as relay:
        try:
            for i in range(CALLS):
                booking = 80 + i
                for role in ("family", "prison"):
                    token = tokens.add(f"{role}-{booking}", admission(booking, role))
                    client = CallClient(
                        relay.base_url,
                        token,
                        receive="count",
                        video=EncodedTrack("video", video_clip(seed=i), 30),
                        audio=EncodedTrack("audio", tone_clip(300 + 50 * i), 50),
                    )
                    await client.join()
                    clients.append(client)
            for client in clients:
                await client.wait_frames("video0", 15, timeout=40)
                await client.wait_frames("audio0", 15, timeout=40)

            (port,) = aiortc_glue.media_mux_ports().values()
            legs = [
                leg
                for live in relay.app[keys.REGISTRY].calls.values()
                for leg in live.call.legs.values()
            ]
            assert len(legs) == 2 * CALLS
            for leg in legs:
                assert nominated_local_ports(leg.pc) == {port}
                for conn in ice_connections(leg.pc):
                    for protocol in conn._protocols:
                        assert protocol.transport.get_extra_info("sockname")[1] == port
            (kernel_drops_before,) = udp_sockets_on(port)  # one socket, not one per leg

            # unknown senders' datagrams are dropped and counted
            counted = aiortc_glue.mux_dropped
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for _ in range(100):
                    sock.sendto(garbage(rng) or b"x", ("127.0.0.1", port))
                    await asyncio.sleep(0.005)
            for _ in range(100):
                if aiortc_glue.mux_dropped - counted >= 100:
                    break
                await asyncio.sleep(0.1)
            assert aiortc_glue.mux_dropped - counted >= 95  # (a few may die in a full buffer)

            # a garbage flood at the shared port: every call's counters keep moving
            dropped_before = aiortc_glue.mux_dropped
            before = [c.packets["video0"] for c in clients]
            sent = 0  # non-empty ones: the event loop may never report an empty datagram
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for i in range(3000):
                    data = garbage(rng)
                    sock.sendto(data, ("127.0.0.1", port))
                    sent += bool(data)
                    if i % 20 == 19:
                        await asyncio.sleep(0.02)
            await asyncio.sleep(1.5)
            after = [c.packets["video0"] for c in clients]
            assert all(a - b > 20 for a, b in zip(after, before, strict=True)), (before, after)
            dropped = aiortc_glue.mux_dropped - dropped_before
            # what the relay did not drop itself the kernel did (a full buffer on a busy box)
            (kernel_drops,) = udp_sockets_on(port)
            assert dropped + kernel_drops - kernel_drops_before >= 0.95 * sent, (dropped, sent)
            mid = [c.packets["video0"] for c in clients]
            await asyncio.sleep(1.0)
            assert all(c.packets["video0"] - m > 10 for c, m in zip(clients, mid, strict=True))
            async with ClientSession() as http:
                async with http.get(relay.base_url + "/metrics") as resp:
                    text = await resp.text()
            line = next(
                x for x in text.splitlines() if x.startswith("relay_media_mux_dropped_total")
            )
            assert float(line.split()[1]) >= dropped
        finally:
            for client in clients:
                await client.close()
