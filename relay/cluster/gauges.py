"""The cluster's node-level gauges (no per-call labels; ops adds the node label). Imported
only when the cluster is built, so a single node's /metrics carries none of them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

NODES_LIVE = Gauge("relay_cluster_nodes_live", "Live relay nodes this node sees in Redis")
REDIS_UP = Gauge("relay_cluster_redis_up", "1 when this node's last Redis refresh worked")
PLACED_HERE = Gauge("relay_cluster_calls_placed", "Calls placed on this node (Redis placement)")
DUTY_HELD = Gauge(
    "relay_cluster_duty_held",
    "1 while this node holds the duty (relay/cluster/duties.py): one node per duty",
    ["duty"],
)
HANDED_OVER = Counter(
    "relay_cluster_calls_handed_over",
    "Calls this node handed to another node that had re-placed them (a partition from Redis)",
)
