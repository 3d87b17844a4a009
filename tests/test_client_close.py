"""``CallClient.close()`` while the client is rejoining by itself after a drop returns promptly
and leaves nothing running: no socket, no peer connection, no task (a task still pending at
the loop's end is the "Task was destroyed but it is pending" warning).

The relay runs on an event loop of its own, in a thread, so every task on the test's loop is
the family client's own and "nothing left" can be checked exactly. The family reaches the
relay through a loopback TCP forwarder the test cuts (tests/tcp_cut.py): a cut drops the
client's signalling socket (the relay stays up), so the client rejoins by itself."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from bench.product import Product, start_product
from protocol.client import CLOSE_TIMEOUT_S, CallClient
from protocol.media import EncodedTrack
from tests.support import tone_clip, video_clip
from tests.tcp_cut import CuttableLink

CLOSE_BOUND_S = 5.0
STALL_S = 8.0  # longer than CLOSE_BOUND_S: a close that waits on the stalled node fails


class RelayThread:
    """The whole relay on its own loop and thread; one prison leg per call, on that loop."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.prisons: list[CallClient] = []
        self.product: Product | None = None

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        self.product = await start_product(self.tmp_path, reconnect_grace_s=60.0)

    async def _new_call(self) -> str:
        p = self.product
        booking = p.booking_now(seconds=600)
        prison = CallClient(
            p.url,
            await p.prison_token(booking),
            receive="count",
            video=EncodedTrack("video", video_clip(seed=2), 30),
        )
        self.prisons.append(prison)
        await prison.join()
        return await p.family_token(booking)

    def new_call(self) -> str:
        """A call that is open now with its prison leg joined; the family's join token."""
        return self.call(self._new_call())

    def stall(self, seconds: float) -> None:
        """The node stops answering for a while (a blocked loop), its sockets still open."""
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    async def _stop(self) -> None:
        for prison in self.prisons:
            await prison.close()
        await self.product.server.close()
        # what asyncio.run does before it closes its loop: the relay's own leftovers (legs
        # still inside their reconnect grace) are cancelled, not destroyed pending
        me = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not me]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def __enter__(self) -> RelayThread:
        self.thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self._stop(), timeout=STALL_S + 60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _left_running() -> list[str]:
    me = asyncio.current_task()
    return [t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not me and not t.done()]


async def _family(url: str, token: str) -> CallClient:
    family = CallClient(
        url,
        token,
        receive="count",
        video=EncodedTrack("video", video_clip(seed=1), 30),
        audio=EncodedTrack("audio", tone_clip(440), 50),
    )
    await family.join()
    await family.wait_frames("video0", 10, timeout=30)
    return family


async def _closed_promptly(family: CallClient) -> float:
    started = time.monotonic()
    await asyncio.wait_for(family.close(), CLOSE_BOUND_S)
    took = time.monotonic() - started
    await asyncio.sleep(0.2)  # anything a close had left would still be running now
    assert _left_running() == [], "close() left tasks running"
    assert family._pc is None and family._ws is None and family._session is None
    return took


async def test_close_during_a_rejoin_is_prompt_and_leaves_nothing(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="asyncio")
    with RelayThread(tmp_path) as relay:
        link: CuttableLink | None = await CuttableLink(
            "127.0.0.1", relay.product.server.port
        ).start()
        url = f"http://127.0.0.1:{urlsplit(link.url).port}"
        try:
            # closes landing in every phase of a rejoin: closing the old connection,
            # connecting, offering, the answer, ICE completing just after
            for delay in [i * 0.005 for i in range(13)] + [0.1, 0.3]:
                family = await _family(url, relay.new_call())
                link.cut()  # the socket drops; new connections pass again at once
                link.restore()
                await asyncio.sleep(delay)
                await _closed_promptly(family)

            # a node that stalls mid-rejoin (its socket open, nothing read or answered)
            family = await _family(url, relay.new_call())
            dropped = family._ws
            link.cut()
            link.restore()
            deadline = time.monotonic() + 10
            while family._ws is dropped or family._ws is None or family._ws.closed:
                assert time.monotonic() < deadline, "the client did not reconnect"
                await asyncio.sleep(0.001)
            relay.stall(STALL_S)
            await asyncio.sleep(0.3)
            took = await _closed_promptly(family)
            assert took < CLOSE_TIMEOUT_S + 1.5, took

            # the relay out of reach: the client is in its loop of refused attempts
            family = await _family(url, relay.new_call())
            await link.stop()
            link = None
            await asyncio.sleep(2.5)  # a few attempts, 1 s apart
            assert family.joins == 1 and family._rejoining is not None
            assert not family._rejoining.done()
            await _closed_promptly(family)
        finally:
            if link is not None:
                await link.stop()
        gc.collect()  # (before the relay's own loop closes: only the client is checked here)
        destroyed = [r for r in caplog.records if "destroyed but it is pending" in r.getMessage()]
        assert destroyed == []
