"""Network impairment without netem: loss, delay, jitter and a "cut" switch, in user space.

Three ways to put an :class:`Impairment` on a path, all on loopback:

* :func:`impair_peer_connection` (what the tests use): a test-only shim on one aiortc peer
  connection's aioice sockets. Every datagram that connection sends or receives (STUN, DTLS,
  SRTP, SRTCP) passes the impairment; the relay side and every other connection in the same
  process are untouched. No address rewriting is needed, and ICE, consent checks and DTLS see
  exactly what a lossy network would give them.
* :class:`UdpImpairProxy`: a standalone UDP proxy ``listen -> target``, for impairing a client
  in another process (``python -m bench.impair udp --listen 127.0.0.1:40000 --target
  127.0.0.1:PORT --loss 5 --delay 100``). ICE makes it awkward in front of the relay: the
  relay's answer announces its own port, and ``Config.announced_address`` rewrites only the
  address, so a client has to be pointed at the proxy by editing the candidate port too.
* :class:`TcpCutProxy`: a TCP proxy for the signalling socket whose "cut" holds every byte in
  both directions (as a dead link does, without a reset) until the cut ends.

Only loopback addresses are accepted: this is a test tool, never aimed at a real network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Impairment:
    """What happens to each datagram: dropped (loss, cut) or delivered late (delay, jitter)."""

    loss: float = 0.0
    """Probability (0..1) that a datagram is dropped, each direction independently."""
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    """Uniform +/- jitter added to the delay (reordering is then possible, as on a real path)."""
    seed: int | None = 1
    cut_until: float = 0.0
    """``time.monotonic()`` before which every datagram is dropped."""
    passed: int = 0
    dropped: int = 0
    cut_dropped: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def cut(self, seconds: float) -> None:
        """Drop everything for the next ``seconds``."""
        self.cut_until = time.monotonic() + seconds

    @property
    def cutting(self) -> bool:
        return time.monotonic() < self.cut_until

    async def wait_open(self) -> None:
        while self.cutting:
            await asyncio.sleep(min(0.1, self.cut_until - time.monotonic()))

    def apply(self, deliver: Callable[[], None]) -> None:
        """Call ``deliver`` now, later, or never."""
        if self.cutting:
            self.cut_dropped += 1
            return
        if self.loss and self._rng.random() < self.loss:
            self.dropped += 1
            return
        self.passed += 1
        delay = self.delay_ms
        if self.jitter_ms:
            delay += self._rng.uniform(-self.jitter_ms, self.jitter_ms)
        if delay <= 0:
            deliver()
        else:
            asyncio.get_running_loop().call_later(delay / 1000.0, deliver)


def check_loopback(host: str) -> str:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"{host} is not a loopback address: this tool only impairs loopback")
    return host


# --- the in-process shim ----------------------------------------------------------------------


class _ImpairedTransport:
    """Wraps a DatagramTransport: ``sendto`` goes through the impairment."""

    def __init__(self, inner: asyncio.DatagramTransport, impairment: Impairment) -> None:
        self._inner = inner
        self._impairment = impairment

    def sendto(self, data: bytes, addr: Any = None) -> None:
        inner = self._inner

        def deliver() -> None:
            if not inner.is_closing():
                inner.sendto(data, addr)

        self._impairment.apply(deliver)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def ice_connections(pc: Any) -> list[Any]:
    """The aioice connections under an aiortc peer connection (one with BUNDLE)."""
    found: list[Any] = []
    for t in pc.getTransceivers():
        for dtls in (t.sender.transport, t.receiver.transport):
            conn = getattr(getattr(dtls, "transport", None), "_connection", None)
            if conn is not None and conn not in found:
                found.append(conn)
    return found


def impair_peer_connection(pc: Any, impairment: Impairment) -> int:
    """Impair both directions of every socket of ``pc`` (call after setLocalDescription).

    Returns how many sockets were wrapped. A test-only shim on aioice's StunProtocol
    instances (``transport`` and ``datagram_received``), pinned to aioice 0.13."""
    wrapped = 0
    for conn in ice_connections(pc):
        for protocol in conn._protocols:
            if getattr(protocol, "_impaired", False):
                continue
            receive = protocol.datagram_received

            def impaired_receive(data: bytes, addr: Any, _receive=receive) -> None:
                impairment.apply(lambda: _receive(data, addr))

            protocol.datagram_received = impaired_receive
            protocol.transport = _ImpairedTransport(protocol.transport, impairment)
            protocol._impaired = True
            wrapped += 1
    return wrapped


@dataclass
class RateLimit:
    """A thin link: a token bucket on receive (``bps``) whose queue holds at most ``queue_s``
    of data; beyond that datagrams are dropped, as at a home router's full buffer."""

    bps: float
    queue_s: float = 0.25
    passed: int = 0
    dropped: int = 0
    _free_at: float = field(default=0.0, repr=False)

    def apply(self, size: int, deliver: Callable[[], None]) -> None:
        now = time.monotonic()
        start = max(now, self._free_at)
        if start - now > self.queue_s:
            self.dropped += 1
            return
        self._free_at = start + size * 8 / self.bps
        self.passed += 1
        asyncio.get_running_loop().call_later(self._free_at - now, deliver)


