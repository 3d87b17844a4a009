"""Link quality per leg and the REMB cap (issue 17), with real aiortc peers and the
user-space impairment shim (bench/impair.py) on the family's connection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from fractions import Fraction

import av
import numpy as np
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from aiortc.mediastreams import VideoStreamTrack

from bench.impair import Impairment, RateLimit, impair_peer_connection, limit_receive_rate
from protocol.aiortc_glue import encoder_target_bitrate
from protocol.client import CallClient
from protocol.media import EncodedTrack
from relay import keys
from relay.app import build_app
from relay.config import Config
from relay.web.call_control import call_json
from relay.web.models import CallStatus
from tests.support import TokenTable, admission, tone_clip, video_clip


@contextlib.asynccontextmanager
async def relay_with(config: Config, tokens: TokenTable) -> AsyncIterator[TestServer]:
    server = TestServer(build_app(config, admit=tokens), host="127.0.0.1")
    await server.start_server()
    server.base_url = str(server.make_url("")).rstrip("/")
    try:
        yield server
    finally:
        await server.close()


class BusyPicture(VideoStreamTrack):
    """Raw frames whose encoding fills the encoder's target from 250 kbit/s to 1.5 Mbit/s (a
    blocky random picture panning a pixel a frame: measured 401 and 1504 kbit/s at those
    targets), so the bitrate on the wire follows the target: aiortc encodes them and
    honours REMB."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        rng = np.random.default_rng(5)
        coarse = rng.integers(0, 200, (height * 3 // 16, width // 4), dtype=np.uint8)
        self.texture = np.kron(coarse, np.ones((8, 8), dtype=np.uint8))  # 2 widths wide
        self.width = width
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        shift = self.n % self.width
        self.n += 1
        window = self.texture[:, shift : shift + self.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(window), format="yuv420p")
        frame.pts, frame.time_base = pts, time_base or Fraction(1, 90000)
        return frame


VIDEO_STEP = 3000  # 90 kHz ticks a frame at 30 fps


def _ticks(earlier: int, later: int) -> int:
    return (later - earlier) & 0xFFFFFFFF  # aiortc rounds each frame's step to 2999..3001


def decoded_after(frames: list, start: int) -> dict[str, float]:
    """Frames the family really decodes among those sent from ``frames[start]`` on: a frame
    decodes when it is complete and is a keyframe or follows a decoded frame (the assembler
    already dropped incomplete ones); "sent" is counted from the RTP timestamps."""
    decoder = av.CodecContext.create("vp8", "r")
    start_ts = frames[start].timestamp
    previous, decoded = None, 0
    for frame in frames:
        follows = (
            previous is not None and round(_ticks(previous, frame.timestamp) / VIDEO_STEP) == 1
        )
        if not (frame.keyframe or follows):
            previous = None
            continue
        try:
            out = decoder.decode(av.Packet(frame.data))
        except av.error.InvalidDataError:
            previous = None
            continue
        previous = frame.timestamp
        if _ticks(frames[0].timestamp, frame.timestamp) >= _ticks(frames[0].timestamp, start_ts):
            decoded += len(out)  # (compared as offsets: RTP timestamps wrap)
    sent = round(_ticks(start_ts, frames[-1].timestamp) / VIDEO_STEP) + 1
    return {"sent": sent, "decoded": decoded, "fraction": round(decoded / sent, 3)}


async def test_a_lossy_family_link_shows_in_the_console_metrics_and_on_its_page(config, tokens):
    tokens.add("fam-q", admission(90, "family"))
    tokens.add("pri-q", admission(90, "prison"))
    async with relay_with(config.replace(link_tick_s=0.5), tokens) as relay:
        family = CallClient(
            relay.base_url,
            "fam-q",
            receive="count",
            video=EncodedTrack("video", video_clip(seed=1), 30),
            audio=EncodedTrack("audio", tone_clip(440), 50),
        )
        prison = CallClient(
            relay.base_url,
            "pri-q",
            receive="count",
            video=EncodedTrack("video", video_clip(seed=2), 30),
            audio=EncodedTrack("audio", tone_clip(550), 50),
        )
        try:
            await family.join()
            await prison.join()
            await family.wait_frames("video0", 10, timeout=30)
            impair_peer_connection(family._pc, Impairment(loss=0.25, seed=4))
            notice = await family.wait_for(
                lambda x: x["type"] == "quality" and x["grade"] == "poor", timeout=30
            )
            assert max(notice["loss_up"], notice["loss_down"]) >= 0.08
            assert not any(x["type"] == "quality" for x in prison.messages)  # not their link
            live = relay.app[keys.REGISTRY].get(90)
            row = CallStatus.model_validate(call_json(live))  # the console's call row
            deadline = time.monotonic() + 10  # the prison's RTT needs a report on our report
            while row.quality["prison"].rtt_ms is None and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                row = CallStatus.model_validate(call_json(live))
            assert row.quality["family"].grade == "poor"
            assert row.quality["prison"].loss_up < 0.08 and row.quality["prison"].rtt_ms is not None
            async with ClientSession() as http:
                async with http.get(relay.base_url + "/metrics") as resp:
                    text = await resp.text()
            assert 'relay_link_poor_total{role="family"}' in text
            assert 'relay_link_loss_ratio_bucket{direction="up",le="0.0",role="prison"}' in text
        finally:
            await family.close()
            await prison.close()


async def _thin_downlink_run(config: Config, tokens: TokenTable, booking: int, cap: bool):
    """The family's downlink at 500 kbit/s; the prison encodes live. Returns what the family
    could decode after the first 10 s, the prison encoder's target and the relay's cap."""
    tokens.add(f"fam-{booking}", admission(booking, "family"))
    tokens.add(f"pri-{booking}", admission(booking, "prison"))
    async with relay_with(config.replace(remb_cap=cap), tokens) as relay:
        family = CallClient(
            relay.base_url,
            f"fam-{booking}",
            receive="encoded",
            keep_frames=True,
            video=EncodedTrack("video", video_clip(seed=3), 30),
        )
        prison = CallClient(relay.base_url, f"pri-{booking}", receive="count", video=BusyPicture())
        try:
            await family.join()
            limit = RateLimit(500_000, queue_s=1.0)
            assert limit_receive_rate(family._pc, limit) > 0
            await prison.join()
            await family.wait_frames("video0", 5, timeout=30)
            await asyncio.sleep(10)
            start = len(family.encoded["video0"])
            targets = []
            for _ in range(15):
                await asyncio.sleep(1)
                (video,) = [t.sender for t in prison._pc.getTransceivers() if t.kind == "video"]
                targets.append(encoder_target_bitrate(video))
            quality = decoded_after(family.encoded["video0"], start)
            return quality, targets, limit
        finally:
            await family.close()
            await prison.close()


async def test_a_thin_family_downlink_caps_the_prison_encoder(config, tokens):
    started = time.monotonic()
    capped, targets, limit = await _thin_downlink_run(config, tokens, 91, cap=True)
    uncapped, free_targets, free_limit = await _thin_downlink_run(config, tokens, 92, cap=False)
    print(
        f"\nwith the REMB cap: {capped} targets {targets} dropped {limit.dropped}/"
        f"{limit.passed + limit.dropped}"
    )
    print(
        f"without the cap:   {uncapped} targets {free_targets} dropped {free_limit.dropped}/"
        f"{free_limit.passed + free_limit.dropped}  ({time.monotonic() - started:.0f} s)"
    )
    assert capped["fraction"] >= 0.95, capped
    assert max(targets[5:]) < 500_000, targets
    assert uncapped["fraction"] < capped["fraction"] - 0.2, (capped, uncapped)


async def test_the_family_page_shows_a_gentle_notice_while_its_link_is_poor(
    config, tokens, tmp_path
):
    """Loss on the relay's side of the browser's connection (the shim, in this process):
    the family page says so, gently, and the notice goes once the link recovers. Its
    screenshots go to the test's folder unless SCREENSHOTS_DIR names one (docs/screenshots)."""
    from tests.browser import chromium, screenshots_dir

    tokens.add("fam-p", admission(93, "family"))
    tokens.add("pri-p", admission(93, "prison"))
    shots = screenshots_dir(tmp_path)
    async with relay_with(config.replace(link_tick_s=0.5), tokens) as relay:
        prison = CallClient(
            relay.base_url,
            "pri-p",
            receive="count",
            video=EncodedTrack("video", video_clip(seed=6), 30),
            audio=EncodedTrack("audio", tone_clip(500), 50),
        )
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{relay.base_url}/join?token=fam-p")
            await page.wait_for_function(
                "window.__call && window.__call.joins === 1", timeout=30000
            )
            await prison.join()
            try:
                await prison.wait_frames("video0", 20, timeout=40)
                leg = relay.app[keys.REGISTRY].get(93).call.legs["family"]
                loss = Impairment(loss=0.3, seed=2)
                assert impair_peer_connection(leg.pc, loss) > 0
                notice = page.locator("#link-notice")
                await notice.wait_for(state="visible", timeout=30000)
                assert "connection is weak" in await notice.text_content()
                assert await page.text_content("#banner") == "Connected"  # the call goes on
                await page.screenshot(path=str(shots / "family-poor-link.png"))
                await page.set_viewport_size({"width": 390, "height": 844})
                await page.screenshot(path=str(shots / "family-poor-link-phone.png"))
                loss.loss = 0.0
                await notice.wait_for(state="hidden", timeout=30000)
            finally:
                await prison.close()


async def test_a_watcher_on_a_thin_link_does_not_cap_the_call(config, tokens):
    """Staff watchers are left out of the minimum (docs/network.md)."""
    from protocol.aiortc_glue import remb_cap, viewer_remb

    tokens.add("fam-w", admission(94, "family"))
    tokens.add("pri-w", admission(94, "prison"))
    tokens.add("staff-w", admission(94, "watcher", participant="staff:1"))
    async with relay_with(config.replace(link_tick_s=0.5), tokens) as relay:
        family = CallClient(
            relay.base_url,
            "fam-w",
            receive="count",
            video=EncodedTrack("video", video_clip(seed=1), 30),
        )
        prison = CallClient(
            relay.base_url,
            "pri-w",
            receive="count",
            video=EncodedTrack("video", video_clip(seed=2), 30),
        )
        watcher = CallClient(relay.base_url, "staff-w", watcher=True, receive="count")
        try:
            await family.join()
            await prison.join()
            await watcher.join()
            limit_receive_rate(watcher._pc, RateLimit(150_000, queue_s=1.0))
            await watcher.wait_frames("video1", 5, timeout=30)
            call = relay.app[keys.REGISTRY].get(94).call
            (staff,) = call.watchers
            to_watcher = staff.senders[("prison", "video")]
            to_family = call.legs["family"].senders[("prison", "video")]
            receiver = call.legs["prison"].producers["video"].receiver
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                thin, wide = viewer_remb(to_watcher), viewer_remb(to_family)
                cap = remb_cap(receiver)
                if thin and wide and cap and thin[0] < wide[0] / 2:
                    break
                await asyncio.sleep(0.5)
            assert thin and wide and cap, (thin, wide, cap)
            assert thin[0] < wide[0] / 2  # the watcher's link really is the thinnest
            assert cap > thin[0]  # and it does not cap the prison sender
        finally:
            for c in (watcher, family, prison):
                await c.close()


CHROMIUM_TARGET = """async () => {
    const stats = await window.__call.pc.getStats();
    let target = 0;
    stats.forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === 'video') target = s.targetBitrate || 0;
    });
    return target;
}"""


async def _chromium_sender_targets(config: Config, tokens: TokenTable, booking: int, cap: bool):
    """Chromium (the family page) sends; the prison client's downlink is 200 kbit/s. Returns
    Chromium's own video target (getStats) each second from 15 s to 20 s."""
    from tests.browser import chromium

    tokens.add(f"fam-{booking}", admission(booking, "family"))
    tokens.add(f"pri-{booking}", admission(booking, "prison"))
    async with relay_with(config.replace(remb_cap=cap), tokens) as relay:
        prison = CallClient(
            relay.base_url,
            f"pri-{booking}",
            receive="count",
            video=EncodedTrack("video", video_clip(seed=7), 30),
        )
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{relay.base_url}/join?token=fam-{booking}")
            await page.wait_for_function(
                "window.__call && window.__call.joins === 1", timeout=30000
            )
            try:
                await prison.join()
                limit_receive_rate(prison._pc, RateLimit(200_000, queue_s=1.0))
                await prison.wait_frames("video0", 10, timeout=40)
                await asyncio.sleep(15)
                targets = []
                for _ in range(5):
                    targets.append(await page.evaluate(CHROMIUM_TARGET))
                    await asyncio.sleep(1)
                return targets
            finally:
                await prison.close()


@pytest.mark.skipif(
    os.environ.get("RELAY_MEASURE_CHROMIUM_REMB") != "1",
    reason="a measurement: set RELAY_MEASURE_CHROMIUM_REMB=1 (Chromium's own estimate collapses "
    "to its floor on a loaded 2-core machine, capped or not, so it is no pass/fail test; the "
    "cap's effect is tested with the Python encoder above)",
)
async def test_chromium_lowers_its_bitrate_to_a_thin_prison_downlink(config, tokens):
    capped = await _chromium_sender_targets(config, tokens, 95, cap=True)
    free = await _chromium_sender_targets(config, tokens, 96, cap=False)
    print(
        f"\nChromium's video target, prison downlink 200 kbit/s: with the cap {capped}, "
        f"without {free}"
    )
    assert max(capped) < 250_000, capped
    assert min(free) > 1.5 * max(capped), (capped, free)


def test_a_viewer_is_not_blamed_for_the_senders_uplink_loss():
    """Loss the sender's uplink caused reaches the viewer as gaps; only the rest is its own."""
    from relay.media.bandwidth import _own_share

    assert _own_share(0.25, 0.25) == 0.0
    assert _own_share(0.25, 0.0) == 0.25
    assert abs(_own_share(0.44, 0.25) - 0.2533) < 1e-3
    assert _own_share(0.1, 0.3) == 0.0  # a viewer report older than the uplink's figure
    assert _own_share(0.5, 1.0) == 0.0
