"""The batched face detection service: one per relay process.

Flow, with the thread each step runs on::

    relay (loop) ── offer_frame ──> LegSampler: keeps encoded frames, decides when to sample
    decode thread:  decode the kept frames, convert + letterbox the sampled one
    loop:           newest-pending-sample slot per leg (a newer sample replaces an older one
                    not yet detected on: dropped and counted, never queued without bound)
    loop:           batcher: up to ``detector_batch_max`` slots, waiting at most
                    ``detector_batch_wait_ms`` for a batch to fill
    detect thread:  ``Detector.detect_batch`` (onnxruntime releases the GIL)
    loop:           per-leg decisions; events get their evidence JPEG (decode thread), then
                    ``on_event`` is called on the loop

Both threads are dedicated single-thread executors, so detection never runs on the event loop
and never takes more than one core, whatever the number of legs.

With ``vision_worker_processes`` > 0 (the relay's default) the decode and detect steps run in
detector processes instead (vision/worker.py): each leg's decoder lives in one of them, the
sampled frame stays there (:class:`vision.worker_client.RemoteFrame`), and only faces, face
looks and - for an event - one JPEG come back. An identity check (in the call or before it) is
described by the process that keeps the sample, on its identity thread (dlib's landmarks and
chips, ~1.4 ms of its GIL, then the ONNX network, which releases it): only the descriptors
come back, never the frame, and no other process holds the descriptor models. The
relay's own process keeps the sampling, slots, batching and decisions, so its GIL is left to
forwarding. A process that dies fails its requests at once, its legs wait for their next
keyframe, and it is started again after ``vision_worker_restart_s`` (checks meanwhile are
reported behind by vision/health.py, never hung).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import Counter, Histogram

from vision.convert import to_array
from vision.decisions import VisionEvent, counted_faces
from vision.detector import Detector, Face, load_detector
from vision.health import VisionHealth, assess
from vision.identity import IdentityWorker
from vision.identity_check import LegIdentity, face_look
from vision.identity_precall import PrecallCheck, PrecallResult, face_luma
from vision.sampler import Decoded, LegSampler, Sample, _Decoder, evidence_jpeg
from vision.settings import VisionSettings
from vision.worker import detect_in_runs
from vision.worker_client import RemoteEncoder, RemoteFrame, VisionWorker, WorkerLost

log = logging.getLogger(__name__)

# Process-wide Prometheus metrics: module-level singletons (registered once however many
# services a test creates), no per-call or per-leg labels.
INFERENCE_SECONDS = Histogram(
    "relay_detector_inference_seconds", "Time of one detector batch inference",
    buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28))
BATCH_SIZE = Histogram(
    "relay_detector_batch_size", "Samples per detector batch", buckets=(1, 2, 3, 4, 6, 8, 12, 16))
SAMPLES = Counter("relay_vision_samples_total", "Video frames sampled for face detection")
SAMPLES_DROPPED = Counter(
    "relay_vision_samples_dropped_total",
    "Samples replaced by a newer one of the same leg before the detector got to them")
DECISION_LATENCY = Histogram(
    "relay_vision_decision_latency_seconds", "From a frame being sampled to its decision",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2))
EVENTS = Counter("relay_vision_events_total", "Vision events emitted", ["kind"])
IDENTITY_CPU = Counter(
    "relay_identity_cpu_seconds_total",
    "CPU time of the identity thread on descriptors (in-call re-checks and the check before "
    "the call)")
IDENTITY_CHECKS = Counter(
    "relay_identity_checks_total", "Identity checks run (one or more descriptors each)")


PrecallCallback = Callable[[PrecallResult], None]


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of a non-empty collection."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class VisionStats:
    """Plain counters and recent latencies of one service (the metrics above are process-wide)."""

    samples_taken: int = 0
    samples_detected: int = 0
    samples_dropped: int = 0
    decode_errors: int = 0
    detector_errors: int = 0
    resyncs: int = 0
    worker_restarts: int = 0
    """Detector processes started again after dying (worker mode)."""
    motion_samples: int = 0
    batches: int = 0
    events: int = 0
    inference_s_total: float = 0.0
    """Wall time of the detector's batches."""
    inference_cpu_s: float = 0.0
    """CPU time of the detect thread (onnxruntime with one intra-op thread runs on it)."""
    decode_cpu_s: float = 0.0
    """CPU time of the decode thread: decoding, frame difference, converting samples."""
    batch_sizes: collections.Counter[int] = field(default_factory=collections.Counter)
    inference_ms: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=1000))
    decision_latency_ms: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=1000))

    def summary(self) -> dict[str, object]:
        def p(values: collections.deque[float], q: float) -> float | None:
            return percentile(values, q) if values else None

        return {
            "samples_taken": self.samples_taken, "samples_detected": self.samples_detected,
            "samples_dropped": self.samples_dropped, "batches": self.batches,
            "batch_sizes": dict(self.batch_sizes), "events": self.events,
            "decode_errors": self.decode_errors, "detector_errors": self.detector_errors,
            "inference_ms_mean": statistics.fmean(self.inference_ms) if self.inference_ms else None,
            "decision_latency_ms_p50": p(self.decision_latency_ms, 0.5),
            "decision_latency_ms_p95": p(self.decision_latency_ms, 0.95),
        }


