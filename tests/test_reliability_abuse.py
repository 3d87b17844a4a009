"""Abusive clients: slow, deaf, oversized, and floods of bad tokens. The relay answers,
refuses, rate-limits by address as designed, and the other call's media keeps flowing."""

from __future__ import annotations

import pytest

from bench.product import start_product
from bench.scenarios import bad_token_flood, oversized_input, slow_clients


@pytest.mark.timeout(60)
async def test_slowloris_and_a_client_that_never_reads(product):
    o = await slow_clients(product, slowloris=20, seconds=5.0, pings=20_000)
    print(o.outcome)
    assert o.ok, o


@pytest.mark.timeout(60)
async def test_oversized_bodies_headers_and_frames_are_refused(product):
    o = await oversized_input(product)
    assert o.ok, o


@pytest.mark.timeout(60)
async def test_bad_token_flood_is_limited_per_address(tmp_path):
    p = await start_product(tmp_path, bad_token_limit_per_min=10)
    try:
        o = await bad_token_flood(p, tries=25)
        print(o.outcome)
        assert o.details["other"] == "joined", o
        assert o.details["same"] == "rate_limited", o
        assert o.ok, o
    finally:
        await p.server.close()
