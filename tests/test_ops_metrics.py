"""Per-node metrics: the node's name on relay_node_info, and label values that stay bounded.

A real call runs through the whole product (store, tokens, policy, recording) with a staff
watcher and a staff pause, and /metrics is scraped while it is live: every label's values
must come from small fixed sets (roles, directions, states, codes, establishment ids, the
node), never a booking id, a token, a name or an address.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from protocol.vocabulary import CALL_STATES, PARTY_ROLES
from relay import keys, node
from relay.cluster.service import DUTIES
from tests.test_operations import scrape

BOUNDED = {
    # label: the values it may take (a regex for enum-like words, or a fixed set)
    "kind": re.compile(r"[a-z_]{1,40}"),  # audio, video; vision event kinds
    "direction": re.compile(r"(family|prison)_to_(family|prison)|to_watcher|up|down"),
    "role": {*PARTY_ROLES, "staff", "watcher"},
    "state": set(CALL_STATES),
    "reason": re.compile(r"[a-z_]{1,40}"),
    "code": re.compile(r"[a-z_]{1,40}"),
    "stage": {"write", "packet_path"},
    "le": re.compile(r"[0-9.e+-]+|\+Inf"),
    # process and platform collectors (prometheus_client)
    "implementation": re.compile(r"[A-Za-z]+"),
    "major": re.compile(r"\d+"),
    "minor": re.compile(r"\d+"),
    "patchlevel": re.compile(r"\d+"),
    "version": re.compile(r"[0-9A-Za-z.+-]{1,40}"),
    "generation": re.compile(r"\d"),
    "duty": set(DUTIES),  # relay_cluster_duty_held
}


def label_values(text: str) -> dict[str, set[str]]:
    values: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            for name, value in s.labels.items():
                values.setdefault(name, set()).add(value)
    return values


async def test_metrics_name_the_node_and_keep_every_label_bounded(product):
    config = product.app[keys.CONFIG]
    b = product.booking_now()
    fam_token = await product.family_token(b)
    fam, pri = await product.pair(b)
    staff = await product.staff_session()
    http = aiohttp.ClientSession()
    try:
        await pri.wait_frames("video0", 15)
        async with staff.post(f"{product.url}/api/v1/staff/calls/{b}/pause") as r:
            assert r.status == 200
        await fam.wait_state("paused")
        await asyncio.sleep(1.5)  # a link tick, a media health tick
        text = await scrape(http, product.url)
    finally:
        await http.close()
        await staff.close()
        await fam.close()
        await pri.close()

    info = [
        s
        for f in text_string_to_metric_families(text)
        if f.name == "relay_node_info"
        for s in f.samples
    ]
    assert [(s.labels, s.value) for s in info] == [
        ({"node": node.node_id(config), "version": node.version()}, 1.0)
    ]

    values = label_values(text)
    establishments = {str(product.world.est_a), str(product.world.est_b)}
    assert values["establishment"] <= establishments
    assert values["node"] == {node.node_id(config)}
    unexpected = set(values) - set(BOUNDED) - {"establishment", "node"}
    assert not unexpected, f"labels nobody bounded: {unexpected}"
    for name, allowed in BOUNDED.items():
        for value in values.get(name, ()):
            ok = value in allowed if isinstance(allowed, set) else allowed.fullmatch(value)
            assert ok, f"label {name}={value!r} is not from its bounded set"
    # nothing personal or secret, whatever the label
    assert fam_token not in text and fam_token.split(".")[-1] not in text
    for leaked in ("Mum", "Alan Prisoner", "A1234BC", "officer_a", "127.0.0.1"):
        assert leaked not in text, leaked
    # the social call is being recorded by this node
    active = [
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == "relay_recordings_active"
        for s in f.samples
    ]
    assert active == [1.0]
    assert values["direction"] >= {"family_to_prison", "prison_to_family"}
    assert "paused" in values["state"]
