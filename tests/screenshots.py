"""Screenshots of the staff console and the family page, made by driving the real product.

    python -m tests.screenshots --out docs/screenshots

Starts the whole relay on 127.0.0.1 (a throwaway data directory), one demo call near the end
of its 30-minute slot: a headless Chromium family page whose camera is a still picture
(scikit-image's astronaut) and a Python prison client sending a clip (scikit-image's camera).
A second Chromium page is the staff console. The states come from the product itself: the
policy engine's pauses, warning and end, the API's answers. Vision is off in the demo, so the
script stages what vision would report: face counts on the live call, and one detection
through the policy engine's own entry point (``vision_over_limit``, with an evidence frame
showing a second, unapproved face), cleared a moment later.

PNGs are kept small: those over 120 KB are quantised to a 256-colour palette; none may
pass 300 KB.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

from relay import keys

MAX_BYTES = 300 * 1024
QUANTISE_BYTES = 120 * 1024
WIDTH, HEIGHT = 640, 480
WARNING_AFTER_S = 45.0
"""The demo call's last warning (60 s before its end) comes this long after it starts."""


# --- pictures ---------------------------------------------------------------------------------


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return frame.reformat(width=width, height=height, format="rgb24").to_ndarray()


def family_picture() -> tuple[np.ndarray, list[float]]:
    """The family's camera: one approved face; returns the picture and its face box."""
    from skimage import data

    canvas = np.full((HEIGHT, WIDTH, 3), (186, 176, 160), dtype=np.uint8)
    size = 480
    canvas[:, 40:40 + size] = _resize(data.astronaut(), size, size)
    s = size / 512
    box = [40 + 182 * s, 59 * s, 40 + 270 * s, 177 * s]
    return canvas, box


