"""Prometheus metrics. Labels stay bounded: no per-call or per-person label values."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.registry import Collector


class Tally:
    """A counter the packet path adds to without a lock; published into its Prometheus
    counter on scrape. One per label set (bounded), shared by every stream that counts it,
    so nothing is lost when a stream ends between scrapes."""

    __slots__ = ("value", "_published", "_child")

    def __init__(self, child: object) -> None:
        self.value = 0
        self._published = 0
        self._child = child

    def publish(self) -> None:
        value = self.value
        if value != self._published:
            self._child.inc(value - self._published)  # type: ignore[attr-defined]
            self._published = value


_tallies: dict[tuple[int, tuple[str, ...]], Tally] = {}


def tally(counter: Counter, *labels: str) -> Tally:
    """The lock-free tally feeding ``counter`` with these label values."""
    key = (id(counter), labels)
    found = _tallies.get(key)
    if found is None:
        found = _tallies[key] = Tally(counter.labels(*labels) if labels else counter)
    return found


def publish() -> None:
    """Add what the packet path counted since the last call to the Prometheus counters."""
    for t in list(_tallies.values()):
        t.publish()


class _PublishOnScrape(Collector):
    """Registered before the counters below, so a scrape publishes the tallies first."""

    def collect(self):  # type: ignore[no-untyped-def]
        publish()
        return []

    def describe(self):  # type: ignore[no-untyped-def]
        return []


REGISTRY.register(_PublishOnScrape())

PACKETS_FORWARDED = Counter(
    "relay_media_packets_forwarded_total",
    "RTP packets forwarded from one leg to another (or to a watcher)",
    ["kind", "direction"],
)
BYTES_FORWARDED = Counter(
    "relay_media_bytes_forwarded_total",
    "RTP bytes (as sent, before SRTP) forwarded",
    ["kind", "direction"],
)
PACKETS_WITHHELD = Counter(
    "relay_media_packets_withheld_total",
    "RTP packets not forwarded because the call was paused",
    ["kind", "direction"],
)
BYTES_WITHHELD = Counter(
    "relay_media_bytes_withheld_total",
    "RTP payload bytes not forwarded because the call was paused",
    ["kind", "direction"],
)
PACKETS_GATED = Counter(
    "relay_media_packets_waiting_keyframe_total",
    "Video packets held back from a viewer until a keyframe starts",
    ["direction"],
)
KEYFRAME_REQUESTS = Counter(
    "relay_keyframe_requests_total",
    "Keyframe requests (PLI) sent upstream to a sending leg",
    ["reason"],
)
NACKS_RECEIVED = Counter(
    "relay_nacks_received_total", "NACK feedback messages received from viewers"
)
NACKED_PACKETS = Counter(
    "relay_nacked_packets_total", "Packets viewers asked the relay to retransmit"
)


def count_nack(lost: int) -> None:
    NACKS_RECEIVED.inc()
    NACKED_PACKETS.inc(lost)


LEGS_CONNECTED = Gauge("relay_legs_connected", "Legs with a live peer connection", ["role"])
CALLS = Gauge("relay_calls", "Calls known to the relay, by state", ["state", "establishment"])
PAUSES = Counter("relay_call_pauses_total", "Calls paused, by reason", ["reason"])
SIGNALLING_ERRORS = Counter(
    "relay_signalling_errors_total", "Signalling messages refused, by error code", ["code"]
)
JOINS_REFUSED = Counter("relay_joins_refused_total", "Join attempts refused, by code", ["code"])
FORWARD_LATENCY = Histogram(
    "relay_forward_latency_seconds",
    "Time from a packet's arrival to its departure on the other leg",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
RECORDING_BYTES = Counter("relay_recording_bytes_total", "Bytes written to recordings")
LOOP_LAG = Histogram(
    "relay_event_loop_lag_seconds",
    "How late the event loop ran a timer scheduled for now",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


class _MediaMuxCollector:
    """Datagrams dropped at the shared media port (protocol.aiortc_glue counts them there:
    protocol/ imports nothing from relay/)."""

    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.core import CounterMetricFamily

        from protocol import aiortc_glue

        family = CounterMetricFamily(
            "relay_media_mux_dropped",
            "Datagrams at the shared media port from no known leg, dropped (issue 17)",
        )
        family.add_metric([], aiortc_glue.mux_dropped)
        yield family


REGISTRY.register(_MediaMuxCollector())


# --- link quality and the REMB cap (issue 17, relay/media/bandwidth.py) ------------------------
_LOSS_BUCKETS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.08, 0.15, 0.3, 1.0)
LINK_LOSS = Histogram(
    "relay_link_loss_ratio",
    "Per-leg packet loss, once a tick",
    ["role", "direction"],
    buckets=_LOSS_BUCKETS,
)
LINK_JITTER = Histogram(
    "relay_link_jitter_seconds",
    "Per-leg interarrival jitter, once a tick",
    ["role", "direction"],
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
LINK_RTT = Histogram(
    "relay_link_rtt_seconds",
    "Relay-to-participant round-trip time, once a tick",
    ["role"],
    buckets=(0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 2.0),
)
LINK_BANDWIDTH = Histogram(
    "relay_link_downlink_bps",
    "Participants' estimated downlink (REMB), once a tick",
    ["role"],
    buckets=(150e3, 250e3, 400e3, 600e3, 1e6, 1.5e6, 3e6, 1e7),
)
LINK_POOR = Counter("relay_link_poor_total", "Participants told their link is poor", ["role"])
REMB_SENT = Counter("relay_remb_sent_total", "REMB caps sent upstream to sending legs")


# --- many nodes (docs/deploy.md) ---------------------------------------------------------------
NODE_INFO = Gauge(
    "relay_node_info",
    "1 for this node: its id (RELAY_NODE_ID) and version; join other series on instance",
    ["node", "version"],
)
RECORDING_ERRORS = Counter(
    "relay_recording_errors_total",
    "Recordings that failed (write errors, a bug on the packet path), by where",
    ["stage"],
)
RECORDINGS_INTERRUPTED = Counter(
    "relay_recordings_interrupted_total",
    "Recordings found cut short (their node died) and marked interrupted by this node",
)
RECORDINGS_ACTIVE = Gauge("relay_recordings_active", "Recordings this node is writing now")


def set_node_info(node_id: str, version: str) -> None:
    """One series: this process's node (a test process may build several apps in turn)."""
    NODE_INFO.clear()
    NODE_INFO.labels(node=node_id, version=version).set(1)


ICE_FAILURES = Counter(
    "relay_ice_failures_total",
    "Legs whose peer connection failed (ICE or DTLS: no path through a firewall, or TURN)",
    ["role"],
)


def watch_connection(pc: object, role: str) -> None:
    """Count ``pc`` (a leg's RTCPeerConnection) in relay_ice_failures_total if it fails."""

    @pc.on("connectionstatechange")  # type: ignore[attr-defined, untyped-decorator]
    def _changed() -> None:
        if pc.connectionState == "failed":  # type: ignore[attr-defined]
            ICE_FAILURES.labels(role=role).inc()
