"""Baseline: the Janus gateway's VideoCall plugin (Debian ``janus``), on loopback.

The bench writes a throw-away configuration folder (``-F``): only the HTTP transport, bound
to 127.0.0.1 on a port it picked; only the VideoCall plugin; no event handlers or loggers;
ICE on loopback only (``ice_enforce_list = "lo"``), no STUN, RTP ports in a range it picked.

Load clients drive it through Janus's HTTP API, as a browser with janus.js would: create a
session, attach ``janus.plugin.videocall``, ``register`` a username, and the family side
``call``s ``pri-<i>`` with its offer; the prison side gets ``incomingcall`` with Janus's offer
and ``accept``s with its answer. Events come over HTTP long polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription

from protocol.aiortc_glue import adopt_receiver, new_peer_connection

JANUS_BIN = "janus"
PLUGIN = "janus.plugin.videocall"
LIB_CANDIDATES = (
    Path("/usr/lib/x86_64-linux-gnu/janus"),  # Debian, Ubuntu (amd64)
    Path("/usr/lib/aarch64-linux-gnu/janus"),
    Path("/usr/lib/janus"),
    Path("/usr/local/lib/janus"),
    Path("/opt/janus/lib/janus"),  # built from source with the default prefix
)


def find_janus() -> str | None:
    return shutil.which(JANUS_BIN)


def find_lib() -> Path | None:
    """The folder holding plugins/ and transports/ with the VideoCall and HTTP modules."""
    for lib in LIB_CANDIDATES:
        if (lib / "plugins" / "libjanus_videocall.so").exists() and (
            lib / "transports" / "libjanus_http.so"
        ).exists():
            return lib
    return None


def skip_reason() -> str | None:
    if find_janus() is None:
        return "janus is not installed (Debian package 'janus'); skipped"
    if find_lib() is None:
        return "janus is installed but its VideoCall plugin or HTTP transport was not found; skipped"
    return None


LIB = find_lib() or LIB_CANDIDATES[0]


def _others(folder: Path, keep: set[str]) -> str:
    if not folder.is_dir():
        return ""
    names = sorted({p.name.split(".so")[0] + ".so" for p in folder.glob("libjanus_*.so*")})
    return ",".join(n for n in names if n not in keep)


def write_config(conf_dir: Path, http_port: int, rtp_range: tuple[int, int], debug_level: int = 3) -> Path:
    """A minimal configuration folder; returns the path of janus.jcfg."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "janus.jcfg").write_text(
        f"""general: {{
	configs_folder = "{conf_dir}"
	plugins_folder = "{LIB / 'plugins'}"
	transports_folder = "{LIB / 'transports'}"
	events_folder = "{LIB / 'events'}"
	loggers_folder = "{LIB / 'loggers'}"
	debug_level = {debug_level}
	interface = "127.0.0.1"
	session_timeout = 0
	hide_dependencies = true
}}
certificates: {{
}}
media: {{
	ipv6 = false
	rtp_port_range = "{rtp_range[0]}-{rtp_range[1]}"
	no_media_timer = 5
}}
nat: {{
	nice_debug = false
	ice_enforce_list = "lo"
	ignore_mdns = true
}}
plugins: {{
	disable = "{_others(LIB / 'plugins', {'libjanus_videocall.so'})}"
}}
transports: {{
	disable = "{_others(LIB / 'transports', {'libjanus_http.so'})}"
}}
loggers: {{
	disable = "{_others(LIB / 'loggers', set())}"
}}
events: {{
	broadcast = false
	disable = "{_others(LIB / 'events', set())}"
}}
"""
    )
    (conf_dir / "janus.transport.http.jcfg").write_text(
        f"""general: {{
	json = "plain"
	base_path = "/janus"
	http = true
	port = {http_port}
	ip = "127.0.0.1"
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
cors: {{
}}
"""
    )
    (conf_dir / "janus.plugin.videocall.jcfg").write_text("general: {\n}\n")
    return conf_dir / "janus.jcfg"


def command(conf_dir: Path, http_port: int, rtp_range: tuple[int, int]) -> list[str]:
    janus = find_janus() or JANUS_BIN
    config = write_config(conf_dir, http_port, rtp_range)
    return [janus, "-F", str(conf_dir), "-C", str(config), "-o"]


# --- the client side -------------------------------------------------------------------------

_tx = itertools.count(1)


class JanusError(RuntimeError):
    pass


