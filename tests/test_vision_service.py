"""The batched service and per-leg samplers, driven with real VP8 frames and a controlled clock."""

from __future__ import annotations

import asyncio
import threading
from fractions import Fraction
from pathlib import Path

import pytest

from bench import vision_clips as clips
from vision.decisions import VisionEvent
from vision.detector import CenterFaceDetector
from vision.eval import iou
from vision.model import ensure
from vision.service import SAMPLES_DROPPED, DetectorService
from vision.settings import VisionSettings

REPO_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "models"
CONFIG = VisionSettings(model_cache_dir=REPO_CACHE)
APPEAR, LEAVE, LENGTH = 1.6, 4.0, 6.0

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def detector() -> CenterFaceDetector:
    return CenterFaceDetector(ensure(cache_dir=REPO_CACHE), (320, 256), threads=1)


@pytest.fixture(scope="module")
def clip() -> list[clips.EncodedFrame]:
    frames, labels = clips.two_face_clip(3, APPEAR, LEAVE, LENGTH)
    assert len(labels[round(APPEAR * clips.FPS) - 1]) == 1 and len(labels[round(APPEAR * clips.FPS)]) == 2
    return frames


class RecordingDetector:
    """The real detector, recording which thread runs it and optionally holding it back."""

    def __init__(self, inner: CenterFaceDetector) -> None:
        self.inner = inner
        self.input_size = inner.input_size
        self.threads: set[str] = set()
        self.batch_sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def detect_batch(self, images):
        self.threads.add(threading.current_thread().name)
        self.batch_sizes.append(len(images))
        assert self.gate.wait(30)
        return self.inner.detect_batch(images)


async def play(service: DetectorService, leg, frames, fps: int = clips.FPS, start: int = 0) -> None:
    """Offer the frames on the clip's own clock, letting each sample be decided before going on."""
    for i, f in enumerate(frames):
        leg.offer_frame("VP8", f.data, f.keyframe, (start + i) / fps)
        await service.idle()


async def test_second_face_confirms_over_limit_then_clears(detector, clip) -> None:
    recorder = RecordingDetector(detector)
    service = DetectorService(CONFIG, recorder)
    await service.start()
    events: list[VisionEvent] = []
    leg = service.open_leg("call1/family", 1, events.append)
    assert leg.needs_all_frames
    assert leg.keyframe_wanted(0.0)  # nothing to decode from until a keyframe arrives
    try:
        await play(service, leg, clip)
    finally:
        await service.stop()
    kinds = [(e.kind, e.count) for e in events]
    assert kinds == [("count_changed", 1), ("count_changed", 2), ("over_limit", 2),
                     ("count_changed", 1), ("cleared", 1)], kinds
    over = next(e for e in events if e.kind == "over_limit")
    cleared = next(e for e in events if e.kind == "cleared")
    assert APPEAR < over.at <= APPEAR + 1.5  # within the policy's 1.5 s (clip time)
    assert LEAVE < cleared.at <= LEAVE + 2.0
    assert over.approved == 1 and len(over.boxes) == 2 and len(over.scores) == 2
    assert over.evidence_jpeg is not None and over.evidence_jpeg[:2] == b"\xff\xd8"
    assert not leg.keyframe_wanted(LENGTH)
    # detection ran on the dedicated thread, never on the event loop's
    assert recorder.threads == {next(iter(recorder.threads))}
    assert next(iter(recorder.threads)).startswith("vision-detect")
    stats = service.stats
    assert stats.samples_taken == stats.samples_detected > LENGTH  # about 1/s plus bursts
    assert stats.samples_dropped == 0 and stats.decode_errors == 0


async def test_one_face_within_the_approved_count_gives_no_over_limit(detector, clip) -> None:
    service = DetectorService(CONFIG, detector)
    await service.start()
    events: list[VisionEvent] = []
    leg = service.open_leg("call1/family", 2, events.append)
    try:
        await play(service, leg, clip)
    finally:
        await service.stop()
    assert [e.kind for e in events if e.kind != "count_changed"] == []


async def test_overload_drops_and_counts_samples_instead_of_queueing(detector, clip) -> None:
    recorder = RecordingDetector(detector)
    cfg = CONFIG.replace(detector_batch_max=2, detector_batch_wait_ms=0.0)
    service = DetectorService(cfg, recorder)
    await service.start()
    legs = [service.open_leg(f"call{i}/family", 1, lambda e: None) for i in range(3)]
    dropped_before = SAMPLES_DROPPED._value.get()
    recorder.gate.clear()  # the detector is stuck on its first batch
    try:
        for i, f in enumerate(clip[:120]):
            for leg in legs:
                leg.offer_frame("VP8", f.data, f.keyframe, i / clips.FPS)
            await asyncio.sleep(0.002)  # let decodes complete
        # at most one pending sample per leg, whatever the backlog
        assert len(service._slots) <= len(legs)
        assert service.stats.samples_dropped > 0
        assert SAMPLES_DROPPED._value.get() - dropped_before == service.stats.samples_dropped
    finally:
        recorder.gate.set()
        await service.idle()
        await service.stop()
    assert max(recorder.batch_sizes) <= 2
    taken, detected, dropped = (service.stats.samples_taken, service.stats.samples_detected,
                                service.stats.samples_dropped)
    assert taken == detected + dropped


