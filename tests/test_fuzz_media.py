"""Bad datagrams at the relay's media ports: nothing stops the calls' media."""

from __future__ import annotations

import pytest

from bench.scenarios import media_garbage


@pytest.mark.timeout(90)
async def test_bad_datagrams_at_live_media_ports_do_not_stop_media(product):
    outcome = await media_garbage(product, per_kind=150)
    assert outcome.ok, outcome
    assert set(outcome.details["sent"]) == {"empty", "random", "rtp", "rtcp", "stun", "dtls"}
