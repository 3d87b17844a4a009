"""The detector process (vision/worker.py): the same decisions as in-process, off the relay's
process, and a process that dies is noticed, reported behind and replaced, never hung on."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from pathlib import Path

import av
import numpy as np
import pytest

from bench import measure
from bench import vision_clips as clips
from tests.support import RealTimeSender
from vision.decisions import VisionEvent
from vision.detector import letterbox_frame
from vision.service import DetectorService
from vision.settings import VisionSettings

REPO_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "models"
CONFIG = VisionSettings(model_cache_dir=REPO_CACHE, vision_worker_processes=1)
APPEAR, LEAVE, LENGTH = 1.6, 4.0, 6.0

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def clip() -> list[clips.EncodedFrame]:
    frames, _ = clips.two_face_clip(3, APPEAR, LEAVE, LENGTH)
    return frames


def cpu_s(pid: int) -> float:
    return measure.proc_sample(pid).cpu_s


async def test_second_face_is_decided_in_the_detector_process(clip) -> None:
    service = DetectorService(CONFIG)
    await service.start()
    events: list[VisionEvent] = []
    leg = service.open_leg("call1/family", 1, events.append)
    try:
        worker_pid = service.workers[0].pid
        assert worker_pid is not None and worker_pid != os.getpid()
        worker_cpu0 = cpu_s(worker_pid)
        for i, f in enumerate(clip):
            leg.offer_frame("VP8", f.data, f.keyframe, i / clips.FPS)
            await asyncio.wait_for(service.idle(), 30)
        worker_cpu = cpu_s(worker_pid) - worker_cpu0
        # the bench counts the process: its memory and CPU are part of the relay's figures
        tree, own = measure.proc_tree_sample(os.getpid()), measure.proc_sample(os.getpid())
        assert tree.rss_bytes > own.rss_bytes and tree.cpu_s > own.cpu_s
        # the enrolment path uses the Detector protocol through the process (off the loop)
        ctx = av.CodecContext.create("vp8", "r")
        frame = next(iter(ctx.decode(av.Packet(clip[0].data))))  # a keyframe, one face
        image, _ = letterbox_frame(frame, service.detector.input_size)
        faces = await asyncio.get_running_loop().run_in_executor(
            None, service.detector.detect_batch, [image]
        )
        assert len(faces) == 1 and len(faces[0]) >= 1
    finally:
        await service.stop()
    kinds = [(e.kind, e.count) for e in events]
    assert kinds == [
        ("count_changed", 1),
        ("count_changed", 2),
        ("over_limit", 2),
        ("count_changed", 1),
        ("cleared", 1),
    ], kinds
    over = next(e for e in events if e.kind == "over_limit")
    assert APPEAR < over.at <= APPEAR + 1.5
    assert over.evidence_jpeg is not None and over.evidence_jpeg[:2] == b"\xff\xd8"
    stats = service.stats
    assert stats.samples_taken == stats.samples_detected > LENGTH
    assert stats.decode_errors == 0 and stats.detector_errors == 0
    # the work ran in the process: no decode or detect thread time in the relay's
    assert stats.decode_cpu_s == 0.0 and stats.inference_cpu_s == 0.0
    assert worker_cpu > 0.1
    assert service.workers == [] and service.detector is None  # stopped with the service


async def test_a_killed_detector_process_is_reported_behind_and_replaced(clip) -> None:
    cfg = CONFIG.replace(vision_worker_restart_s=4.0)
    service = DetectorService(cfg)
    await service.start()
    leg = service.open_leg("call1/family", 1, lambda e: None)
    sender = RealTimeSender(leg, clip, clips.FPS)
    play_for = sender.play_for

    try:
        await play_for(2.5)
        before = service.stats.samples_detected
        assert before >= 2
        old_pid = service.workers[0].pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        await play_for(3.0)  # the replacement waits 4 s: the checks fall behind meanwhile
        health = service.health(2.5, 0.9, 1.5)
        assert health.behind == ["call1/family"]
        await asyncio.wait_for(service.idle(), 5)  # nothing hangs on the dead process
        assert service.stats.samples_detected <= before + 1
        deadline = time.monotonic() + 60
        while not service.workers[0].up:
            assert time.monotonic() < deadline, "no new detector process"
            await play_for(0.2)
        assert service.workers[0].pid != old_pid and service.stats.worker_restarts == 1
        # the leg starts again at the next keyframe (asked for) and is checked again
        after = service.stats.samples_detected
        for _ in range(100):
            sender.answer_keyframe_request()
            await play_for(0.1)
            if service.stats.samples_detected >= after + 2:
                break
        assert service.stats.samples_detected >= after + 2
    finally:
        await service.stop()


async def test_a_process_that_cannot_load_the_model_is_a_clear_error(tmp_path) -> None:
    from vision.model import ModelError

    service = DetectorService(
        CONFIG.replace(model_cache_dir=tmp_path / "empty", vision_worker_start_timeout_s=60.0)
    )
    with pytest.raises(ModelError):
        await service.start()
    assert service.workers == [] and service.detector is None


def test_frames_stay_in_the_process() -> None:
    """The worker keeps a few sampled frames per leg, not a growing history."""
    from vision.worker import KEEP_DETECTED, _Worker

    class NoDetector:
        input_size = (384, 288)

        def detect_batch(self, images: list[np.ndarray]) -> list[list[object]]:
            return [[] for _ in images]

    frames, _ = clips.two_face_clip(3, APPEAR, LEAVE, 2.0)
    w = _Worker(None, NoDetector())  # type: ignore[arg-type]

    def sample(n: int) -> int:
        out = w.decode(
            "leg", "VP8", [f.data for f in frames[n : n + 6]], False, (384, 288), True, False, []
        )
        assert out is not None
        return out[0]

    superseded = sample(0)
    first = sample(6)
    w.handle("detect", 1, ([first],))  # asked for: kept until detected
    sample(12)
    sample(18)
    newest = sample(24)
    assert superseded not in w.kept, "superseded before anyone asked: dropped, as in the slot"
    assert first in w.kept and newest in w.kept and len(w.kept) == 3
    assert w.detect([first]) == [([], [])] and w.detect([superseded]) == [None]
    for n in range(30, len(frames) - 6, 6):  # later samples, each detected
        seq = sample(n)
        w.kept[seq].wanted = True
        w.detect([seq])
    assert len(w.kept) <= KEEP_DETECTED + 2  # the detected ones kept for evidence, the newest
    w.close("leg")
    assert not w.kept and not w.decoders


async def test_identity_descriptors_are_computed_in_the_detector_process(clip) -> None:
    """An enrolment photo (no kept sample) is described by the detector process too (the
    descriptor models are loaded once per node, there), with the same descriptor as the
    relay's own encoder; there is no separate identity process."""
    from vision.identity import IdentityWorker, load_encoder

    identity = IdentityWorker()
    service = DetectorService(CONFIG)
    service.identity = identity
    await service.start()
    try:
        ctx = av.CodecContext.create("vp8", "r")
        image = next(iter(ctx.decode(av.Packet(clip[0].data)))).to_ndarray(format="bgr24")
        boxed, scale = letterbox_frame(
            av.VideoFrame.from_ndarray(image, format="bgr24"), service.detector.input_size
        )
        loop = asyncio.get_running_loop()
        faces = (await loop.run_in_executor(None, service.detector.detect_batch, [boxed]))[0]
        face = max(faces, key=lambda f: f.score).scaled(1.0 / scale)
        pid = service.workers[0].pid
        assert pid is not None and pid != os.getpid()
        assert [p.pid for p in multiprocessing.active_children()] == [pid]  # no other process
        worker_cpu0 = cpu_s(pid)
        remote = await identity.run(lambda enc: (type(enc).__name__, enc.descriptor(image, face)))
        assert remote[0] == "RemoteEncoder"
        assert cpu_s(pid) - worker_cpu0 > 0.001  # it ran there
        await asyncio.sleep(0.1)  # the process's CPU figure reaches the loop
        assert service.identity_cpu_s > 0.0  # and the relay's identity figures count it
    finally:
        await service.stop()
        identity.close()
    local = load_encoder().descriptor(image, face)
    assert float(np.linalg.norm(local - remote[1])) < 1e-4
