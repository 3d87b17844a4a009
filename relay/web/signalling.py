"""WebSocket signalling: one socket per leg, validated messages, clear errors.

A bad message gets an ``error`` frame with a stable code and the socket stays usable; a
refused join (bad token, leg already connected, call over) is answered and then closed with
a reason. Nothing a client sends reaches it back as a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from protocol import messages as m
from relay import keys, metrics, turn
from relay.calls.call import AdmissionLike, Leg
from relay.calls.registry import CallRegistry, LiveCall
from relay.cluster.placement import PlacementError

if TYPE_CHECKING:
    from relay.cluster.service import Cluster

log = logging.getLogger(__name__)

Admit = Callable[[str, float, str], Awaitable[AdmissionLike]]
"""(token, now, remote address) -> admission, or raises protocol.messages.ProtocolError."""

MAX_BAD_MESSAGES = 32
CLOSE_REFUSED = 4403
CLOSE_ENDED = 4000
CLOSE_RESTARTING = 1012
CLOSE_MOVED = 4302  # many nodes: join again at the ``moved`` message's URL
E_SESSION_ENDED = "session_ended"  # RFC 6455 "service restart": clients reconnect


class LegSession:
    """One WebSocket: at most one joined leg."""

    def __init__(self, ws: web.WebSocketResponse, registry: CallRegistry, admit: Admit, remote: str,
                 turn_secret: bytes = b"", cluster: Cluster | None = None):
        self.ws = ws
        self.cluster = cluster
        self.turn_secret = turn_secret
        self.registry = registry
        self.admit = admit
        self.remote = remote
        self.live: LiveCall | None = None
        self.leg: Leg | None = None
        self.left_on_purpose = False
        self.bad_messages = 0
        self.watch_session = ""  # a watcher's staff session (closed when it logs out)
        self._outbox: asyncio.Queue[str | tuple[int, str] | None] = asyncio.Queue()
        self._writer = asyncio.ensure_future(self._write())

    # --- outgoing ------------------------------------------------------------------------

    def notify(self, mtype: str, fields: dict[str, Any]) -> None:
        self._outbox.put_nowait(m.make(mtype, **fields))
        if mtype == "state" and fields.get("state") == "ended":
            # the end of a call closes its sockets (after telling them why)
            self._outbox.put_nowait((CLOSE_ENDED, f"ended: {fields.get('reason', '')}"))
        elif mtype == "restarting":
            self._outbox.put_nowait((CLOSE_RESTARTING, "relay restarting"))

    def send_error(self, code: str, message: str) -> None:
        metrics.SIGNALLING_ERRORS.labels(code).inc()
        self._outbox.put_nowait(m.error(code, message))

    async def _write(self) -> None:
        while (frame := await self._outbox.get()) is not None:
            if self.ws.closed:
                continue
            try:
                if isinstance(frame, tuple):
                    await self.ws.close(code=frame[0], message=frame[1].encode()[:120])
                else:
                    await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                pass

    async def close(self, code: int, reason: str) -> None:
        await self.flush()
        if not self.ws.closed:
            await self.ws.close(code=code, message=reason.encode()[:120])

    async def flush(self) -> None:
        self._outbox.put_nowait(None)
        await self._writer

    # --- incoming ------------------------------------------------------------------------

    async def on_text(self, raw: str) -> None:
        try:
            msg = m.parse_client_message(raw, self.registry.config.max_message_bytes)
        except m.ProtocolError as exc:
            self.bad_messages += 1
            self.send_error(exc.code, exc.message)
            return
        if msg.type == "ping":
            self.notify("pong", {"id": msg.fields.get("id", 0)})
        elif msg.type == "join":
            await self._join(msg.fields["token"], msg.fields["sdp"])
        elif msg.type == "ice":
            await self._ice(msg.fields["token"])
        elif msg.type == "leave":
            if self.leg is None:
                self.send_error(m.E_NOT_JOINED, "join before leaving")
                return
            self.left_on_purpose = True
            await self.close(WSCloseCode.OK, "left")

    async def _ice(self, token: str) -> None:
        """TURN servers for the holder of a valid join token (checked as a join is)."""
        try:
            admission = await self.admit(token, time.time(), self.remote)
        except m.ProtocolError as exc:
            metrics.JOINS_REFUSED.labels(exc.code).inc()
            log.info("ice refused: %s (%s) from %s", exc.code, exc.message, self.remote)
            self.send_error(exc.code, exc.message)
            await self.close(CLOSE_REFUSED, exc.code)
            return
        self.notify("ice_servers", self._ice_config(admission))

    def _ice_config(self, admission: AdmissionLike) -> dict[str, Any]:
        return turn.ice_config(
            self.registry.config, self.turn_secret, admission.participant, admission.ends_at,
            time.time(),
        )

    async def _join(self, token: str, sdp: str) -> None:
        if self.leg is not None:
            self.send_error(m.E_ALREADY_JOINED, "this socket has already joined a call")
            return
        try:
            admission = await self.admit(token, time.time(), self.remote)
            if self.cluster is not None and await self._moved(admission.booking_id):
                return
            live, leg, answer = await self.registry.join(admission, sdp, self.notify)
        except m.ProtocolError as exc:
            metrics.JOINS_REFUSED.labels(exc.code).inc()
            log.info("join refused: %s (%s) from %s", exc.code, exc.message, self.remote)
            self.send_error(exc.code, exc.message)
            if exc.code != m.E_BAD_SDP:
                await self.close(CLOSE_REFUSED, exc.code)
            return
        self.live, self.leg = live, leg
        self.watch_session = getattr(admission, "session_ref", "") if leg.is_watcher else ""
        call = live.call
        self.notify(
            "joined",
            {
                "role": leg.role,
                "sdp": answer,
                "call": {
                    "id": call.id,
                    "type": call.call_type,
                    "starts_at": call.starts_at,
                    "ends_at": call.ends_at,
                    "video_codec": live.video_mime,
                },
                **{"status": live.policy.describe()},
                **self._ice_config(admission),
            },
        )
        log.info("leg joined", extra=leg.log_extra(call))

    async def _moved(self, booking_id: int) -> bool:
        """Many nodes: send the leg to the node that owns its call (placing it first, under
        the cluster's lock). Only after its token was accepted: a stranger learns no node.
        Raises ProtocolError when no node can take the call (Redis down: fail closed)."""
        assert self.cluster is not None
        try:
            url = await self.cluster.route(booking_id)
        except PlacementError as exc:
            raise m.ProtocolError(exc.code, exc.message) from None
        if url is None:
            return False
        self.notify("moved", {"url": url})
        await self.close(CLOSE_MOVED, "moved")
        return True

    async def finish(self) -> None:
        if self.live is not None and self.leg is not None:
            dropped = not self.left_on_purpose and self.live.policy.state != "ended"
            await self.registry.leave(self.live, self.leg, dropped=dropped)
            log.info("leg %s", "dropped" if dropped else "left", extra=self.leg.log_extra(self.live.call))
        await self.flush()


def close_watchers(sessions: set[LegSession], session_ref: str) -> int:
    """Close the watchers admitted with a staff session that has ended (logout): a watch
    token is only as good as the session that asked for it. Returns how many."""
    closing = [s for s in sessions if session_ref and s.leg is not None
               and s.watch_session == session_ref]
    for session in closing:
        session.send_error(E_SESSION_ENDED, "the staff session ended; log in again to watch")
        asyncio.ensure_future(session.close(CLOSE_REFUSED, E_SESSION_ENDED))
    return len(closing)


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    registry: CallRegistry = request.app[keys.REGISTRY]
    admit: Admit = request.app[keys.ADMIT]
    config = registry.config
    # aiohttp itself closes (1009) beyond 4x the limit; between 1x and 4x we answer politely.
    ws = web.WebSocketResponse(
        max_msg_size=4 * config.max_message_bytes, heartbeat=config.ws_heartbeat_s
    )
    await ws.prepare(request)
    session = LegSession(ws, registry, admit, request.remote or "?", request.app[keys.TURN_SECRET],
                         request.app.get(keys.CLUSTER))
    request.app[keys.SESSIONS].add(session)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await session.on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                session.bad_messages += 1
                session.send_error(m.E_BINARY, "send JSON text frames, not binary")
            elif msg.type == WSMsgType.ERROR:
                break
            if session.bad_messages > MAX_BAD_MESSAGES:
                session.send_error(m.E_RATE_LIMITED, "too many bad messages")
                await session.close(WSCloseCode.POLICY_VIOLATION, "too many bad messages")
                break
    except Exception:
        log.exception("signalling failed for %s", request.remote)
        session.send_error(m.E_INTERNAL, "the relay hit an internal error on this socket")
    finally:
        request.app[keys.SESSIONS].discard(session)
        # aiohttp cancels this handler when the peer vanishes; leaving the call (closing the
        # peer connection, telling the policy) must finish regardless, so it runs on its own.
        cleanup = asyncio.ensure_future(session.finish())
        request.app[keys.CLEANUPS].add(cleanup)
        cleanup.add_done_callback(request.app[keys.CLEANUPS].discard)
        await asyncio.shield(cleanup)
        if not ws.closed:
            await ws.close(code=CLOSE_ENDED, message=b"call ended")
    return ws