def limit_receive_rate(pc: Any, limit: RateLimit) -> int:
    """Put ``limit`` on everything ``pc``'s sockets receive (its downlink); sending is left
    alone. Returns how many sockets were wrapped (call after setLocalDescription)."""
    wrapped = 0
    for conn in ice_connections(pc):
        for protocol in conn._protocols:
            receive = protocol.datagram_received

            def limited_receive(data: bytes, addr: Any, _receive=receive) -> None:
                limit.apply(len(data) + 28, lambda: _receive(data, addr))  # + IP/UDP headers

            protocol.datagram_received = limited_receive
            wrapped += 1
    return wrapped


# --- standalone proxies -----------------------------------------------------------------------


class _UdpSide(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Any], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_datagram(data, addr)


class UdpImpairProxy:
    """Datagrams from clients on ``listen`` go to ``target`` through the impairment, and back.

    Each client address gets its own upstream socket, so the target sees one peer per client."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int],
                 impairment: Impairment) -> None:
        self.listen = (check_loopback(listen[0]), listen[1])
        self.target = (check_loopback(target[0]), target[1])
        self.impairment = impairment
        self._front: asyncio.DatagramTransport | None = None
        self._upstream: dict[Any, asyncio.DatagramTransport] = {}

    @property
    def address(self) -> tuple[str, int]:
        assert self._front is not None
        return self._front.get_extra_info("sockname")[:2]

    async def start(self) -> UdpImpairProxy:
        loop = asyncio.get_running_loop()
        self._front, _ = await loop.create_datagram_endpoint(
            lambda: _UdpSide(self._from_client), local_addr=self.listen
        )
        return self

    def _from_client(self, data: bytes, client: Any) -> None:
        asyncio.ensure_future(self._forward_up(data, client))

    async def _forward_up(self, data: bytes, client: Any) -> None:
        up = self._upstream.get(client)
        if up is None:
            loop = asyncio.get_running_loop()
            front = self._front

            def back(reply: bytes, _addr: Any) -> None:
                if front is not None and not front.is_closing():
                    self.impairment.apply(lambda: front.sendto(reply, client))

            up, _ = await loop.create_datagram_endpoint(
                lambda: _UdpSide(back), local_addr=(self.listen[0], 0), remote_addr=self.target
            )
            self._upstream[client] = up
        self.impairment.apply(lambda: up.is_closing() or up.sendto(data))

    def close(self) -> None:
        for t in self._upstream.values():
            t.close()
        if self._front is not None:
            self._front.close()


class TcpCutProxy:
    """A TCP proxy whose cut holds bytes both ways (nothing is lost, nothing gets through)."""

    def __init__(self, target: tuple[str, int], impairment: Impairment,
                 listen: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.target = (check_loopback(target[0]), target[1])
        self.listen = (check_loopback(listen[0]), listen[1])
        self.impairment = impairment
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> TcpCutProxy:
        self._server = await asyncio.start_server(self._handle, *self.listen)
        return self

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.impairment.wait_open()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            await self.impairment.wait_open()
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        tasks = [asyncio.ensure_future(self._pump(reader, up_writer)),
                 asyncio.ensure_future(self._pump(up_reader, writer))]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks)
        finally:
            self._tasks.difference_update(tasks)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return check_loopback(host.strip("[]")), int(port)


async def _main(args: argparse.Namespace) -> None:
    imp = Impairment(loss=args.loss / 100, delay_ms=args.delay, jitter_ms=args.jitter, seed=None)
    if args.mode == "udp":
        proxy = await UdpImpairProxy(_hostport(args.listen), _hostport(args.target), imp).start()
        print(f"udp impairment proxy on {proxy.address} -> {args.target}", flush=True)
    else:
        tcp = await TcpCutProxy(_hostport(args.target), imp, _hostport(args.listen)).start()
        print(f"tcp cut proxy on port {tcp.port} -> {args.target}", flush=True)
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        if args.cut_every and args.cut:
            await asyncio.sleep(args.cut_every)
            imp.cut(args.cut)
            print(f"cut for {args.cut}s", flush=True)
        else:
            await asyncio.sleep(1)
    print(f"passed={imp.passed} dropped={imp.dropped} cut_dropped={imp.cut_dropped}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["udp", "tcp"])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--target", required=True, help="127.0.0.1:PORT")
    p.add_argument("--loss", type=float, default=0.0, help="percent")
    p.add_argument("--delay", type=float, default=0.0, help="ms")
    p.add_argument("--jitter", type=float, default=0.0, help="ms")
    p.add_argument("--cut", type=float, default=0.0, help="seconds of total loss")
    p.add_argument("--cut-every", type=float, default=0.0, help="seconds between cuts")
    p.add_argument("--duration", type=float, default=60.0, help="stop after this many seconds")
    asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()
