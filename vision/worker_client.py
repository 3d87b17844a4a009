"""The relay's side of the detector process (vision/worker.py): start, ask, notice its death.

Requests never block the event loop: they go to a writer thread (a full pipe waits there, not
on the loop) and come back through a reader thread, as ``concurrent.futures`` futures, so the
loop awaits them (``asyncio.wrap_future``) and the identity thread can wait on them directly.
When the process dies every outstanding request fails with :class:`WorkerLost` at once (never
a hang) and ``on_lost`` is called on the loop; :meth:`VisionWorker.start` starts a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from vision import worker as worker_main
from vision.detector import Face
from vision.model import ModelError
from vision.settings import VisionSettings

log = logging.getLogger(__name__)


class WorkerLost(RuntimeError):
    """The detector process died or is restarting: the request was not answered."""


def _settle(future: Future[Any], value: object, error: BaseException | None = None) -> None:
    """Answer ``future`` unless its waiter gave up on it (a cancelled await cancels it)."""
    with contextlib.suppress(InvalidStateError):
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)


class _Link:
    """One started process: its pipe, its unanswered requests and its writer's queue."""

    def __init__(self, proc: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.pending: dict[int, Future[Any]] = {}
        self.lock = threading.Lock()
        self.out: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self.up = False

    def fail_all(self, why: str) -> None:
        self.up = False
        with self.lock:
            pending, self.pending = self.pending, {}
        for future in pending.values():
            _settle(future, None, WorkerLost(why))


class VisionWorker:
    def __init__(
        self,
        config: VisionSettings,
        on_lost: Callable[[], None] | None = None,
        describe: bool = False,
    ) -> None:
        self.config = config
        self.describe = describe
        """The relay checks identities: the process loads the descriptor models at start."""
        self.on_lost = on_lost
        """Called on the loop when the process died unasked (not after :meth:`stop`)."""
        self.input_size: tuple[int, int] = (config.detector_width, config.detector_height)
        self.generation = 0
        """Incremented by every start: a leg's decoder lives in one generation of the process."""
        self._link: _Link | None = None
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def up(self) -> bool:
        return self._link is not None and self._link.up

    @property
    def pid(self) -> int | None:
        return None if self._link is None else self._link.proc.pid

    async def start(self) -> None:
        """Spawn the process and wait until its model is loaded and warmed up.

        Raises :class:`vision.model.ModelError` when the process cannot load the model.
        """
        self._loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=worker_main.main,
            args=(child, self.config, self.describe),
            name="vision-detect",
            daemon=True,
        )
        await self._loop.run_in_executor(None, proc.start)
        child.close()
        link = self._link = _Link(proc, parent)
        ready: Future[Any] = Future()
        link.pending[0] = ready
        threading.Thread(
            target=self._read, args=(link,), name="vision-worker-read", daemon=True
        ).start()
        threading.Thread(
            target=self._write, args=(link,), name="vision-worker-write", daemon=True
        ).start()
        try:
            size = await asyncio.wait_for(
                asyncio.wrap_future(ready), self.config.vision_worker_start_timeout_s
            )
        except (WorkerLost, TimeoutError) as e:
            await self.stop()
            raise ModelError(f"the detector process did not start: {e}") from e
        self.input_size = (int(size[0]), int(size[1]))
        self.generation += 1
        link.up = True

    async def stop(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        link.up = False
        link.out.put(("stop",))
        link.out.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._reap, link)

    def _reap(self, link: _Link) -> None:
        link.proc.join(self.config.vision_worker_stop_timeout_s)
        if link.proc.is_alive():
            link.proc.kill()
            link.proc.join(self.config.vision_worker_stop_timeout_s)
        link.fail_all("the detector process was stopped")
        with contextlib.suppress(OSError):
            link.conn.close()

    # --- requests ------------------------------------------------------------------------
    def request(self, op: str, *args: Any) -> Future[Any]:
        """Send a request; its future fails with :class:`WorkerLost` if no answer can come."""
        future: Future[Any] = Future()
        link = self._link
        if link is None or not link.up:
            future.set_exception(WorkerLost("the detector process is not running"))
            return future
        rid = next(self._ids)
        with link.lock:
            link.pending[rid] = future
        link.out.put((op, rid, *args))
        if not link.up:  # it died meanwhile: its reader may have failed the others already
            link.fail_all("the detector process exited")
        return future

    def tell(self, op: str, *args: Any) -> None:
        """A request that has no answer (closing a leg)."""
        link = self._link
        if link is not None and link.up:
            link.out.put((op, 0, *args))

    async def call(self, op: str, *args: Any) -> Any:
        return await asyncio.wrap_future(self.request(op, *args))

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """The ``Detector`` protocol over the pipe, for callers off the loop (enrolment photos)."""
        return self.request("detect_images", images).result()

    # --- threads (one pair per started process) ------------------------------------------
    @staticmethod
    def _write(link: _Link) -> None:
        while (message := link.out.get()) is not None:
            try:
                link.conn.send(message)
            except (OSError, ValueError):
                return  # the reader sees the end and fails what is pending

    def _read(self, link: _Link) -> None:
        while True:
            try:
                rid, ok, value = link.conn.recv()
            except (EOFError, OSError, ValueError):
                break
            with link.lock:
                future = link.pending.pop(rid, None)
            if future is None:
                continue
            if ok:
                _settle(future, value)
            else:
                _settle(future, None, WorkerLost(value) if rid == 0 else RuntimeError(value))
        was_up = link.up
        link.out.put(None)  # ends the writer
        link.fail_all("the detector process exited")
        if was_up and link is self._link and self._loop is not None and self.on_lost is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self.on_lost)