class DetectorService:
    def __init__(self, config: VisionSettings, detector: Detector | None = None, *,
                 keyframes_only: bool = False) -> None:
        self.config = config
        self.detector = detector
        self.keyframes_only = keyframes_only
        self.stats = VisionStats()
        self._legs: dict[str, LegSampler] = {}
        self._slots: dict[str, Sample] = {}  # insertion order = oldest pending first
        self._busy = 0  # decodes in flight + pending samples + samples in the batch
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._batcher: asyncio.Task[None] | None = None
        self._decode_pool: ThreadPoolExecutor | None = None
        self._detect_pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.identity: IdentityWorker | None = None
        """Runs the in-call re-checks of legs that have a gallery (relay/app.py sets it)."""
        self.identity_checks = 0
        self.identity_cpu_s = 0.0
        """CPU time of the identity thread spent on in-call descriptors."""
        self._identify_tasks: set[asyncio.Task[None]] = set()
        self._precall: dict[str, tuple[LegSampler, PrecallCheck, PrecallCallback]] = {}
        """Legs whose check before the call is open (vision/identity_precall.py)."""
        self.workers: list[VisionWorker] = []
        """Worker mode: the detector processes (none when a detector was given or configured 0)."""
        self._leg_worker: dict[str, VisionWorker] = {}
        self._restarts: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    async def start(self) -> None:
        """Load the model (from the verified cache, when none was given) and start batching.

        Raises :class:`vision.model.ModelError` when the model is missing or corrupt.
        """
        if self._batcher is not None or not self.enabled:
            return
        self._loop = asyncio.get_running_loop()
        self._decode_pool = ThreadPoolExecutor(1, thread_name_prefix="vision-decode")
        self._detect_pool = ThreadPoolExecutor(1, thread_name_prefix="vision-detect")
        if self.detector is None and self.config.vision_worker_processes > 0:
            describe = self.identity is not None  # checks describe where the sample is kept
            self.workers = [VisionWorker(self.config, describe=describe) for _ in
                            range(self.config.vision_worker_processes)]
            for w in self.workers:
                w.on_lost = functools.partial(self._worker_lost, w)
            try:
                await asyncio.gather(*(w.start() for w in self.workers))
            except BaseException:
                await self.stop()
                raise
            self.detector = self.workers[0]  # the Detector protocol, for enrolment photos
            if self.identity is not None:  # enrolment photos: described there too
                worker, loop = self.workers[0], self._loop
                on_cpu = functools.partial(loop.call_soon_threadsafe, self._identity_cpu)
                await self._loop.run_in_executor(
                    None, self.identity.use_encoder,
                    lambda: RemoteEncoder(worker, on_cpu))  # type: ignore[arg-type,return-value]
        elif self.detector is None:
            try:
                self.detector = await self._loop.run_in_executor(
                    self._detect_pool, load_detector, self.config)
                # One warm-up inference, so the first call's sample is not the slow one.
                w, h = self.detector.input_size
                await self._loop.run_in_executor(self._detect_pool, self.detector.detect_batch,
                                                 [np.zeros((h, w, 3), np.uint8)])
            except BaseException:
                await self.stop()
                raise
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._batcher = asyncio.create_task(self._run_batcher(), name="vision-batcher")

    async def stop(self) -> None:
        for sampler in list(self._legs.values()):
            sampler.close()
        for task in list(self._identify_tasks) + list(self._restarts):
            task.cancel()
        await asyncio.gather(*self._restarts, return_exceptions=True)
        if self._batcher is not None:
            self._batcher.cancel()
            try:
                await self._batcher
            except asyncio.CancelledError:
                pass
            self._batcher = None
        for pool in (self._decode_pool, self._detect_pool):
            if pool is not None:
                await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)
        self._decode_pool = self._detect_pool = None
        self._slots.clear()
        workers, self.workers = self.workers, []
        await asyncio.gather(*(w.stop() for w in workers))
        if workers:
            self.detector = None
        self._leg_worker.clear()

    def open_leg(self, leg_key: str, approved_faces: int,
                 on_event: Callable[[VisionEvent], None]) -> LegSampler:
        old = self._legs.get(leg_key)
        if old is not None:
            old.close()
        sampler = LegSampler(self, leg_key, approved_faces, on_event, self.config,
                             keyframes_only=self.keyframes_only, enabled=self.enabled)
        if self.enabled:
            self._legs[leg_key] = sampler
            if self.workers:  # the least loaded process decodes this leg
                counts = collections.Counter(self._leg_worker.values())
                self._leg_worker[leg_key] = min(self.workers, key=lambda w: counts[w])
        return sampler

    @property
    def legs(self) -> dict[str, LegSampler]:
        """The open samplers by leg key (read-only use: health, admission)."""
        return self._legs

    def health(self, window_s: float, min_fraction: float, max_latency_s: float,
               now: float | None = None) -> VisionHealth:
        """Whether the checks keep up, per leg and for the node (see vision/health.py)."""
        return assess(list(self._legs.values()), self.config, window_s, min_fraction,
                      max_latency_s, time.monotonic() if now is None else now,
                      queue_depth=len(self._slots), in_flight=self._busy)

    async def idle(self) -> None:
        """Wait until nothing is being decoded, waiting or detected (tests, evaluation)."""
        if self._idle is not None:
            await self._idle.wait()

    # --- sampler side --------------------------------------------------------------------
    def _leg_closed(self, sampler: LegSampler) -> None:
        if self._legs.get(sampler.leg_key) is sampler:
            del self._legs[sampler.leg_key]
            worker = self._leg_worker.pop(sampler.leg_key, None)
            if worker is not None:
                worker.tell("close", sampler.leg_key)
        pending = self._slots.get(sampler.leg_key)
        if pending is not None and pending.sampler is sampler:
            del self._slots[sampler.leg_key]
            self._done(1)

    def _decode(self, sampler: LegSampler, decoder: _Decoder, codec: str, frames: list[bytes],
                keyframes_only: bool, at: float, taken: float, want_sample: bool,
                motion_allowed: bool, known: list[tuple[float, float, float, float]],
                release: bool = False) -> None:
        if self._loop is None or self._decode_pool is None:
            sampler._decoding = False
            return
        self._busy += 1
        assert self._idle is not None
        self._idle.clear()
        size = (self.config.detector_width, self.config.detector_height)
        stats = self.stats
        worker = self._leg_worker.get(sampler.leg_key)
        generation = None if worker is None else worker.generation  # the one that decodes

        def decode() -> object:
            t0 = time.thread_time()
            try:
                return decoder.decode(codec, frames, keyframes_only, size, want_sample,
                                      motion_allowed, known, release)
            finally:
                stats.decode_cpu_s += time.thread_time() - t0  # only this thread writes it

        if worker is None:
            future = self._loop.run_in_executor(self._decode_pool, decode)
        else:
            future = asyncio.wrap_future(worker.request(
                "decode", sampler.leg_key, codec, frames, keyframes_only, size, want_sample,
                motion_allowed, known, release), loop=self._loop)

        def done(f: asyncio.Future[object]) -> None:
            error = asyncio.CancelledError() if f.cancelled() else f.exception()
            if error is not None:
                self.stats.decode_errors += 1
            result = None if error else f.result()
            if worker is not None and result is not None:
                seq, scale, motion = result  # type: ignore[misc]
                result = Decoded(RemoteFrame(worker, seq, generation), None, scale, motion)
            sample = sampler._decoded(result, error, at, taken)  # type: ignore[arg-type]
            if sample is None:
                self._done(1)
            else:
                self.stats.samples_taken += 1
                SAMPLES.inc()
                self._put(sample)

        future.add_done_callback(done)

    def _put(self, sample: Sample) -> None:
        key = sample.sampler.leg_key
        if key in self._slots:
            del self._slots[key]  # the newer sample replaces it, and goes to the back
            self.stats.samples_dropped += 1
            SAMPLES_DROPPED.inc()
            self._done(1)
        self._slots[key] = sample
        assert self._wake is not None
        self._wake.set()

    def _done(self, n: int) -> None:
        self._busy -= n
        if self._busy == 0 and self._idle is not None:
            self._idle.set()

    # --- batcher -------------------------------------------------------------------------
    async def _run_batcher(self) -> None:
        assert self._wake is not None and self._loop is not None
        cfg = self.config
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._slots:
                continue
            deadline = self._loop.time() + cfg.detector_batch_wait_ms / 1000
            while len(self._slots) < cfg.detector_batch_max:
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
                self._wake.clear()
            keys = list(self._slots)[: cfg.detector_batch_max]
            batch = [self._slots.pop(k) for k in keys]
            if self._slots:
                self._wake.set()  # more waiting: go round again at once
            try:
                await self._detect(batch)
            except asyncio.CancelledError:
                raise
            except WorkerLost as e:  # its legs start again from a keyframe in a new process
                log.warning("vision: batch of %d not answered: %s", len(batch), e)
            except Exception:
                log.exception("vision: batch of %d failed", len(batch))
            finally:
                self._done(len(batch))

    async def _detect(self, batch: list[Sample]) -> None:
        assert self._loop is not None and self.detector is not None
        detector = self.detector
        st = self.stats

        def detect() -> list[list[Face]]:
            c0 = time.thread_time()
            try:
                return detect_in_runs(detector, [s.image for s in batch],  # type: ignore[misc]
                                      self.config.detector_images_per_run)
            finally:
                st.inference_cpu_s += time.thread_time() - c0  # only this thread writes it

        t0 = time.perf_counter()
        try:
            if self.workers:
                results = await self._detect_remote(batch)
            else:
                results = await self._loop.run_in_executor(self._detect_pool, detect)
        except Exception:
            st.detector_errors += 1
            raise
        elapsed = time.perf_counter() - t0
        st.batches += 1
        st.batch_sizes[len(batch)] += 1
        st.inference_s_total += elapsed
        st.inference_ms.append(elapsed * 1000)
        INFERENCE_SECONDS.observe(elapsed)
        BATCH_SIZE.observe(len(batch))
        if len(results) != len(batch):
            raise RuntimeError(f"detector returned {len(results)} results for {len(batch)} images")

        for sample, found in zip(batch, results, strict=True):
            sampler = sample.sampler
            if found is None:  # gone from its detector process (worker mode)
                st.samples_dropped += 1
                continue
            faces = found
            if sampler.closed:
                continue
            events = sampler._detected(sample, faces)
            latency = time.perf_counter() - sample.taken
            sampler.checked.append((time.monotonic(), latency))
            st.samples_detected += 1
            st.decision_latency_ms.append(latency * 1000)
            DECISION_LATENCY.observe(latency)
            if events:
                await self._emit(sampler, sample, events)
            ident = sampler.identity
            if ident is not None and self.identity is not None and not sampler.closed:
                scaled = [f.scaled(1.0 / sample.scale) for f in faces]
                counted = counted_faces(scaled, self.config)
                looks = [sample.looks[scaled.index(f)] if sample.looks is not None
                         else face_look(sample.image, tuple(v * sample.scale for v in f.box))  # type: ignore[arg-type]
                         for f in counted]
                if ident.due(counted, sample.at, looks):
                    self._queue_identify(sampler, ident, sample, counted)
            self._maybe_precall(sampler, sample, faces)

    async def _detect_remote(self, batch: list[Sample]) -> list[list[Face] | None]:
        """Worker mode: each process detects on the samples it kept; faces and looks back
        (None: the process no longer has that sample)."""
        groups: dict[VisionWorker, list[int]] = {}
        for i, sample in enumerate(batch):
            assert isinstance(sample.frame, RemoteFrame)
            groups.setdefault(sample.frame.worker, []).append(i)
        answers = await asyncio.gather(*(
            w.call("detect", [batch[i].frame.seq for i in idx])  # type: ignore[union-attr]
            for w, idx in groups.items()))
        results: list[list[Face] | None] = [None for _ in batch]
        for idx, answer in zip(groups.values(), answers, strict=True):
            for i, found in zip(idx, answer, strict=True):
                if found is not None:
                    results[i], batch[i].looks = found
        return results

    def _identity_cpu(self, spent: float) -> None:
        """Identity's CPU in the detector process, counted as the relay's (on the loop)."""
        self.identity_cpu_s += spent
        IDENTITY_CPU.inc(spent)

    async def _describe(self, sample: Sample, faces: list[Face], lumas: bool = False
                        ) -> tuple[list[np.ndarray], list[float]] | None:
        """The descriptors of ``faces`` (source pixels) in ``sample``, and each face's luma
        when ``lumas``: in the detector process that keeps the sample (worker mode: no frame
        crosses the pipe), else on the identity thread. None: the sample is no longer kept
        (the check is skipped; the leg's next due sample is checked)."""
        assert self.identity is not None
        if isinstance(sample.frame, RemoteFrame):
            value, spent = await sample.frame.describe(faces, lumas)
            self._identity_cpu(spent)
            return value

        def describe(encoder: object) -> tuple[list[np.ndarray], list[float]]:
            c0 = time.thread_time()
            try:
                image = to_array(sample.frame)
                vectors = encoder.descriptors(image, faces)  # type: ignore[attr-defined]
                return vectors, [face_luma(image, f) for f in faces] if lumas else []
            finally:
                spent = time.thread_time() - c0
                self.identity_cpu_s += spent  # only that thread writes (in-process mode)
                IDENTITY_CPU.inc(spent)

        return await self.identity.run(describe)

    def _worker_lost(self, worker: VisionWorker) -> None:
        """A detector process died: its legs start again from a keyframe, in a fresh one."""
        if worker not in self.workers:
            return
        log.warning("vision: the detector process %s exited; starting another in %.1f s",
                    worker.pid, self.config.vision_worker_restart_s)
        for key, w in self._leg_worker.items():
            sampler = self._legs.get(key)
            if w is worker and sampler is not None:
                sampler.resync()
        for key in [k for k, s in self._slots.items()
                    if isinstance(s.frame, RemoteFrame) and s.frame.worker is worker]:
            del self._slots[key]
            self._done(1)
        task = asyncio.ensure_future(self._restart(worker))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, worker: VisionWorker) -> None:
        while worker in self.workers:
            await asyncio.sleep(self.config.vision_worker_restart_s)
            await worker.stop()
            try:
                await worker.start()
            except Exception as e:
                log.warning("vision: the detector process did not start again: %s", e)
                continue
            self.stats.worker_restarts += 1
            return

    # --- the check before the call (vision/identity_precall.py) --------------------------
    def open_precall(self, sampler: LegSampler, check: PrecallCheck,
                     on_result: PrecallCallback) -> None:
        """Check ``sampler``'s samples against ``check`` until it is closed or admits."""
        self._precall[sampler.leg_key] = (sampler, check, on_result)

    def sampler_for(self, leg_key: str) -> LegSampler | None:
        return self._legs.get(leg_key)

    def close_precall(self, sampler: LegSampler) -> None:
        entry = self._precall.get(sampler.leg_key)
        if entry is not None and entry[0] is sampler:
            del self._precall[sampler.leg_key]

    def _maybe_precall(self, sampler: LegSampler, sample: Sample, faces: list[Face]) -> None:
        entry = self._precall.get(sampler.leg_key)
        if entry is None or entry[0] is not sampler or self.identity is None or sampler.closed:
            return
        check, on_result = entry[1], entry[2]
        if not check.due():
            return
        check.in_flight = True
        counted = counted_faces([f.scaled(1.0 / sample.scale) for f in faces], self.config)
        self._busy += 1
        task = asyncio.ensure_future(self._precall_check(sampler, check, on_result, sample, counted))
        self._identify_tasks.add(task)
        task.add_done_callback(self._identify_tasks.discard)

    async def _precall_check(self, sampler: LegSampler, check: PrecallCheck,
                             on_result: PrecallCallback, sample: Sample,
                             faces: list[Face]) -> None:
        """Descriptors and face brightness (:meth:`_describe`), then the check's result
        (with the frame, for staff) to ``on_result`` on the loop."""
        assert self.identity is not None and self._loop is not None
        try:
            described = await self._describe(sample, faces, lumas=True)
            if described is None or sampler.closed or check.done:
                return
            vectors, lumas = described
            self.identity_checks += 1
            IDENTITY_CHECKS.inc()
            result = check.checked(faces, vectors, lumas)
            try:
                result.evidence_jpeg = await self._loop.run_in_executor(
                    self._decode_pool, evidence_jpeg, sample.frame, [f.box for f in faces])
            except Exception:
                log.exception("vision: precall evidence JPEG failed for leg %s", sampler.leg_key)
            if result.admitted:
                self.close_precall(sampler)
            if not sampler.closed:
                on_result(result)
        except asyncio.CancelledError:
            raise
        except WorkerLost as e:  # its next sample is checked once a process keeps it again
            log.warning("vision: check before the call of leg %s not answered: %s",
                        sampler.leg_key, e)
        except Exception:
            log.exception("vision: check before the call failed for leg %s", sampler.leg_key)
        finally:
            check.in_flight = False
            self._done(1)

    def _queue_identify(self, sampler: LegSampler, ident: LegIdentity, sample: Sample,
                        faces: list[Face]) -> None:
        """One check in flight per leg: a sample due meanwhile is held, the newest replacing
        an older one, and checked when it ends (a backlog of checks only delays the one
        that matters)."""
        if ident.running is not None:
            ident.held = (sample, faces, ident.reason)
            return
        ident.running = ident.reason
        self._busy += 1
        task = asyncio.ensure_future(self._identify(sampler, ident, sample, faces))
        self._identify_tasks.add(task)
        task.add_done_callback(self._identify_tasks.discard)

    def _identify_next(self, sampler: LegSampler, ident: LegIdentity) -> None:
        """The check ended: check the held sample, unless it was held only to confirm what
        this check has just settled."""
        ident.running = None
        held, ident.held = ident.held, None
        if held is None or sampler.closed or sampler.identity is not ident:
            return
        sample, faces, reason = held
        if reason == "confirm" and not ident.pending():
            return
        ident.reason = reason
        self._queue_identify(sampler, ident, sample, faces)  # type: ignore[arg-type]

    async def _identify(self, sampler: LegSampler, ident: LegIdentity, sample: Sample,
                        faces: list[Face]) -> None:
        """Descriptors of ``faces`` (:meth:`_describe`), then the leg's identity decision."""
        assert self.identity is not None and self._loop is not None
        released = False
        try:
            described = await self._describe(sample, faces)
            if described is None or sampler.closed:
                return
            vectors = described[0]
            self.identity_checks += 1
            IDENTITY_CHECKS.inc()
            event = ident.checked(faces, vectors, sample.at)
            if ident.pending():
                sampler._start_burst(sample.at + self.config.burst_interval_s)
            released = True
            self._identify_next(sampler, ident)
            if event is None or sampler.on_identity is None:
                return
            try:
                event.evidence_jpeg = await self._loop.run_in_executor(
                    self._decode_pool, evidence_jpeg, sample.frame, event.boxes)
            except Exception:
                log.exception("vision: identity evidence JPEG failed for leg %s", sampler.leg_key)
            if not sampler.closed:
                sampler.on_identity(event)
        except asyncio.CancelledError:
            raise
        except WorkerLost as e:  # the leg's next due sample is checked after the restart
            log.warning("vision: identity check of leg %s not answered: %s", sampler.leg_key, e)
        except Exception:
            log.exception("vision: identity check failed for leg %s", sampler.leg_key)
        finally:
            if not released:  # the check failed, or the leg closed meanwhile
                self._identify_next(sampler, ident)
            self._done(1)

    async def _emit(self, sampler: LegSampler, sample: Sample, events: list[VisionEvent]) -> None:
        """Attach the sample's evidence (one JPEG, encoded off the loop) and deliver."""
        assert self._loop is not None
        jpeg = None
        try:
            jpeg = await self._loop.run_in_executor(
                self._decode_pool, evidence_jpeg, sample.frame, events[0].boxes)
        except Exception:
            log.exception("vision: evidence JPEG failed for leg %s", sampler.leg_key)
        for event in events:
            if sampler.closed:
                return
            event.evidence_jpeg = jpeg
            self.stats.events += 1
            EVENTS.labels(event.kind).inc()
            try:
                sampler.on_event(event)
            except Exception:
                log.exception("vision: on_event for leg %s raised", sampler.leg_key)