def evidence_picture() -> tuple[bytes, list[list[float]]]:
    """The family's camera with a second face come into view, as vision's evidence JPEG:
    the counted faces boxed in red (relay/vision draws them the same way)."""
    from PIL import Image, ImageDraw
    from skimage import data

    canvas, first = family_picture()
    cam = data.camera()
    patch = np.stack([cam[95:225, 175:285]] * 3, -1)  # the photographer's head and shoulders
    x, y = 505, 170
    canvas[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
    second = [x + (202 - 175), y + (119 - 95), x + (258 - 175), y + (197 - 95)]
    boxes = [first, [float(v) for v in second]]
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for box in boxes:
        draw.rectangle(box, outline=(255, 0, 0), width=3)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return out.getvalue(), boxes


def prison_clip():
    """The prison laptop's camera: the photographer, swaying slightly, VP8."""
    from skimage import data

    from protocol.media import encode_video

    still = _resize(np.stack([data.camera()] * 3, -1), 320, 320)[30:270]
    frames = [np.roll(still, round(3 * np.sin(i / 10)), axis=1) for i in range(60)]
    return encode_video(frames, bitrate=400_000, keyframe_interval=30)


def write_y4m(path: Path, rgb: np.ndarray) -> None:
    """A still picture as Chromium's fake camera (it loops the file)."""
    import av

    h, w = rgb.shape[:2]
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(2):
            f.write(b"FRAME\n" + yuv.tobytes())


def shrink(path: Path) -> None:
    """Re-save optimised; a picture-heavy one goes to a 256-colour palette (a quarter of the
    bytes, still readable), so the repository stays small."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    img.save(path, optimize=True)
    if path.stat().st_size > QUANTISE_BYTES:
        img.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{path} is {path.stat().st_size} bytes, over {MAX_BYTES}")


# --- the run ------------------------------------------------------------------------------------


async def frames(page, who: str) -> list[int]:
    stats = await page.evaluate(
        """async (w) => {
            const c = w === 'watch' ? window.__watch : window.__call;
            return c ? await c.framesDecoded() : {};
        }""", who)
    return [v for k, v in sorted(stats.items()) if k.startswith("video")]


async def until_frames(page, who: str, n: int, streams: int = 1, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = await frames(page, who)
        if len(got) >= streams and all(f > n for f in got[:streams]):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{who}: frames {got}")
        await asyncio.sleep(0.25)


async def run(out: Path, warning_after: float = WARNING_AFTER_S) -> list[Path]:
    from bench.product import start_product
    from protocol.client import CallClient
    from protocol.media import EncodedTrack
    from relay.records.audit import Evidence
    from tests.browser import chromium
    from tests.support import tone_clip
    from tests.test_store_world import PASSWORD

    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []

    async def shot(page, name: str, *, full_page: bool = False, element: str | None = None):
        path = out / f"{name}.png"
        await page.wait_for_timeout(300)  # let the last paint land
        if element:
            await page.locator(element).screenshot(path=str(path))
        else:
            await page.screenshot(path=str(path), full_page=full_page)
        shrink(path)
        saved.append(path)
        print(f"  {path} ({path.stat().st_size // 1024} KB)", flush=True)

    with tempfile.TemporaryDirectory(prefix="relay-screenshots-") as tmp:
        tmp_path = Path(tmp)
        camera = tmp_path / "family.y4m"
        write_y4m(camera, family_picture()[0])
        product = await start_product(tmp_path, resume_after_clear_s=2.0)
        prison = None
        try:
            w = product.world
            # the demo call: 30 minutes, of which a little over a minute is left
            b = product.booking_now(seconds=1800, starts_in=-(1800 - 60 - warning_after))
            # two requests for staff to decide, one call booked for tomorrow
            now = time.time()
            for prisoner, hours in ((w.prisoner_a2, 26), (w.prisoner_a2, 50)):
                w.store.request_booking(
                    prisoner_id=prisoner, call_type="social", starts_at=now + hours * 3600,
                    minutes=30, main_visitor_id=w.vid("mum"), visitor_ids=[],
                    requested_by="family", now=now, actor="demo")
            legal = w.store.request_booking(
                prisoner_id=w.prisoner_a, call_type="legal", starts_at=now + 20 * 3600,
                minutes=60, main_visitor_id=w.vid("dad"), visitor_ids=[],
                requested_by="prisoner", now=now, actor="demo")
            w.store.approve_booking(legal.id, w.officer_a, now)
            family_token = await product.family_token(b)
            prison = CallClient(product.url, await product.prison_token(b), receive="count",
                                video=EncodedTrack("video", prison_clip(), 30),
                                audio=EncodedTrack("audio", tone_clip(440), 50))

            async with chromium([f"--use-file-for-fake-video-capture={camera}"]) as browser:
                family = await browser.new_page()
                console = await browser.new_page()

                # family: the waiting room
                await family.goto(f"{product.url}/join?token={quote(family_token)}")
                await family.wait_for_function("window.__call && window.__call.joins === 1")
                await family.wait_for_function(
                    "document.getElementById('local').videoWidth > 0")
                await shot(family, "family-waiting")

                # console: log in
                await console.goto(f"{product.url}/console")
                await console.get_by_label("Username").fill("officer_a")
                await shot(console, "console-login")
                await console.get_by_label("Password").fill(PASSWORD)
                await console.get_by_role("button", name="Log in").click()
                await console.wait_for_selector(f'#calls tr[data-booking="{b}"]')

                # the prison side joins: live
                await prison.join()
                live = product.app[keys.REGISTRY].get(b)
                for role in ("family", "prison"):  # what vision would report, for the row
                    live.policy.vision_count(role, 1)
                await until_frames(family, "call", 20)
                await family.wait_for_function("document.getElementById('remote').videoWidth > 0")
                await shot(family, "family-live")
                await family.set_viewport_size({"width": 390, "height": 844})
                await shot(family, "family-phone")
                await family.set_viewport_size({"width": 1024, "height": 720})

                await console.wait_for_selector(f'#calls tr[data-booking="{b}"][data-state="live"]')
                await shot(console, "console-calls", full_page=True)
                await console.set_viewport_size({"width": 390, "height": 844})
                await shot(console, "console-phone")
                await console.set_viewport_size({"width": 1024, "height": 720})

                # watch (social call: both sides seen and heard)
                await console.get_by_role("button", name=f"Watch call {b}").click()
                await until_frames(console, "watch", 20, streams=2)
                await console.wait_for_function(
                    "document.getElementById('watch-prison').videoWidth > 0 &&"
                    " document.getElementById('watch-family').videoWidth > 0")
                await shot(console, "console-watching", full_page=True)

                # staff pause with a note, then resume
                await console.get_by_role("button", name=f"Pause call {b}").click()
                await console.get_by_label("Note for the audit trail (optional)").fill(
                    "checking who is in the room")
                await shot(console, "console-pause-dialog")
                await console.get_by_role("button", name="Pause call", exact=True).click()
                await family.wait_for_function("document.body.dataset.state === 'paused'")
                await shot(family, "family-paused-by-staff")
                await console.get_by_role("button", name=f"Resume call {b}").click()
                await family.wait_for_function("document.body.dataset.state === 'live'")

                # vision (staged): a second face on the family camera pauses the call
                jpeg, boxes = evidence_picture()
                live.policy.vision_over_limit("family", 2, 1, evidence=Evidence(jpeg, boxes))
                await family.wait_for_function("document.body.dataset.state === 'paused'")
                await shot(family, "family-paused")
                await console.wait_for_selector(
                    f'#calls tr[data-booking="{b}"][data-state="paused"]')
                await shot(console, "console-alert", element="#app > section:first-child")
                for role in ("family", "prison"):  # what vision would report, for the row
                    live.policy.vision_count(role, 1)
                live.policy.vision_cleared("family", 1)
                await family.wait_for_function("document.body.dataset.state === 'live'")

                # the audit timeline with the evidence frame
                await console.get_by_role("button", name=f"Audit timeline of call {b}").click()
                await console.wait_for_selector('figure.evidence[data-loaded="true"]')
                await shot(console, "console-timeline", element="#timeline")

                # the last warning counts down until the end
                await family.wait_for_function("document.body.dataset.state === 'warning'",
                                               timeout=(warning_after + 60) * 1000)
                await family.wait_for_timeout(2500)
                await shot(family, "family-warning")

                # staff end the call (after confirming)
                await console.get_by_role("button", name=f"End call {b}").click()
                await shot(console, "console-end-dialog")
                await console.get_by_role("button", name="End call", exact=True).click()
                await family.wait_for_function("document.body.dataset.state === 'ended'")
                await shot(family, "family-ended")

                # the recording, played in the console
                rec = f'#recordings tr[data-booking="{b}"]'
                deadline = time.monotonic() + 20
                while True:
                    await console.get_by_role("button", name="Find recordings").click()
                    await console.wait_for_timeout(500)
                    texts = await console.locator(rec).all_text_contents()
                    if texts and "complete" in texts[0]:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no complete recording: {texts}")
                rec_id = await console.locator(rec).get_attribute("data-recording")
                await console.get_by_role("button", name=f"Play recording {rec_id}").click()
                await console.wait_for_function(
                    "document.getElementById('player-video').readyState >= 2", timeout=15000)
                await console.evaluate("document.getElementById('player-video').pause()")
                await shot(console, "console-recordings",
                           element="section[aria-labelledby=recordings-title]")
        finally:
            if prison is not None:
                await prison.close()
            await product.server.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.screenshots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--warning-after", type=float, default=WARNING_AFTER_S,
                        help="seconds from the call's start to its last warning (default "
                        f"{WARNING_AFTER_S:g}); raise it on a slow machine")
    args = parser.parse_args(argv)
    started = time.monotonic()
    saved = asyncio.run(run(args.out, args.warning_after))
    print(f"{len(saved)} screenshots in {args.out} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
