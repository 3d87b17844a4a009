"""A loopback TCP forwarder a test can cut: one relay node's link to Redis, partitioned.

``cut()`` models a network partition between the node and Redis, not a Redis that went
away: the connections open at that moment are dropped (as a partition's TCP connections
eventually are), and new ones are accepted but black-holed (bytes in, nothing out, so the
node's client waits out its own timeout, as it would on a real partition). Redis itself and
every other node keep running. ``restore()`` lets traffic through again; the connections
held during the cut are closed then (their requests are lost, as across a real partition).

It runs its own event loop in a thread: the test's loop also runs the aiortc clients and
encodes their clips, and a forwarder stalled by that would cut nodes off by accident.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any


class CuttableLink:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.cut_now = False
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._held: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def start(self) -> CuttableLink:
        """Listen on 127.0.0.1 (an ephemeral port), served from the link's own thread."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        await asyncio.wrap_future(self._call(self._listen()))
        return self

    def _call(self, coro: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    def cut(self) -> None:
        self._call(self._cut()).result(5)

    def restore(self) -> None:
        self._call(self._restore()).result(5)

    async def _cut(self) -> None:
        self.cut_now = True
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _restore(self) -> None:
        self.cut_now = False
        for writer in list(self._held):
            writer.transport.abort()
        self._held.clear()

    async def stop(self) -> None:
        await asyncio.wrap_future(self._call(self._stop()))
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 5)
        self._loop.close()

    async def _stop(self) -> None:
        await self._cut()
        await self._restore()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_now:
            self._held.add(writer)
            with contextlib.suppress(ConnectionError, OSError):
                while await reader.read(65536):
                    pass  # the black hole: nothing comes back
            self._held.discard(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                self._open.discard(w)
                w.transport.abort()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
