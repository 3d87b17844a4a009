"""Identity checks in worker mode run in the detector process that keeps the leg's sample: no
frame crosses the pipe, no other process holds the descriptor models, the descriptors are the
in-process encoder's, and a process that dies mid-check fails that check cleanly and the leg's
next sample is checked by its replacement."""

from __future__ import annotations

import asyncio
import logging
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
from vision.detector import Face
from vision.identity import IdentityWorker, load_encoder
from vision.identity_check import IdentityEvent, LegIdentity
from vision.service import DetectorService
from vision.settings import VisionSettings
from vision.worker_client import RemoteFrame, WorkerLost

REPO_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "models"
CONFIG = VisionSettings(model_cache_dir=REPO_CACHE, vision_worker_processes=1)
LENGTH = 6.0

pytestmark = pytest.mark.timeout(240)


class RecordingIdentity(LegIdentity):
    """The real leg identity, also keeping each check's faces, vectors and sample time."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.seen: list[tuple[list[Face], list[np.ndarray], float]] = []

    def checked(
        self, faces: list[Face], vectors: list[np.ndarray], now: float
    ) -> IdentityEvent | None:
        self.seen.append((faces, vectors, now))
        return super().checked(faces, vectors, now)


@pytest.fixture(scope="module")
def clip() -> list[clips.EncodedFrame]:
    frames, _ = clips.two_face_clip(3, 1.6, 4.0, LENGTH)
    return frames


def stranger_gallery() -> dict[str, list[np.ndarray]]:
    v = np.random.default_rng(1).normal(size=128).astype(np.float32)
    return {"visitor:1": [v / np.linalg.norm(v)]}


async def test_an_in_call_check_is_described_where_the_sample_is_kept(clip) -> None:
    identity = IdentityWorker()
    service = DetectorService(CONFIG)
    service.identity = identity
    await service.start()
    leg = service.open_leg("call1/family", 1, lambda e: None)
    ident = leg.identity = RecordingIdentity(leg.leg_key, stranger_gallery(), CONFIG)
    worker = service.workers[0]
    try:
        pid = worker.pid
        assert pid is not None and pid != os.getpid()
        cpu0 = measure.proc_sample(pid).cpu_s
        for i, f in enumerate(clip):
            leg.offer_frame("VP8", f.data, f.keyframe, i / clips.FPS)
            await asyncio.wait_for(service.idle(), 30)
        ops = await worker.call("ops")
        process_cpu = await worker.call("cpu")
        assert measure.proc_sample(pid).cpu_s > cpu0
    finally:
        await service.stop()
        identity.close()
    assert len(ident.seen) >= 2, ident.seen
    # described in the process: no frame and no image came over the pipe for the checks
    assert ops.get("describe_kept", 0) == len(ident.seen), ops
    assert ops.get("bgr", 0) == 0 and ops.get("describe", 0) == 0, ops
    # the relay process never loaded the descriptor models (its identity thread idled)
    assert identity._encoder is None
    # identity CPU is still the relay's figure: the process's identity thread's time
    assert service.identity_cpu_s > 0.0
    assert service.identity_cpu_s == pytest.approx(process_cpu["identity"], rel=0.5, abs=0.5)
    # the same descriptors as the in-process encoder's on the same decoded frame
    decoder = av.CodecContext.create("vp8", "r")
    decoded = [
        frame.to_ndarray(format="bgr24")
        for f in clip
        for frame in decoder.decode(av.Packet(f.data))
    ]
    encoder = load_encoder(CONFIG)
    for faces, vectors, at in ident.seen:
        image = decoded[round(at * clips.FPS)]
        local = encoder.descriptors(image, faces)
        assert len(local) == len(vectors) >= 1
        for a, b in zip(local, vectors, strict=True):
            assert float(np.linalg.norm(a - b)) < 1e-4


async def test_a_process_dying_mid_check_fails_it_and_the_next_sample_is_checked(
    clip, caplog
) -> None:
    cfg = CONFIG.replace(vision_worker_restart_s=1.0, identity_interval_s=0.0)
    identity = IdentityWorker()
    service = DetectorService(cfg)
    service.identity = identity
    await service.start()
    leg = service.open_leg("call1/family", 1, lambda e: None)
    ident = leg.identity = RecordingIdentity(leg.leg_key, stranger_gallery(), cfg)
    worker = service.workers[0]
    sender = RealTimeSender(leg, clip, clips.FPS)
    play_for = sender.play_for

    caplog.set_level(logging.WARNING, logger="vision.service")
    try:
        deadline = time.monotonic() + 60
        while ident.checks < 2 or ident.running is not None:
            assert time.monotonic() < deadline, "no identity checks"
            await play_for(0.05)
        # an enrolment-sized job keeps the process's identity thread busy for seconds, so
        # the next in-call check waits behind it: it is in flight when the process dies. It
        # is sent with no check in flight (and no await since): every check from now on is
        # queued behind it, none can finish before it
        busy = worker.request(
            "describe", np.full((480, 640, 3), 120, np.uint8), [Face(100, 100, 300, 300, 0.9)] * 600
        )
        checks = ident.checks
        await play_for(1.5)
        assert not busy.done() and ident.running is not None, "no check waiting in the process"
        assert ident.checks == checks
        os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
        end = time.monotonic() + 10
        while ident.running is not None:  # the check fails at once: never a hang
            assert time.monotonic() < end, "the check hung on the dead process"
            await play_for(0.05)
        with pytest.raises(WorkerLost):
            busy.result(0)
        assert ident.checks == checks  # the failed check decided nothing
        assert any("not answered" in r.getMessage() for r in caplog.records)
        assert not any(r.exc_info for r in caplog.records)  # a warning, not a traceback
        # the replacement keeps the leg's next samples, and checks them
        deadline = time.monotonic() + 60
        while ident.checks < checks + 2:
            assert time.monotonic() < deadline, "the leg was not checked after the restart"
            sender.answer_keyframe_request()
            await play_for(0.1)
        assert service.stats.worker_restarts == 1
        # a sample of the dead process is never taken for the new one's same-numbered sample
        stale = RemoteFrame(worker, 1, worker.generation - 1)
        with pytest.raises(WorkerLost):
            await stale.describe([Face(100, 100, 300, 300, 0.9)])
    finally:
        await service.stop()
        identity.close()