async def test_keyframe_mode_decodes_keyframes_and_follows_every_frame_in_a_burst(
        detector, clip) -> None:
    """Keyframe mode: a sample decodes only a keyframe; a burst decodes the inter frames kept
    since it (no further keyframe asked for); once the count is agreed, inter frames are kept
    but not decoded, and a keyframe is asked for shortly before the next sample is due."""
    from vision.sampler import KEYFRAME_LEAD_S

    service = DetectorService(CONFIG, detector, keyframes_only=True)
    await service.start()
    leg = service.open_leg("call1/prison", 1, lambda e: None)
    fps = clips.FPS
    try:
        assert leg.needs_all_frames  # the inter frames are kept for bursts
        assert leg.keyframe_wanted(0.0)
        leg.offer_frame("VP8", clip[5].data, False, 0.0)  # nothing to decode from yet
        assert service.stats.samples_taken == 0
        assert clip[0].keyframe
        leg.offer_frame("VP8", clip[0].data, True, 0.0)
        await service.idle()
        assert service.stats.samples_detected == 1
        assert leg._decoder._ctx is None, "a steady sample's decoder is not kept (2.4 MB a leg)"
        # one face where none was agreed yet: a burst, decoded from the kept inter frames
        # (the keyframe first again: its decoder was dropped)
        assert not leg.keyframe_wanted(0.05)
        for i in range(1, 45):  # up to 1.5 s (the burst and its last sample), inter frames only
            assert not clip[i].keyframe
            leg.offer_frame("VP8", clip[i].data, False, i / fps)
            await service.idle()
        assert service.stats.samples_detected >= 4, "burst samples came from inter frames"
        assert service.stats.decode_errors == 0
        assert leg._decoder._ctx is not None, "a burst keeps its decoder"
        assert not leg.keyframe_wanted(1.5)
        # the count is agreed: back to keyframes only; the inter frames are not decoded
        cpu = service.stats.decode_cpu_s
        taken = service.stats.samples_taken
        last = 45
        while not leg.keyframe_wanted(last / fps):
            assert not clip[last].keyframe
            leg.offer_frame("VP8", clip[last].data, False, last / fps)
            await service.idle()
            last += 1
            assert last < 120, "a keyframe was never asked for"
        assert service.stats.samples_taken == taken
        assert service.stats.decode_cpu_s - cpu < 0.002 * (last - 45) + 0.01
        due = leg._next_at
        assert due - KEYFRAME_LEAD_S <= last / fps < due
        assert not leg.keyframe_wanted(last / fps + 0.1), "asked once, not on every frame"
        leg.offer_frame("VP8", clip[0].data, True, last / fps)  # the sender's answer
        await service.idle()
        assert service.stats.samples_taken == taken + 1
    finally:
        await service.stop()


async def test_garbage_waits_for_a_keyframe_and_a_closed_leg_is_quiet(detector, clip) -> None:
    service = DetectorService(CONFIG, detector)
    await service.start()
    events: list[VisionEvent] = []
    leg = service.open_leg("call1/family", 0, events.append)
    try:
        leg.offer_frame("VP8", clip[0].data, True, 0.0)
        await service.idle()
        leg.offer_frame("VP8", b"\x00\x01garbage" * 10, False, 5.0)
        await service.idle()
        assert service.stats.decode_errors == 1
        assert leg.keyframe_wanted(5.1)
        leg.offer_frame("VP8", clip[1].data, False, 5.1)  # not decodable without a keyframe
        await service.idle()
        assert service.stats.samples_taken == 1  # the garbage gave no sample
        leg.close()
        leg.offer_frame("VP8", clip[0].data, True, 6.0)
        await service.idle()
        assert service.stats.samples_taken == 1 and not leg.keyframe_wanted(6.0)
        leg.offer_frame("H265", b"x", True, 7.0)  # unknown codecs are ignored
    finally:
        await service.stop()
    assert all(e.kind == "count_changed" for e in events)


async def test_disabled_vision_is_a_no_op(tmp_path) -> None:
    service = DetectorService(VisionSettings(enabled=False, model_cache_dir=tmp_path))
    await service.start()  # no model needed
    leg = service.open_leg("call1/family", 1, lambda e: None)
    leg.offer_frame("VP8", b"x", True, 0.0)
    assert not leg.needs_all_frames and not leg.keyframe_wanted(0.0)
    await service.stop()


async def test_h264_annex_b_frames_are_sampled_too(detector) -> None:
    import av
    import numpy as np

    patches = clips.face_patches()
    canvas = clips.backgrounds()["coffee"].copy()
    truth = clips.paste_face(canvas, patches[0], 250, 150, 128)
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = clips.WIDTH, clips.HEIGHT, "yuv420p"
    enc.time_base = Fraction(1, clips.FPS)
    enc.options = {"preset": "ultrafast", "tune": "zerolatency"}
    rng = np.random.default_rng(0)
    packets = []
    for i in range(10):
        frame = av.VideoFrame.from_ndarray(clips.add_noise(canvas, rng), format="rgb24")
        frame.pts = i
        packets += [(bytes(p), bool(p.is_keyframe)) for p in enc.encode(frame)]
    packets += [(bytes(p), bool(p.is_keyframe)) for p in enc.encode(None)]
    assert packets[0][0][:4] in (b"\x00\x00\x00\x01", b"\x00\x00\x01\x09")  # Annex B

    service = DetectorService(CONFIG, detector)
    await service.start()
    events: list[VisionEvent] = []
    leg = service.open_leg("call1/prison", 1, events.append)
    try:
        for i, (data, key) in enumerate(packets):
            leg.offer_frame("H264", data, key, i * 0.3)  # a sample due at almost every frame
            await service.idle()
    finally:
        await service.stop()
    assert service.stats.decode_errors == 0 and service.stats.samples_detected >= 3
    assert [(e.kind, e.count) for e in events] == [("count_changed", 1)]
    assert iou(events[0].boxes[0], truth) >= 0.6


def test_the_package_exports_the_interface() -> None:
    import vision
    from vision.sampler import LegSampler

    assert vision.DetectorService is DetectorService and vision.LegSampler is LegSampler
    assert vision.VisionEvent is VisionEvent
