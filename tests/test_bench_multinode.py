"""``python -m bench.multinode`` on two nodes and two calls: it reports each node's CPU and
calls, the placement balance, no call split across nodes, and the load it delivered."""

from __future__ import annotations

import pytest

from bench.multinode import run


@pytest.mark.timeout(180)
async def test_bench_reports_per_node_cpu_and_balance():
    result = await run(nodes_n=2, calls_n=2, duration=3.0, fps=10, warmup=1.0)
    assert set(result["nodes"]) == {"n1", "n2"}
    assert [row["calls"] for row in result["nodes"].values()] == [1, 1]
    assert result["balance"]["max_minus_min"] == 0
    assert result["calls_split_across_nodes"] == 0
    assert all(row["cpu_pct"] > 0 for row in result["nodes"].values())
    assert result["sent_fps"]["min"] > 0 and result["received_fps"]["min"] > 0
    assert isinstance(result["valid"], bool)
