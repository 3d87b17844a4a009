"""The relay's configuration: one typed place, defaults that work out of the box.

Every field can be overridden from the environment as ``RELAY_<FIELD NAME IN CAPITALS>``;
tuples are comma-separated, booleans accept 1/0/true/false/yes/no. Per-establishment call
rules (call length, visitors, retention...) live in the store with the establishment, not
here: this file holds the process-wide settings.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from vision.settings import VisionSettings

ENV_PREFIX = "RELAY_"
_VISION = VisionSettings()
_VISION_FIELDS = {"enabled": "vision_enabled", "keyframes_only": "vision_keyframes_only"}
"""VisionSettings fields whose Config name differs; the rest share their names."""


@dataclass(frozen=True)
class Config:
    # --- network -------------------------------------------------------------------------
    host: str = "127.0.0.1"
    """Address the HTTP/WebSocket signalling server binds to."""
    port: int = 8080
    public_url: str = ""
    """Base URL printed for people to open; derived from host and port when empty."""
    media_addresses: tuple[str, ...] = ("127.0.0.1",)
    """Local addresses media (ICE/UDP) binds to. Loopback by default: development and tests."""
    announced_address: str = ""
    """Address announced in ICE candidates instead of the bound one (deployment behind NAT)."""
    metrics_host: str = ""
    """Serve /metrics on a separate address when set (with metrics_port); else on the main port."""
    metrics_port: int = 9108
    tls_cert: str = ""
    tls_key: str = ""

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Path("data")
    db_file: str = "relay.sqlite"
    database_url: str = ""
    """``postgresql://user:password@host:port/db`` to keep the records in PostgreSQL (several
    relay nodes share one); empty: the SQLite file ``data_dir/db_file``. Never logged as given
    (it may hold a password): logs name the host and database only."""
    database_connect_timeout_s: float = 5.0
    database_statement_timeout_s: float = 2.0
    """PostgreSQL: the longest one store statement may hold the event loop."""
    database_idle_tx_timeout_s: float = 10.0
    """PostgreSQL: a node stuck inside a transaction loses it (and the write lock) after this."""
    database_synchronous_commit: bool = False
    """PostgreSQL: wait for the WAL fsync at every commit (off: SQLite's default durability,
    docs/multinode.md "Records" says why and what it costs)."""
    seed_demo: bool = True
    """Create a demo establishment, people and a call starting now when the store is empty."""
    secret_key: str = ""
    """HMAC key for join tokens; when empty one is generated once and kept in data_dir."""
    recording_key: str = ""
    """Hex AES-256 key for recordings at rest; when empty one is generated and kept in data_dir."""

    # --- signalling ----------------------------------------------------------------------
    max_message_bytes: int = 64 * 1024
    ws_heartbeat_s: float = 15.0
    token_early_s: float = 600.0
    """How long before a slot starts its join tokens become valid (the waiting room)."""
    bad_token_limit_per_min: int = 20
    """Refused join attempts per remote address per minute before the address is slowed down."""

    # --- media ---------------------------------------------------------------------------
    keyframe_throttle_s: float = 0.5
    """At most one upstream keyframe request per sending leg per this many seconds."""
    video_codecs: tuple[str, ...] = ("video/VP8", "video/H264")
    """Video codecs a call may use, in preference order; the first leg's offer picks one and
    the other leg must offer the same (both legs share a codec: nothing is transcoded)."""

    # --- call policy ---------------------------------------------------------------------
    warn_before_end_s: tuple[float, ...] = (300.0, 60.0)
    reconnect_grace_s: float = 60.0
    resume_after_clear_s: float = 3.0
    policy_tick_s: float = 0.25

    # --- vision (defaults from vision/settings.py: defined once) --------------------------
    vision_enabled: bool = _VISION.enabled
    vision_keyframes_only: bool = _VISION.keyframes_only
    """Keyframe mode (the default): a keyframe asked for per sample, every frame decoded only
    in a burst; off decodes every frame (the frame-difference trigger). See docs/vision.md."""
    model_cache_dir: Path = _VISION.model_cache_dir
    detector_batch_max: int = _VISION.detector_batch_max
    detector_batch_wait_ms: float = _VISION.detector_batch_wait_ms
    detector_threads: int = _VISION.detector_threads
    sample_interval_s: float = _VISION.sample_interval_s
    burst_interval_s: float = _VISION.burst_interval_s
    burst_samples: int = _VISION.burst_samples
    face_score_min: float = _VISION.face_score_min
    face_min_px: int = _VISION.face_min_px
    confirm_m: int = _VISION.confirm_m
    confirm_n: int = _VISION.confirm_n
    clear_m: int = _VISION.clear_m
    clear_n: int = _VISION.clear_n
    detector_width: int = _VISION.detector_width
    detector_height: int = _VISION.detector_height
    """384x288 (4:3, no padding): count accuracy 0.973 on the composite set, where 320x256
    gave 0.94 (faces of 64-96 px scored just under the threshold) for ~0.4 % more CPU a leg."""

    # --- recording -----------------------------------------------------------------------
    recording_enabled: bool = True
    """Off only for development and benchmarks: with it on, social calls are recorded as the
    establishment's policy says; legal calls never are, whatever this says."""
    recordings_dir: Path | None = None
    """Where sealed recordings go; ``data_dir/recordings`` when not set (so RELAY_DATA_DIR
    alone moves everything the relay keeps)."""
    recording_chunk_s: float = 2.0
    """Each flush seals one encrypted chunk: a crash loses at most about this much."""
    recording_start_wait_s: float = 5.0
    """How long to wait for the second leg's first keyframe (its picture size) before the
    file's header is written with the size known so far."""
    recording_hold_s: float = 0.5
    """Frames newer than this are kept for the next flush so the streams interleave in order."""
    recording_resync_s: float = 2.0
    """Re-anchor a stream's timestamps to arrival time when they drift further than this."""
    recording_threads: int = 1
    """Writer threads (sealing and file I/O) shared by all recordings."""
    recording_fsync: bool = True
    """fsync each sealed chunk, so it survives a machine crash, not just a relay crash."""
    retention_default_days: int = 90
    """Retention when an establishment's policy does not say (policy.retention_days)."""
    retention_sweep_s: float = 3600.0
    vetting_photo_retention_days: int = 365
    """A decided application's identity and face photos are deleted this long after the
    decision (the decision, its reason and the audit trail stay; docs/family.md)."""

    # --- shutdown ------------------------------------------------------------------------
    shutdown_grace_s: float = 5.0

    # --- origins and hosts (relay/web/origins.py) ------------------------------------------
    allowed_origins: tuple[str, ...] = ()
    """Origins (scheme://host:port) whose pages may change things here; empty: the one the
    relay prints (``base_url``). Their hosts are also the Host headers it answers."""
    allowed_hosts: tuple[str, ...] = ()
    """Further Host names it answers on any port (an internal name Prometheus scrapes by).
    Bound to loopback, any loopback name is answered; bound to every interface, any IP."""

    def __post_init__(self) -> None:
        if self.recordings_dir is None:
            root = self.storage_dir if str(self.storage_dir) not in ("", ".") else self.data_dir
            object.__setattr__(self, "recordings_dir", Path(root) / "recordings")
            object.__setattr__(self, "_derived_recordings_dir", True)
        elif not isinstance(self.recordings_dir, Path):
            object.__setattr__(self, "recordings_dir", Path(self.recordings_dir))
    # --- identity (defaults from vision/settings.py; docs/identity.md) --------------------
    identity_threshold: float = _VISION.identity_threshold
    identity_photo_min_face_px: int = _VISION.identity_photo_min_face_px
    identity_photo_min_sharpness: float = _VISION.identity_photo_min_sharpness
    identity_photo_min_brightness: float = _VISION.identity_photo_min_brightness
    identity_photo_max_brightness: float = _VISION.identity_photo_max_brightness
    identity_interval_s: float = _VISION.identity_interval_s
    identity_confirm_m: int = _VISION.identity_confirm_m
    identity_confirm_n: int = _VISION.identity_confirm_n
    identity_clear_m: int = _VISION.identity_clear_m
    identity_clear_n: int = _VISION.identity_clear_n
    faces_dir: str = ""
    """Sealed face enrolments (descriptor + photo, encrypted with the recording key);
    empty: ``data_dir/faces``."""
    identity_retention_days: int = 365
    """An enrolment is deleted this long after it was made (a new photo re-enrols)."""
    identity_photo_max_bytes: int = 5 * 1024 * 1024
    identity_photo_max_pixels: int = 24_000_000
    """Width x height a photo may declare before it is decoded (no decompression bombs)."""
    # --- network reach (issue 17, docs/network.md) ----------------------------------------
    turn_urls: tuple[str, ...] = ()
    """TURN URLs handed to participants with REST credentials, e.g.
    ``turn:turn.example.org:3478?transport=udp,turn:turn.example.org:3478?transport=tcp,
    turns:turn.example.org:443?transport=tcp``. Empty (the default): no ICE servers at all,
    never a public STUN/TURN server."""
    turn_secret: str = ""
    """coturn's ``static-auth-secret``; when empty (and turn_urls set) one is generated once
    into data_dir/turn.secret (0600), which scripts/coturn reads."""
    turn_credential_ttl_s: float = 4 * 3600.0
    """A TURN credential's life; never past the slot's end."""
    ice_relay_only: bool = False
    """Tell clients to use relayed (TURN) candidates only (iceTransportPolicy "relay"): for
    tests and for checking a coturn deployment, never needed in production."""
    media_mux: bool = False
    """Every leg's media on one UDP port per media address (media_port) instead of a port per
    leg: what production should run (docs/network.md). Off by default so that several relays
    on one development machine never collide."""
    media_port: int = 0
    """The shared media port with media_mux (e.g. 3479); 0 lets the kernel pick one at start."""
    link_tick_s: float = 1.0
    """How often each leg's link quality is read from RTCP and the REMB cap sent upstream."""
    remb_cap: bool = True
    """Cap each sender to its viewer's downlink (REMB upstream = min(viewer's estimate, the
    relay's own estimate of the sender's uplink)); off only to measure the difference."""
    remb_fresh_s: float = 5.0
    """A viewer's REMB older than this no longer caps its sender."""
    remb_min_bps: int = 100_000
    """Never ask a sender for less than this (a stalled viewer must not freeze the sender)."""
    link_fair_loss: float = 0.02
    link_poor_loss: float = 0.08
    """Loss (either direction) at which a leg's link counts as fair / poor."""
    link_poor_rtt_s: float = 0.6
    link_poor_bps: int = 250_000
    """A downlink estimate under this is a poor link (VP8 below it is barely watchable)."""
    link_poor_ticks: int = 3
    link_clear_ticks: int = 5
    """Ticks in a row before a participant is told their link is poor, and before it clears."""
    # --- family accounts, vetting and notifications (docs/family.md) --------------------
    email_token_ttl_s: float = 24 * 3600.0
    """How long an email verification or password reset link works (once)."""
    photo_max_bytes: int = 5 * 1024 * 1024
    """Largest vetting photo upload accepted."""
    photo_max_px: int = 1600
    """Vetting photos are re-encoded no larger than this on their long side."""
    vetting_dir: Path = Path("")
    """Sealed vetting photos; empty means ``data_dir/vetting``."""
    smtp_host: str = ""
    """Mail server for notifications; empty writes .eml files to ``outbox_dir`` instead."""
    smtp_port: int = 587
    smtp_tls: str = "starttls"
    """"starttls", "tls" (implicit, port 465) or "none" (a relay on loopback only)."""
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "Prison video calls <no-reply@localhost>"
    outbox_dir: Path = Path("")
    """Where .eml files go when no smtp_host is set; empty means ``data_dir/outbox``."""
    notify_poll_s: float = 2.0
    """How often the sender looks for booking events and due messages."""
    notify_retry_s: tuple[float, ...] = (30.0, 120.0, 600.0, 3600.0, 3 * 3600.0)
    """Back-off between attempts; after the last the message is marked failed."""
    notify_timeout_s: float = 20.0
    reminder_before_s: float = 24 * 3600.0
    """The reminder email goes this long before an approved call."""
    # --- the laptop page -------------------------------------------------------------------
    laptop_enrol_code_s: float = 900.0
    """How long a laptop enrolment code from the console can be redeemed (once)."""
    laptop_calls_window_s: float = 12 * 3600.0
    """The laptop page lists calls starting or ending within this much of now ("today")."""

    kiosk_pin_tries: int = 5
    """Wrong kiosk PINs in a row before the prisoner's kiosk access locks (staff unlock)."""
    kiosk_session_s: float = 600.0
    """How long a prisoner's kiosk sign-in on the laptop page lasts."""
    kiosk_slots_shown: int = 12
    """The earliest free slots the kiosk offers at once."""

    # --- media health (relay/calls/media_health.py) ---------------------------------------
    media_stall_s: float = 3.0
    """A live call's stream that sends no packets for this long counts as stopped."""
    media_health_tick_s: float = 0.5
    """How often every party stream's packet counter is looked at."""

    # --- many nodes (relay/cluster/, docs/multinode.md) ------------------------------------
    redis_url: str = ""
    """Redis for nodes, placement and the bus (``redis://127.0.0.1:6379/0``); empty (the
    default): one node, nothing of relay/cluster/ runs. Each node's own signalling URL is
    ``public_url`` (``base_url``): a leg whose call another node owns is sent there."""
    node_capacity: int = 50
    """Calls placed on this node at most; a full node gets no new placements."""
    node_refresh_s: float = 2.0
    """How often a node refreshes its entry in the nodes hash."""
    node_expiry_s: float = 5.0
    """A node whose entry is older than this is gone: its calls are placed afresh."""
    cluster_prefix: str = "relay:"
    """Prefix of every Redis key and channel (several relays may share one Redis)."""
    cluster_lock_s: float = 3.0
    """Life of a placement lock (SET NX PX): a node that dies holding it blocks nobody long."""
    cluster_reply_s: float = 5.0
    """How long a node waits for the owner's acknowledgement of a staff action (then 504)."""
    # --- many nodes: shared storage and operations (docs/deploy.md) ------------------------
    storage_dir: Path = Path("")
    """The folder every node mounts for recordings (``storage_dir/recordings``), e.g. an NFS
    export; empty: ``data_dir`` (one node: recordings stay in ``data_dir/recordings``)."""
    node_id: str = ""
    """This node's name in metrics (``relay_node_info``) and in the recordings it writes:
    1-32 of ``a-z0-9-``, unique per node; empty: ``<host name>-<port>`` (relay/node.py)."""
    recording_heartbeat_s: float = 10.0
    """How often a node marks the recordings it is writing as alive in the index."""
    recording_stale_s: float = 60.0
    """A recording whose writer has not marked it alive for this long is taken to be cut
    short (its node died) and marked ``interrupted`` by any node: keep it well above
    ``recording_heartbeat_s`` plus the nodes' clock difference."""
    # --- the check before the call (relay/calls/identity_gate.py, docs/identity.md) ------
    identity_look_change: float = _VISION.identity_look_change
    identity_precall_matches: int = _VISION.identity_precall_matches
    identity_precall_min_face_px: int = _VISION.identity_precall_min_face_px
    identity_precall_alert_after: int = 10
    """Failed checks (a face on camera, no match) before staff are alerted to admit by hand."""
    identity_unenrolled_needs_staff: bool = False
    """A side with nobody enrolled: False admits it unchecked, audited and shown to staff as
    "not checked"; True holds it until a member of staff admits it."""
    # --- vision health and admission (relay/calls/vision_health.py, issue 20) -------------
    vision_health_window_s: float = 10.0
    """Window over which each leg's checks are counted against the configured sample rate."""
    vision_health_tick_s: float = 1.0
    """How often vision's health is assessed (gauges, call alerts, admission)."""
    vision_min_rate_fraction: float = 0.9
    """A leg is behind below this fraction of the configured samples per second..."""
    vision_max_latency_s: float = 1.5
    """...or when its sampling-to-decision latency p95 over the window is above this."""
    vision_max_legs: int = 32
    """Watched party legs one node admits (two per call); 0: no fixed limit. A new call is
    refused with ``vision_capacity`` beyond it; calls already running are never cut."""
    vision_admit_when_behind: bool = False
    """Admit new calls while some legs' checks are behind (measured headroom: off refuses)."""
    # --- vision's detector processes (vision/worker.py, issue 20) --------------------------
    vision_worker_processes: int = _VISION.vision_worker_processes
    """Processes that decode the sampled legs and run the detector off the relay's GIL
    (0: threads of the relay's own process). See docs/vision.md "Cost"."""
    vision_worker_start_timeout_s: float = _VISION.vision_worker_start_timeout_s
    vision_worker_stop_timeout_s: float = _VISION.vision_worker_stop_timeout_s
    vision_worker_restart_s: float = _VISION.vision_worker_restart_s
    detector_images_per_run: int = _VISION.detector_images_per_run
    detector_precision: str = _VISION.detector_precision
    """``int8`` (the default, built by ``make model``) or ``fp32`` CenterFace (docs/vision.md)."""
    identity_threads: int = _VISION.identity_threads
    """onnxruntime threads of the face descriptor network (vision/dlib_resnet.py)."""

    @property
    def vision(self) -> VisionSettings:
        """What vision/ reads, built from the RELAY_* vision fields above."""
        return VisionSettings(**{
            f.name: getattr(self, _VISION_FIELDS.get(f.name, f.name))
            for f in dataclasses.fields(VisionSettings)
        })

    @property
    def vetting_path(self) -> Path:
        return self.vetting_dir if str(self.vetting_dir) not in ("", ".") else self.data_dir / "vetting"

    @property
    def outbox_path(self) -> Path:
        return self.outbox_dir if str(self.outbox_dir) not in ("", ".") else self.data_dir / "outbox"

    @property
    def db_path(self) -> Path:
        return self.data_dir / self.db_file

    @property
    def database_target(self) -> str | Path:
        """What the store opens: the PostgreSQL URL when set, else the SQLite file."""
        return self.database_url.strip() or self.db_path

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_cert else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @classmethod
    def from_env(cls, env: typing.Mapping[str, str] | None = None, **overrides: object) -> Config:
        """Defaults, then ``RELAY_*`` environment variables, then explicit overrides."""
        env = os.environ if env is None else env
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f.name, hints[f.name], raw)
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: object) -> Config:
        if getattr(self, "_derived_recordings_dir", False):
            changes.setdefault("recordings_dir", None)  # follows a new data_dir or storage_dir
        return dataclasses.replace(self, **changes)


def _parse(name: str, hint: object, raw: str) -> object:
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if hint in (int, float, str):
            return hint(raw)  # type: ignore[operator]
        if hint is Path:
            return Path(raw)
        if origin is tuple:
            (item_type, *_rest) = typing.get_args(hint)
            parts = [p.strip() for p in raw.split(",") if p.strip()]
            return tuple(item_type(p) for p in parts)
        if origin in (typing.Union, types.UnionType):
            return Path(raw) if Path in typing.get_args(hint) else raw
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}: cannot read {raw!r} as {hint}") from exc
    raise TypeError(f"no parser for config field {name} of type {hint}")


