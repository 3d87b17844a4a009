"""The reference client: the prison laptop, the tests and the load benchmark all use it.

It joins one leg (or a watcher) over the relay's WebSocket, sends the tracks it is given and
receives the far side either decoded (as a person would see it) or as encoded frames (bit-exact
checks, cheap load clients). It rejoins by itself after a drop while the call is not over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from protocol import messages as m
from protocol.aiortc_glue import (
    adopt_receiver,
    close_peer_connection,
    new_client_peer_connection,
    new_peer_connection,
    verify_turn_tls_with,
)
from protocol.frames import EncodedFrame, FrameAssembler

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0
"""How long closing the signalling socket waits for the relay's closing handshake. A node
that has stopped reading its sockets (stalled, or waiting out its own Redis timeout) must
not hold up ``close()`` or a rejoin for aiohttp's default 10 s."""

TERMINAL_ERRORS = frozenset(
    {
        "token_expired",
        "token_bad_signature",
        "token_malformed",
        "booking_cancelled",
        "approval_revoked",
        "call_ended",
        "wrong_booking",
        "booking_not_found",
    }
)


class _Lent(MediaStreamTrack):
    """A source track lent to one peer connection. aiortc's sender stops its track when the
    connection closes; the client rejoins with the same source, so the connection only ever
    gets (and stops) this stand-in. The sources are stopped by ``CallClient.close``."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        return await self.source.recv()


class JoinError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Moved(Exception):
    """The relay node reached does not run this call: join again at ``url``."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def ws_url_for(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base.replace("http://", "ws://").replace("https://", "wss://") + "/ws"


