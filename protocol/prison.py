"""The prison laptop client: ``python -m protocol.prison --relay URL ...``.

Joins a booked call's prison leg with the laptop's credentials (exchanged for a short-lived
join token scoped to that booking), sends the laptop camera (a v4l2 device) or a media file,
and records what it receives, as received (no re-encoding), and reports what arrived. It rejoins by itself after
a network drop while the call lasts.

It is for unattended use (headless rooms, v4l2 cameras, load): it shows nothing and plays no
sound. A prisoner uses the laptop page (``/laptop``, docs/laptop.md) in Chromium instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import logging
import signal
import ssl
import sys
import time
from pathlib import Path

import aiohttp
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaPlayer
from av.frame import Frame

from protocol.aiortc_glue import bind_media_addresses
from protocol.client import CallClient, JoinError
from protocol.recordfile import EncodedFileWriter

EXIT_REFUSED = 2
"""Bad credentials, a refused join or an unreachable relay: one line on stderr, no traceback."""


async def fetch_token(relay: str, laptop_id: int, secret: str, booking: int) -> str:
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


PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"


def turn_ca_context(path: str) -> ssl.SSLContext:
    """A TLS context that trusts exactly the certificates of the PEM bundle at ``path``, for
    a ``turns:`` server signed by a private CA (the system store is not consulted: a prison
    network's TURN server is the prison's own). ``argparse.ArgumentTypeError`` with one
    plain line when the file cannot be read or holds no certificate."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise argparse.ArgumentTypeError(f"cannot read the TURN CA file {path}: {reason}") from None
    refused = argparse.ArgumentTypeError(
        f"the TURN CA file {path} holds no valid PEM certificate (-----BEGIN CERTIFICATE-----)"
    )
    if PEM_CERTIFICATE not in text:
        raise refused
    try:  # with cadata, Python's defaults (host name, chain) and nothing of the system store
        return ssl.create_default_context(cadata=text)
    except ssl.SSLError:
        raise refused from None


class ContinuousVideo(MediaStreamTrack):
    """A player's video with timestamps that keep rising across a ``--loop`` restart.

    aiortc's MediaPlayer starts the video's pts at 0 again at the loop point and stops
    pacing it; the sender's RTP timestamps then jump back and the far side drops every
    frame. This track shifts each lap past the last one and paces frames to the clock."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self._source = source
        self._offset = 0
        self._last_in: int | None = None
        self._last_out = 0
        self._step = 0
        self._started: float | None = None

    async def recv(self) -> Frame:
        frame = await self._source.recv()
        pts = int(frame.pts or 0)
        if self._last_in is not None:
            if pts <= self._last_in:  # a new lap
                self._offset = self._last_out + max(self._step, 1) - pts
            else:
                self._step = pts - self._last_in
        self._last_in = pts
        frame.pts = pts + self._offset
        self._last_out = frame.pts
        base = frame.time_base or fractions.Fraction(1, 90000)
        due = float(frame.pts * base)
        if self._started is None:
            self._started = time.monotonic() - due
        wait = self._started + due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        return frame

    def stop(self) -> None:
        super().stop()
        self._source.stop()


def open_source(
    args: argparse.Namespace,
) -> tuple[MediaStreamTrack | None, MediaStreamTrack | None]:
    """(video, audio) from the camera or the file; the player stays open across rejoins."""
    if args.camera:
        options = {"video_size": args.video_size, "framerate": str(args.fps)}
        player = MediaPlayer(args.camera, format="v4l2", options=options)
        return player.video, player.audio
    if args.file:
        player = MediaPlayer(args.file, loop=args.loop)
        video = player.video
        if video is not None and args.loop:
            video = ContinuousVideo(video)
        return video, player.audio
    return None, None


def report(frames: dict[str, int]) -> str:
    """What arrived from the family side, per stream, saying so plainly when nothing did."""
    got = {name: n for name, n in sorted(frames.items()) if n}
    if not got:
        return "received: nothing from the family side"
    parts = [
        f"{name} {n} {'frames' if name.startswith('video') else 'packets'}"
        for name, n in got.items()
    ]
    return "received: " + ", ".join(parts)


def make_client(
    args: argparse.Namespace, token: str, writer: EncodedFileWriter | None = None
) -> CallClient:
    """The command's client for ``args`` (sources, TURN and its trust, what it records)."""
    video, audio = open_source(args)  # kept open across rejoins: the client lends its tracks
    return CallClient(
        args.relay,
        token,
        video=video,
        audio=audio,
        receive="encoded",
        turn=args.turn,
        turn_tls=args.turn_ca,
        on_message=lambda msg: print_message(msg),
        on_frame=(lambda name, mime, frame: writer.write(name, mime, frame)) if writer else None,
    )


async def run(args: argparse.Namespace) -> int:
    if args.media_address:
        bind_media_addresses(args.media_address)
    try:
        token = args.token or await fetch_token(
            args.relay, args.laptop_id, args.laptop_secret, args.booking
        )
    except JoinError as exc:
        print(f"could not get a join token: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        print(f"could not reach the relay at {args.relay}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    writer = EncodedFileWriter(args.record) if args.record else None
    client = make_client(args, token, writer)
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
        return EXIT_REFUSED
    except (aiohttp.ClientError, OSError) as exc:
        print(f"could not reach the relay at {args.relay}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        await client.close()
        if writer is not None:
            writer.close()
    print(report(dict(client.frames)), flush=True)
    return 0


def print_message(msg: dict) -> None:
    if msg["type"] == "state":
        why = (
            "; ".join(msg.get("paused_because") or [])
            or msg.get("message")
            or msg.get("reason", "")
        )
        print(f"[call] {msg.get('state')}: {why}", flush=True)
    elif msg["type"] == "warning":
        print(f"[call] {msg.get('seconds_left')} seconds left", flush=True)
    elif msg["type"] == "error":
        print(f"[call] error {msg.get('code')}: {msg.get('message')}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m protocol.prison", description=__doc__.splitlines()[0]
    )
    p.add_argument("--relay", required=True, help="relay base URL, e.g. https://relay.example:8443")
    cred = p.add_argument_group("credentials (or --token)")
    cred.add_argument("--laptop-id", type=int)
    cred.add_argument("--laptop-secret")
    cred.add_argument("--booking", type=int)
    cred.add_argument("--token", help="a prison join token, instead of laptop credentials")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", help="v4l2 device, e.g. /dev/video0")
    src.add_argument("--file", help="media file to send instead of a camera")
    p.add_argument("--loop", action="store_true", help="loop --file")
    p.add_argument(
        "--turn",
        choices=("udp", "tcp", "tls"),
        help="reach the relay through its TURN server over this transport",
    )
    p.add_argument(
        "--turn-ca",
        metavar="FILE",
        type=turn_ca_context,
        help="PEM bundle of the CA that signed the TURN server's TLS certificate "
        "(a private CA); trusted instead of the system store; implies --turn tls",
    )
    p.add_argument("--video-size", default="640x480")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument(
        "--record", help="write what the family side sends to this WebM file, as received"
    )
    p.add_argument("--duration", type=float, help="leave after this many seconds")
    p.add_argument("--media-address", action="append", help="local address(es) for media")
    args = p.parse_args(argv)
    if not args.token and not (
        args.laptop_id is not None and args.laptop_secret and args.booking is not None
    ):
        p.error("give --token, or --laptop-id, --laptop-secret and --booking")
    if args.turn_ca is not None:
        if args.turn not in (None, "tls"):
            p.error(
                f"--turn-ca checks a TURN server over TLS: it needs --turn tls, not {args.turn}"
            )
        args.turn = "tls"
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