class JanusLeg:
    """One side of a VideoCall call, sending the leg's tracks and counting what arrives."""

    def __init__(self, base_url: str, call: int, role: str, leg: Any) -> None:
        self.base = base_url.rstrip("/") + "/janus"
        self.call = call
        self.role = role
        self.leg = leg
        self.me = f"{'fam' if role == 'family' else 'pri'}-{call}"
        self.peer = f"{'pri' if role == 'family' else 'fam'}-{call}"
        self.http: aiohttp.ClientSession | None = None
        self.session_url = ""
        self.handle_url = ""
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.poller: asyncio.Task[None] | None = None
        self.pc: Any = None

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.http is not None
        body = {**body, "transaction": f"t{next(_tx)}"}
        async with self.http.post(url, json=body) as resp:
            data = await resp.json(content_type=None)
        if data.get("janus") == "error":
            raise JanusError(str(data.get("error")))
        return data

    async def _poll(self) -> None:
        assert self.http is not None
        while True:
            try:
                async with self.http.get(self.session_url, params={"maxev": "5"}) as resp:
                    data = await resp.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError, ValueError):
                await asyncio.sleep(0.2)
                continue
            for event in data if isinstance(data, list) else [data]:
                if event.get("janus") in ("event", "hangup", "webrtcup", "media"):
                    self.events.put_nowait(event)

    async def _expect(self, result_event: str, timeout: float = 30.0) -> dict[str, Any]:
        async def scan() -> dict[str, Any]:
            while True:
                event = await self.events.get()
                if event.get("janus") == "hangup":
                    raise JanusError(f"hangup: {event.get('reason')}")
                data = event.get("plugindata", {}).get("data", {})
                if "error" in data:
                    raise JanusError(f"{data.get('error_code')}: {data.get('error')}")
                if data.get("result", {}).get("event") == result_event:
                    return event

        return await asyncio.wait_for(scan(), timeout)

    async def _message(self, body: dict[str, Any], jsep: dict[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        await self._post(self.handle_url, msg)

    async def start(self) -> None:
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        created = await self._post(self.base, {"janus": "create"})
        self.session_url = f"{self.base}/{created['data']['id']}"
        attached = await self._post(self.session_url, {"janus": "attach", "plugin": PLUGIN})
        self.handle_url = f"{self.session_url}/{attached['data']['id']}"
        self.poller = asyncio.ensure_future(self._poll())
        await self._message({"request": "register", "username": self.me})
        await self._expect("registered")
        if self.role == "prison":
            # the callee answers in the background; ready as soon as it is registered
            asyncio.ensure_future(self._answer())
        else:
            await self._call()

    def _sinks(self, pc: Any) -> None:
        for t in pc.getTransceivers():
            adopt_receiver(t, self.leg.counters.sink(t.kind))

    async def _call(self) -> None:
        self.pc = self.leg.pc = pc = new_peer_connection()
        pc.addTransceiver(self.leg.audio, direction="sendrecv")
        pc.addTransceiver(self.leg.video, direction="sendrecv")
        self._sinks(pc)
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"type": "offer", "sdp": pc.localDescription.sdp, "trickle": False}
        await self._message({"request": "call", "username": self.peer}, offer)
        event = await self._expect("accepted")
        answer = event["jsep"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def _answer(self) -> None:
        try:
            event = await self._expect("incomingcall", timeout=120)
            self.pc = self.leg.pc = pc = new_peer_connection()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=event["jsep"]["sdp"], type="offer"))
            for t in pc.getTransceivers():
                track = self.leg.audio if t.kind == "audio" else self.leg.video
                t.sender.replaceTrack(track)
                t.direction = "sendrecv"
            self._sinks(pc)
            await pc.setLocalDescription(await pc.createAnswer())
            answer = {"type": "answer", "sdp": pc.localDescription.sdp, "trickle": False}
            await self._message({"request": "accept"}, answer)
        except Exception as exc:
            self.leg.counters.error = f"answer failed: {type(exc).__name__}: {exc}"[:300]

    async def close(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
        with contextlib.suppress(Exception):
            if self.handle_url:
                await asyncio.wait_for(self._message({"request": "hangup"}), 2)
        if self.pc is not None:
            await self.pc.close()
        with contextlib.suppress(Exception):
            if self.session_url:
                await asyncio.wait_for(self._post(self.session_url, {"janus": "destroy"}), 2)
        if self.http is not None:
            await self.http.close()
