"""Network faults on one leg: loss and delay keep a watchable picture; a cut within the
reconnect grace comes back with the call's original end time."""

from __future__ import annotations

import asyncio

import pytest

from bench.product import start_product
from bench.scenarios import cut_and_rejoin, lossy_leg


@pytest.fixture
async def graceful_product(tmp_path):
    """Reconnect grace of 30 s; the relay notices a dead signalling socket within ~7 s."""
    p = await start_product(tmp_path, reconnect_grace_s=30.0, ws_heartbeat_s=5.0)
    yield p
    await p.server.close()


@pytest.mark.timeout(90)
async def test_five_percent_loss_and_100ms_delay_stays_watchable(product):
    o = await lossy_leg(product, loss=0.05, delay_ms=100.0, seconds=10.0)
    print(o)
    up, down = o.details["up"], o.details["down"]
    for q in (up, down):
        assert q["expected"] > 200, q
        assert q["complete_fraction"] >= 0.85, o
        assert q["decodable_fraction"] >= 0.8, o
    # losses were repaired, not merely survived: NACKs reached the relay and RTX came back
    assert o.details["nacks"] > 0 and o.details["relay_rtx"] > 0 and o.details["client_rtx"] > 0
    assert o.ok, o


@pytest.mark.timeout(120)
async def test_twenty_second_cut_within_grace_reconnects_with_original_end(graceful_product):
    o = await cut_and_rejoin(graceful_product, cut_s=20.0)
    print(o)
    assert o.details["same_end"], o
    assert o.ok, o
    # the relay noticed the dead socket, held the call, and the leg came back by itself
    assert o.details["joins"] >= 2, o
    assert "drop" in o.details["kinds"] and "rejoin" in o.details["kinds"], o


@pytest.mark.timeout(60)
async def test_rejoined_leg_media_reaches_the_other_side(product):
    """After a drop and rejoin, the other side receives the rejoined leg's media again (the
    client lends its source tracks to each connection; the relay keeps the outgoing stream's
    sequence numbers continuous across the new consumer)."""
    from bench.scenarios import flowing

    b = product.booking_now(seconds=120)
    fam, pri = await product.pair(b)
    try:
        await pri.wait_frames("video0", 10)
        for _ in range(2):
            await fam.drop()
            await asyncio.sleep(0.5)
            await fam.join()
            await asyncio.sleep(1.5)
            assert await flowing(pri, "video0", 1.0) > 20, "family media lost after rejoin"
            assert await flowing(fam, "video0", 1.0) > 20
    finally:
        await fam.close()
        await pri.close()


async def test_udp_impairment_proxy_loses_delays_and_cuts():
    """The standalone proxy (for clients in another process): loss, delay and cut, on loopback."""
    import time

    from bench.impair import Impairment, UdpImpairProxy, check_loopback

    loop = asyncio.get_running_loop()
    got: list[float] = []

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    class Sink(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            got.append(time.monotonic())

    echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    imp = Impairment(loss=0.2, delay_ms=50.0, seed=5)
    proxy = await UdpImpairProxy(("127.0.0.1", 0), echo.get_extra_info("sockname"), imp).start()
    client, _ = await loop.create_datagram_endpoint(Sink, remote_addr=proxy.address)
    try:
        t0 = time.monotonic()
        for _ in range(200):
            client.sendto(b"x")
        await asyncio.sleep(0.5)
        # each round trip passes the impairment twice: about 0.8 x 0.8 survive, 100 ms late
        assert 100 < len(got) < 155, len(got)
        assert min(got) - t0 >= 0.095
        imp.cut(1.0)
        before = len(got)
        for _ in range(50):
            client.sendto(b"y")
        await asyncio.sleep(0.3)
        assert len(got) == before and imp.cut_dropped >= 50
    finally:
        client.close()
        proxy.close()
        echo.close()
    with pytest.raises(ValueError):
        check_loopback("192.0.2.1")