class RemoteFrame:
    """A sampled frame that stays in the detector process; asked for only when needed.

    Sequence numbers start again in a restarted process: a frame of an earlier generation
    is refused (:class:`WorkerLost`), never confused with another leg's newer sample."""

    __slots__ = ("generation", "seq", "worker")

    def __init__(self, worker: VisionWorker, seq: int, generation: int | None = None) -> None:
        self.worker = worker
        self.seq = seq
        self.generation = worker.generation if generation is None else generation

    def _request(self, op: str, *args: Any) -> Future[Any]:
        if self.generation != self.worker.generation:
            future: Future[Any] = Future()
            future.set_exception(WorkerLost("the sample's detector process was replaced"))
            return future
        return self.worker.request(op, self.seq, *args)

    def to_ndarray(self, format: str = "bgr24") -> np.ndarray:  # noqa: A002 (av's name)
        """The frame as BGR (blocks: call it off the loop)."""
        if format != "bgr24":
            raise ValueError("the detector process gives BGR frames only")
        return self._request("bgr").result()

    def evidence_jpeg(self, boxes: list[tuple[float, float, float, float]], quality: int) -> bytes:
        return self._request("jpeg", boxes, quality).result()

    async def describe(
        self, faces: list[Face], lumas: bool = False
    ) -> tuple[tuple[list[np.ndarray], list[float]] | None, float]:
        """The descriptors of ``faces`` (source pixels) in this sample, computed where it is
        kept (no frame crosses the pipe), with each face's luma when ``lumas``; None when
        the process no longer keeps it. Also the CPU seconds the process spent on it."""
        return await asyncio.wrap_future(self._request("describe_kept", faces, lumas))


class RemoteEncoder:
    """The ``FaceEncoder`` methods enrolment uses, run in the detector process with the photo
    sent there (called from the relay's identity thread, which waits): the descriptor models
    are loaded once per node, in the process that checks the calls, never in the relay's."""

    def __init__(self, worker: VisionWorker, on_cpu: Callable[[float], None]) -> None:
        self.worker = worker
        self.on_cpu = on_cpu
        """Given the process's CPU seconds for each request (the waiting thread spends none)."""

    def descriptors(self, image_bgr: np.ndarray, faces: list[Face]) -> list[np.ndarray]:
        if not faces:
            return []
        vectors, spent = self.worker.request("describe", image_bgr, faces).result()
        self.on_cpu(spent)
        return vectors

    def descriptor(self, image_bgr: np.ndarray, face: Face) -> np.ndarray:
        return self.descriptors(image_bgr, [face])[0]
