"""``close_peer_connection`` landing while aiortc is still connecting leaves nothing running.

aiortc's connect task awaits ICE and then the DTLS handshake before it starts a transceiver's
sender and receiver; a close inside those awaits used to come back with the connect task still
to resume: it then started RTCP tasks (and a decoder thread) on the closed connection and
failed on the next transceiver with nobody to read the error. Two real aiortc peers on
loopback; the answerer is closed at a sweep of moments from its ICE completing (the DTLS
handshake runs in that window)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from aiortc import RTCPeerConnection

from protocol import aiortc_glue
from protocol.aiortc_glue import close_peer_connection
from protocol.media import EncodedTrack
from tests.support import tone_clip, video_clip

DELAYS_MS = [0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 30]


def _running_parts(pc: RTCPeerConnection) -> list[str]:
    """What of ``pc``'s senders and receivers is still running."""
    out: list[str] = []
    for transceiver in pc.getTransceivers():
        for role, obj, names in (
            ("sender", transceiver.sender, ("_RTCRtpSender__rtp_task", "_RTCRtpSender__rtcp_task")),
            ("receiver", transceiver.receiver, ("_RTCRtpReceiver__rtcp_task",)),
        ):
            for name in names:
                task = getattr(obj, name)
                if task is not None and not task.done():
                    out.append(f"{transceiver.kind} {role} {name.rsplit('__', 1)[1]}")
        if transceiver.receiver._RTCRtpReceiver__decoder_thread is not None:
            out.append(f"{transceiver.kind} receiver decoder thread")
    return out


async def _close_answerer_after(delay_s: float) -> tuple[list[str], list[str]]:
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    for pc, seed in ((offerer, 1), (answerer, 2)):
        pc.addTrack(EncodedTrack("audio", tone_clip(440), 50))
        pc.addTrack(EncodedTrack("video", video_clip(seed=seed), 30))
    ice_done = asyncio.Event()

    @answerer.on("iceconnectionstatechange")
    def _state() -> None:
        if answerer.iceConnectionState in ("completed", "connected"):
            ice_done.set()

    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    await asyncio.wait_for(ice_done.wait(), 10)
    await asyncio.sleep(delay_s)
    await close_peer_connection(answerer)
    left_at_close = _running_parts(answerer)
    await close_peer_connection(offerer)
    await asyncio.sleep(0.05)
    connecting = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__.endswith("__connect")]
    return left_at_close, [str(t) for t in connecting if not t.done()]


async def test_a_close_during_the_handshake_leaves_no_sender_receiver_or_connect_task(caplog):
    caplog.set_level(logging.ERROR, logger="asyncio")
    aiortc_glue.bind_media_addresses(["127.0.0.1"])  # (process-wide, as the relay's own)
    for delay_ms in DELAYS_MS:
        started = time.monotonic()
        left, connecting = await _close_answerer_after(delay_ms / 1000)
        assert left == [], (delay_ms, left)
        assert connecting == [], (delay_ms, connecting)
        assert time.monotonic() - started < 10
    gc.collect()  # an unretrieved task error is logged when the task is collected
    errors = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert errors == []