class CallClient:
    """One leg of a call. ``receive`` is "decode", "encoded" or "count" (packets only)."""

    def __init__(
        self,
        relay_url: str,
        token: str,
        *,
        video: MediaStreamTrack | None = None,
        audio: MediaStreamTrack | None = None,
        watcher: bool = False,
        receive: str = "decode",
        keep_frames: bool = False,
        reconnect: bool = True,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        on_track: Callable[[MediaStreamTrack], None] | None = None,
        on_frame: Callable[[str, str, EncodedFrame], None] | None = None,
        turn: str | None = None,
        turn_tls: ssl.SSLContext | None = None,
    ) -> None:
        """``turn``: ask the relay for its TURN servers before offering and use the one for
        this transport ("udp", "tcp" or "tls"); None: host candidates only. ``turn_tls``:
        the context that checks a ``turns:`` server's certificate (default: Python's, the
        system store or ``SSL_CERT_FILE``)."""
        self.entry_url = ws_url_for(relay_url)
        """Where every join starts (one address in front of many nodes); a ``moved`` answer
        sends this join on to the node that owns the call (``ws_url``)."""
        self._at = self.entry_url
        self.token = token
        self.video = video
        self.audio = audio
        self.watcher = watcher
        self.receive = receive
        self.keep_frames = keep_frames
        self.reconnect = reconnect
        self.on_message = on_message
        self.on_track = on_track
        self.on_frame = on_frame
        self.turn = turn
        self.turn_tls = turn_tls
        self.ice: dict[str, Any] | None = None
        """The relay's ``ice_servers`` answer of the last join (with ``turn``)."""
        self.messages: list[dict[str, Any]] = []
        self.state: str | None = None
        self.joined: dict[str, Any] | None = None
        self.ended = asyncio.Event()
        # per received stream ("video0", "audio0", "video1", ...)
        self.frames: dict[str, int] = defaultdict(int)
        self.packets: dict[str, int] = defaultdict(int)
        self.bytes: dict[str, int] = defaultdict(int)
        self.encoded: dict[str, list[EncodedFrame]] = defaultdict(list)
        self.decoded_last: dict[str, Any] = {}
        self.joins = 0
        self.restarts = 0
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pc = None
        self._tasks: list[asyncio.Future[Any]] = []
        self._reader: asyncio.Task[None] | None = None
        self._rejoining: asyncio.Task[None] | None = None
        """The task running ``_rejoin`` (a reader whose socket dropped): close() stops it
        first, so no join it is making creates a socket or connection behind close()."""
        self._pc_closes: set[asyncio.Future[None]] = set()
        self._new_message = asyncio.Condition()
        self._closing = False

    # --- public --------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        """The signalling socket of the node this client joined (or is joining)."""
        return self._at

    @ws_url.setter
    def ws_url(self, url: str) -> None:
        """Point the client at another relay: it becomes the entry address too."""
        self.entry_url = self._at = url

    async def join(self, timeout: float = 15.0) -> dict[str, Any]:
        """Connect, offer, apply the answer; returns the relay's ``joined`` message. Starts
        at the entry address and follows ``moved`` to the node that runs the call."""
        self._at = self.entry_url
        for _ in range(m.MAX_MOVES + 1):
            try:
                return await self._join_here(timeout)
            except Moved as moved:
                await self._close_transport()
                self._at = ws_url_for(moved.url)
        raise JoinError("moved_too_often", "the relay nodes kept sending this join on")

    async def _join_here(self, timeout: float) -> dict[str, Any]:
        if self._closing:
            raise JoinError("client_closed", "this client was closed")
        self._session = self._session or aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(
            self.ws_url,
            heartbeat=15.0,
            max_msg_size=0,
            timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT_S),
        )
        if self.turn is not None:
            await self._ws.send_str(m.make("ice", token=self.token))
            self.ice = ice = await asyncio.wait_for(self._read_until("ice_servers"), timeout)
            self._pc = pc = new_client_peer_connection(
                ice.get("ice_servers", []), self.turn, ice.get("ice_transport_policy") == "relay"
            )
        else:
            self._pc = pc = new_peer_connection()
        self._add_transceivers(pc)
        if self.turn_tls is not None:
            verify_turn_tls_with(pc, self.turn_tls)
        await pc.setLocalDescription(await pc.createOffer())
        await self._ws.send_str(m.make("join", token=self.token, sdp=pc.localDescription.sdp))
        reply = await asyncio.wait_for(self._read_until("joined"), timeout)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        self.joined = reply
        self.joins += 1
        self.state = reply.get("status", {}).get("state")
        self._reader = asyncio.ensure_future(self._read_forever())
        return reply

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Wait for a relay message matching ``predicate`` (including ones already seen)."""

        async def scan() -> dict[str, Any]:
            seen = 0
            async with self._new_message:
                while True:
                    for msg in self.messages[seen:]:
                        if predicate(msg):
                            return msg
                    seen = len(self.messages)
                    await self._new_message.wait()

        return await asyncio.wait_for(scan(), timeout)

    async def wait_state(self, state: str, timeout: float = 10.0) -> dict[str, Any]:
        return await self.wait_for(
            lambda x: x["type"] == "state" and x.get("state") == state, timeout
        )

    async def wait_frames(self, stream: str, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.frames[stream] < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stream}: {self.frames[stream]} of {count} frames arrived")
            await asyncio.sleep(0.05)

    async def send(self, mtype: str, **fields: Any) -> None:
        assert self._ws is not None
        await self._ws.send_str(m.make(mtype, **fields))

    async def send_raw(self, raw: str | bytes) -> None:
        assert self._ws is not None
        if isinstance(raw, bytes):
            await self._ws.send_bytes(raw)
        else:
            await self._ws.send_str(raw)

    async def drop(self) -> None:
        """Lose the connection abruptly (no leave): what a network failure looks like."""
        await self._teardown()

    async def close(self, leave: bool = True) -> None:
        """Leave and close everything: a rejoin in progress is cancelled first, then the
        socket, the peer connection (its close awaited to the end), tracks and session."""
        self._closing = True
        rejoining, self._rejoining = self._rejoining, None
        if rejoining is not None and rejoining is not asyncio.current_task():
            rejoining.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await rejoining
        if leave and self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await self._ws.send_str(m.make("leave"))
        await self._teardown()
        for track in (self.video, self.audio):
            if track is not None:
                track.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._pc_closes:  # a close a cancelled rejoin had begun runs on to its end
            await asyncio.wait(set(self._pc_closes))

    # --- internals -----------------------------------------------------------------------

    def _add_transceivers(self, pc: Any) -> None:
        pairs = 2 if self.watcher else 1
        direction = "recvonly" if self.watcher else "sendrecv"
        audio, video = self.audio, self.video
        for i in range(pairs):
            for kind, track in (("audio", audio), ("video", video)):
                if self.watcher:
                    t = pc.addTransceiver(kind, direction=direction)
                elif track is not None:
                    t = pc.addTransceiver(_Lent(track), direction=direction)
                else:
                    t = pc.addTransceiver(kind, direction="recvonly")
                name = f"{kind}{i}"
                if self.receive in ("encoded", "count"):
                    adopt_receiver(t, self._packet_sink(name, kind))
        if self.receive == "decode":
            pc.on("track", self._on_track)

    def _packet_sink(self, name: str, kind: str):
        assembler: FrameAssembler | None = None

        def on_frame(frame: EncodedFrame) -> None:
            self.frames[name] += 1
            if self.keep_frames:
                self.encoded[name].append(frame)
            if self.on_frame is not None and assembler is not None:
                self.on_frame(name, assembler.mime, frame)

        async def sink(packet: Any, arrival_ms: int) -> None:
            nonlocal assembler
            self.packets[name] += 1
            self.bytes[name] += len(packet.payload)
            if self.receive == "count":
                if kind == "audio" or packet.marker:
                    self.frames[name] += 1
                return
            if assembler is None:
                mime = "audio/opus" if kind == "audio" else self._video_mime()
                assembler = FrameAssembler(mime, on_frame)
            assembler.add(packet, arrival_ms)

        return sink

    def _video_mime(self) -> str:
        if self.joined is not None:
            return self.joined.get("call", {}).get("video_codec") or "video/VP8"
        return "video/VP8"

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self.on_track is not None:
            self.on_track(track)  # the caller consumes it (e.g. a recorder)
            return
        index = sum(1 for k in self.frames if k.startswith(track.kind))
        name = f"{track.kind}{index}"
        self.frames[name] = 0

        async def consume() -> None:
            with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
                while True:
                    frame = await track.recv()
                    self.frames[name] += 1
                    self.decoded_last[name] = frame

        self._tasks.append(asyncio.ensure_future(consume()))

    async def _read_until(self, mtype: str) -> dict[str, Any]:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = m.parse_server_message(msg.data)
            await self._record(data)
            if data["type"] == mtype:
                return data
            if data["type"] == "moved" and isinstance(data.get("url"), str):
                raise Moved(data["url"])
            if data["type"] == "error":
                raise JoinError(data.get("code", "?"), data.get("message", ""))
        raise JoinError("closed", f"the relay closed the socket ({self._ws.close_code})")

    async def _record(self, data: dict[str, Any]) -> None:
        self.messages.append(data)
        if data["type"] == "restarting":
            self.restarts += 1
        if data["type"] == "state":
            self.state = data.get("state")
            if self.state == "ended":
                self.ended.set()
        if self.on_message is not None:
            self.on_message(data)
        async with self._new_message:
            self._new_message.notify_all()

    async def _read_forever(self) -> None:
        assert self._ws is not None
        ws = self._ws
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await self._record(m.parse_server_message(msg.data))
        except (aiohttp.ClientError, ConnectionError):
            pass
        if self._closing or self.ended.is_set() or ws is not self._ws:
            return
        if self.reconnect:
            self._rejoining = asyncio.current_task()
            await self._rejoin()

    async def _rejoin(self, attempts: int = 30, delay: float = 1.0) -> None:
        """The socket dropped mid-call: rejoin with the same token within the grace window."""
        await self._close_transport()
        for _ in range(attempts):
            if self._closing:
                return
            try:
                await self.join()
                return
            except JoinError as exc:
                if exc.code in TERMINAL_ERRORS:
                    self.ended.set()
                    return
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
            await self._close_transport()
            await asyncio.sleep(delay)

    async def _close_transport(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        pc, self._pc = self._pc, None
        if pc is not None:
            # shielded: a cancelled rejoin must not leave a half-closed connection whose
            # second close() returns at once with its transports still open
            closing = asyncio.ensure_future(close_peer_connection(pc))
            self._pc_closes.add(closing)
            closing.add_done_callback(self._pc_closes.discard)
            await asyncio.shield(closing)
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()

    async def _teardown(self) -> None:
        reader, self._reader = self._reader, None
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            await ws.close()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        self._ws = ws
        await self._close_transport()
        self._ws = None
