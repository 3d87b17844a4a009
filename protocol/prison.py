"""The prison laptop client: ``python -m protocol.prison --relay URL ...``.

Joins a booked call's prison leg with the laptop's credentials (exchanged for a short-lived
join token scoped to that booking), sends the laptop camera (a v4l2 device) or a media file,
and records what it receives, as received (no re-encoding), and reports what arrived. It rejoins by itself after
a network drop while the call lasts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

import aiohttp
from aiortc.contrib.media import MediaPlayer

from protocol.aiortc_glue import bind_media_addresses
from protocol.client import CallClient, JoinError
from protocol.recordfile import EncodedFileWriter


async def fetch_token(relay: str, laptop_id: str, secret: str, booking: int) -> str:
    """Exchange the laptop's credentials for the prison join token of one booking."""
    async with aiohttp.ClientSession() as session:
        async with session.post(
            relay.rstrip("/") + "/api/v1/laptop/token",
            json={"laptop_id": laptop_id, "laptop_secret": secret, "booking_id": booking},
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                err = (body or {}).get("error", {})
                raise JoinError(err.get("code", f"http_{resp.status}"), err.get("message", ""))
            return body["token"]


def open_source(args: argparse.Namespace) -> MediaPlayer | None:
    if args.camera:
        options = {"video_size": args.video_size, "framerate": str(args.fps)}
        return MediaPlayer(args.camera, format="v4l2", options=options)
    if args.file:
        return MediaPlayer(args.file, loop=args.loop)
    return None


async def run(args: argparse.Namespace) -> int:
    if args.media_address:
        bind_media_addresses(args.media_address)
    token = args.token or await fetch_token(args.relay, args.laptop_id, args.laptop_secret, args.booking)
    player = open_source(args)  # kept open across rejoins: the client lends its tracks
    writer = EncodedFileWriter(args.record) if args.record else None
    client = CallClient(
        args.relay,
        token,
        video=player.video if player else None,
        audio=player.audio if player else None,
        receive="encoded",
        turn=args.turn,
        on_message=lambda msg: print_message(msg),
        on_frame=(lambda name, mime, frame: writer.write(name, mime, frame)) if writer else None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await client.join()
        waiters = [asyncio.ensure_future(client.ended.wait()), asyncio.ensure_future(stop.wait())]
        if args.duration:
            waiters.append(asyncio.ensure_future(asyncio.sleep(args.duration)))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
    except JoinError as exc:
        print(f"could not join: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await client.close()
        if writer is not None:
            writer.close()
    print(f"received: {dict(client.frames)}")
    return 0


def print_message(msg: dict) -> None:
    if msg["type"] == "state":
        why = "; ".join(msg.get("paused_because") or []) or msg.get("message") or msg.get("reason", "")
        print(f"[call] {msg.get('state')}: {why}", flush=True)
    elif msg["type"] == "warning":
        print(f"[call] {msg.get('seconds_left')} seconds left", flush=True)
    elif msg["type"] == "error":
        print(f"[call] error {msg.get('code')}: {msg.get('message')}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m protocol.prison", description=__doc__.splitlines()[0])
    p.add_argument("--relay", required=True, help="relay base URL, e.g. https://relay.example:8443")
    cred = p.add_argument_group("credentials (or --token)")
    cred.add_argument("--laptop-id")
    cred.add_argument("--laptop-secret")
    cred.add_argument("--booking", type=int)
    cred.add_argument("--token", help="a prison join token, instead of laptop credentials")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", help="v4l2 device, e.g. /dev/video0")
    src.add_argument("--file", help="media file to send instead of a camera")
    p.add_argument("--loop", action="store_true", help="loop --file")
    p.add_argument("--turn", choices=("udp", "tcp", "tls"),
                   help="reach the relay through its TURN server over this transport")
    p.add_argument("--video-size", default="640x480")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--record", help="write what the family side sends to this WebM file, as received")
    p.add_argument("--duration", type=float, help="leave after this many seconds")
    p.add_argument("--media-address", action="append", help="local address(es) for media")
    args = p.parse_args(argv)
    if not args.token and not (args.laptop_id and args.laptop_secret and args.booking):
        p.error("give --token, or --laptop-id, --laptop-secret and --booking")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
