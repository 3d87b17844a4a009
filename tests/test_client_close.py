"""Experimental: close() during an automatic rejoin."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from protocol.client import CallClient
from protocol.media import EncodedTrack
from tests.support import tone_clip, video_clip
from tests.tcp_cut import CuttableLink


def _pending():
    me = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not me and not t.done()]


async def test_relay_stopped(product):
    b = product.booking_now(seconds=300)
    fam, pri = await product.pair(b)
    await fam.wait_state("live", 15)
    before = len(_pending())
    await pri.close()
    await product.server.close()
    await asyncio.sleep(3)
    print("reader", fam._reader, "pending", len(_pending()), before)
    t = time.monotonic()
    await asyncio.wait_for(fam.close(), 5)
    print("closed in", time.monotonic() - t)
    await asyncio.sleep(0.5)
    for task in _pending():
        print("LEFT", task)


async def test_link_cut(product):
    b = product.booking_now(seconds=300)
    link = await CuttableLink("127.0.0.1", product.server.port).start()
    port = urlsplit(link.url).port
    fam = CallClient(f"http://127.0.0.1:{port}", await product.family_token(b), receive="count",
                     video=EncodedTrack("video", video_clip(seed=1), 30),
                     audio=EncodedTrack("audio", tone_clip(440), 50))
    pri = CallClient(product.url, await product.prison_token(b), receive="count",
                     video=EncodedTrack("video", video_clip(seed=2), 30))
    await fam.join()
    await pri.join()
    await fam.wait_state("live", 15)
    link.cut()
    await asyncio.sleep(3)
    print("reader", fam._reader)
    t = time.monotonic()
    try:
        await asyncio.wait_for(fam.close(), 5)
    finally:
        print("closed in", time.monotonic() - t)
        await pri.close()
        await link.stop()
    await asyncio.sleep(0.5)
    for task in _pending():
        print("LEFT", task)
