"""Baseline: the relay a developer would first write with aiortc (decode, then re-encode).

    python -m bench.naive --port P [--media-address 127.0.0.1]

It speaks the relay's ``/ws`` signalling protocol v1 (``protocol/messages.py``: ``join`` with
a token and an offer, ``joined`` with the answer, ``state``, ``leave``, ``ping``), admits the
bench tokens ``bench-<i>-family|prison``, and connects a call's two legs with
``aiortc.contrib.media.MediaRelay``: aiortc decodes what each leg sends (a decoder thread per
stream) and encodes it again for the other leg. This is the comparison point, not a mode
of the product. It never contacts a STUN server and gathers loopback host candidates only.

``MediaRelay.subscribe(..., buffered=False)``: a sender that falls behind gets the latest
frame rather than an ever-growing queue, so overload shows up as lost frames at the far
client (which the bench detects), not as unbounded memory and latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import time
from typing import Any

from aiohttp import WSMsgType, web
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from protocol import messages as m
from protocol.aiortc_glue import bind_media_addresses, new_peer_connection, restrict_codecs

log = logging.getLogger("bench.naive")
ROLES = ("family", "prison")


class PendingTrack(MediaStreamTrack):
    """What a leg is sent before the other leg exists: waits, then relays the other leg."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._source: MediaStreamTrack | None = None
        self._ready = asyncio.Event()

    def attach(self, source: MediaStreamTrack) -> None:
        self._source = source
        self._ready.set()

    async def recv(self) -> Any:
        await self._ready.wait()
        if self._source is None or self.readyState != "live":
            raise MediaStreamError
        return await self._source.recv()


class NaiveLeg:
    def __init__(self, role: str, pc: Any, send: Any) -> None:
        self.role = role
        self.pc = pc
        self.send = send
        self.incoming: dict[str, MediaStreamTrack] = {}
        self.outgoing = {kind: PendingTrack(kind) for kind in ("audio", "video")}


class NaiveCall:
    def __init__(self, call_id: int) -> None:
        self.id = call_id
        self.relay = MediaRelay()
        self.legs: dict[str, NaiveLeg] = {}
        self.started = time.time()

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "social",
            "starts_at": self.started,
            "ends_at": self.started + 6 * 3600,
            "video_codec": "video/VP8",
        }

    def state(self) -> str:
        return "live" if len(self.legs) == 2 else "waiting"

    def wire(self, leg: NaiveLeg) -> None:
        """Each leg's decoded tracks feed the other leg's encoders."""
        self.legs[leg.role] = leg
        if len(self.legs) < 2:
            return
        a, b = self.legs["family"], self.legs["prison"]
        for src, dst in ((a, b), (b, a)):
            for kind, track in src.incoming.items():
                dst.outgoing[kind].attach(self.relay.subscribe(track, buffered=False))
        for leg_ in (a, b):
            leg_.send(m.make("state", state="live", reason="both_joined", call=self.describe()))


class NaiveServer:
    def __init__(self) -> None:
        self.calls: dict[int, NaiveCall] = {}
        self.pcs: set[Any] = set()

    def admit(self, token: str) -> tuple[int, str]:
        parts = token.split("-")
        if len(parts) != 3 or parts[0] != "bench" or not parts[1].isdigit() or parts[2] not in ROLES:
            raise m.ProtocolError("token_bad_signature", "not a bench token")
        return int(parts[1]), parts[2]

    async def join(self, token: str, sdp: str, send: Any) -> tuple[NaiveCall, NaiveLeg]:
        call_id, role = self.admit(token)
        call = self.calls.setdefault(call_id, NaiveCall(call_id))
        if role in call.legs:
            raise m.ProtocolError(m.E_LEG_CONNECTED, f"the {role} side is already connected")
        pc = new_peer_connection()
        self.pcs.add(pc)
        leg = NaiveLeg(role, pc, send)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            leg.incoming[track.kind] = track

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:
            raise m.ProtocolError(m.E_BAD_SDP, f"the offer could not be used: {exc}"[:300]) from None
        for t in pc.getTransceivers():
            if t.kind == "video" and not restrict_codecs(t, "video/VP8"):
                raise m.ProtocolError(m.E_BAD_SDP, "the offer lacks video/VP8")
            if t.kind == "audio":
                restrict_codecs(t, "audio/opus")
        for kind, track in leg.outgoing.items():
            if any(t.kind == kind for t in pc.getTransceivers()):
                pc.addTrack(track)
        await pc.setLocalDescription(await pc.createAnswer())
        call.wire(leg)
        return call, leg

    async def leave(self, call: NaiveCall, leg: NaiveLeg) -> None:
        if call.legs.get(leg.role) is leg:
            del call.legs[leg.role]
        for track in leg.outgoing.values():
            track.stop()
        await leg.pc.close()
        self.pcs.discard(leg.pc)
        if not call.legs:
            self.calls.pop(call.id, None)


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    server: NaiveServer = request.app[NAIVE]
    ws = web.WebSocketResponse(max_msg_size=4 * m.MAX_MESSAGE_BYTES, heartbeat=60.0)
    await ws.prepare(request)
    call: NaiveCall | None = None
    leg: NaiveLeg | None = None

    def send(frame: str) -> None:
        if not ws.closed:
            asyncio.ensure_future(ws.send_str(frame))

    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    send(m.error(m.E_BINARY, "send JSON text frames, not binary"))
                    continue
                break
            try:
                cm = m.parse_client_message(msg.data)
            except m.ProtocolError as exc:
                send(m.error(exc.code, exc.message))
                continue
            if cm.type == "ping":
                send(m.make("pong", id=cm.fields.get("id", 0)))
            elif cm.type == "leave":
                break
            elif cm.type == "join":
                if leg is not None:
                    send(m.error(m.E_ALREADY_JOINED, "this socket has already joined a call"))
                    continue
                try:
                    call, leg = await server.join(cm.fields["token"], cm.fields["sdp"], send)
                except m.ProtocolError as exc:
                    send(m.error(exc.code, exc.message))
                    if exc.code != m.E_BAD_SDP:
                        break
                    continue
                send(
                    m.make(
                        "joined",
                        role=leg.role,
                        sdp=leg.pc.localDescription.sdp,
                        call=call.describe(),
                        status={"state": call.state()},
                    )
                )
    finally:
        if call is not None and leg is not None:
            await server.leave(call, leg)
        if not ws.closed:
            await ws.close()
    return ws


NAIVE = web.AppKey("naive", NaiveServer)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive", "calls": len(request.app[NAIVE].calls)})


def create_app() -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[NAIVE] = NaiveServer()
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/healthz", healthz)

    async def close_all(app_: web.Application) -> None:
        await asyncio.gather(*(pc.close() for pc in list(app_[NAIVE].pcs)), return_exceptions=True)

    app.on_shutdown.append(close_all)
    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.naive")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--media-address", default="127.0.0.1")
    p.add_argument("--max-seconds", type=float, default=1800.0)
    p.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="naive %(levelname)s %(name)s: %(message)s")
    bind_media_addresses([args.media_address])
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = create_app()

    async def announce(_app: web.Application) -> None:
        print(json.dumps({"ready": True, "pid": os.getpid(), "entry_point": "bench.naive"}), flush=True)
        asyncio.get_running_loop().call_later(args.max_seconds, os.kill, os.getpid(), signal.SIGTERM)

    app.on_startup.append(announce)
    web.run_app(app, host=args.host, port=args.port, print=None, loop=loop,
                shutdown_timeout=2.0, access_log=None)


if __name__ == "__main__":
    main()
