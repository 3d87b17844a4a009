"""The detector process: decoding for sampling and face detection, off the relay's core.

One Python process holds the GIL for its media loop, the sampling hand-offs and the decoding;
at 16 calls the relay sat at one core and vision fell behind. This process (started with
``spawn`` by :class:`vision.worker_client.VisionWorker`) owns every leg's decoder, converts the
sampled frames and runs the detector, so none of it competes with forwarding for the relay's
GIL. What crosses the pipe is small: the encoded frames the sampler kept (a few KB each),
faces as tuples, an event's JPEG, and an identity check's descriptors: the process describes
the faces of the sample it kept (``describe_kept``, on its identity thread), so no frame
crosses for a check. Only a staff enrolment photo is sent here whole (``describe``).

Requests are ``(op, request_id, *args)`` tuples; each gets ``(request_id, ok, value)``.
Decoding, conversions and JPEGs run on the main thread in the order they came (a leg's
frames must be decoded in order); detection runs on its own thread (onnxruntime releases the
GIL), so a batch never holds up the next leg's decode.
"""

from __future__ import annotations

import collections
import queue
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from vision.convert import to_array
from vision.detector import Detector, Face, load_detector
from vision.identity_check import face_look
from vision.sampler import Decoded, _Decoder, evidence_jpeg
from vision.settings import VisionSettings

KEEP_DETECTED = 2
"""Detected frames kept per leg for their evidence JPEG or identity check (asked for after the
detection; a leg's newer detection makes the older ones stale). Besides these a leg keeps
its two newest samples (the newest may wait in the relay's slot, the one before may be in a
batch whose request is still in the pipe) and any a detect request names; an older one
never asked for was superseded in the relay's slot, and is dropped."""


def detect_in_runs(detector: Detector, images: list[np.ndarray], per_run: int) -> list[list[Face]]:
    """``detector.detect_batch`` over ``images``, at most ``per_run`` at a time (the arena)."""
    out: list[list[Face]] = []
    for i in range(0, len(images), max(1, per_run)):
        out += detector.detect_batch(images[i : i + max(1, per_run)])
    return out


class _Kept:
    __slots__ = ("frame", "image", "wanted")

    def __init__(self, decoded: Decoded) -> None:
        self.frame = decoded.frame
        self.image: np.ndarray | None = decoded.image  # freed once detected on
        self.wanted = False  # a detect request names it

    @property
    def detected(self) -> bool:
        return self.wanted and self.image is None


class _Worker:
    def __init__(
        self,
        conn: Connection,
        detector: Detector,
        per_run: int = 1,
        settings: VisionSettings | None = None,
    ) -> None:
        self.conn = conn
        self.settings = settings or VisionSettings()
        self.detector = detector
        self.per_run = per_run
        self.send_lock = threading.Lock()
        self.decoders: dict[str, _Decoder] = {}
        self.kept: dict[int, _Kept] = {}
        self.per_leg: dict[str, collections.deque[int]] = {}
        self.seq = 0
        self.detect_q: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self.identity_q: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self.encoder: Any = None  # loaded on the first identity request
        self.cpu = {"decode": 0.0, "detect": 0.0, "identity": 0.0}
        self.ops: collections.Counter[str] = collections.Counter()
        """Requests handled, by op (tests check that a check sends no frame: no "bgr")."""

    def reply(self, rid: int, ok: bool, value: object) -> None:
        with self.send_lock:
            self.conn.send((rid, ok, value))

    # --- main thread ---------------------------------------------------------------------
    def decode(self, leg: str, *args: Any) -> tuple[int, float, bool] | None:
        decoder = self.decoders.setdefault(leg, _Decoder())
        result = decoder.decode(*args)
        if result is None:
            return None
        self.seq += 1
        self.kept[self.seq] = _Kept(result)
        ring = self.per_leg.setdefault(leg, collections.deque())
        ring.append(self.seq)
        detected = [q for q in ring if self.kept[q].detected][-KEEP_DETECTED:]
        newest = list(ring)[-2:]
        for q in list(ring):
            k = self.kept[q]
            if q not in newest and not (k.wanted and k.image is not None) and q not in detected:
                ring.remove(q)
                del self.kept[q]
        return self.seq, result.scale, result.motion

    def close(self, leg: str) -> None:
        self.decoders.pop(leg, None)
        for seq in self.per_leg.pop(leg, ()):
            self.kept.pop(seq, None)

    def frame(self, seq: int) -> _Kept:
        kept = self.kept.get(seq)
        if kept is None:
            raise LookupError(f"sample {seq} is no longer kept")
        return kept

    def handle(self, op: str, rid: int, args: tuple[Any, ...]) -> None:
        self.ops[op] += 1
        if op == "describe":
            self.identity_q.put((op, rid, args))
            return
        if op == "describe_kept":  # the sample is taken now, in order with the decodes
            seq, faces, lumas = args
            self.identity_q.put((op, rid, (self.kept.get(seq), faces, lumas)))
            return
        if op == "detect" or op == "detect_images":
            for seq in args[0] if op == "detect" else ():
                if (kept := self.kept.get(seq)) is not None:
                    kept.wanted = True  # in order with the decodes: kept until detected
            self.detect_q.put((op, rid, args))
            return
        t0 = time.thread_time()
        try:
            if op == "decode":
                value: object = self.decode(*args)
            elif op == "bgr":
                value = to_array(self.frame(args[0]).frame)
            elif op == "jpeg":
                value = evidence_jpeg(self.frame(args[0]).frame, *args[1:])
            elif op == "close":
                self.close(args[0])
                return
            elif op == "cpu":
                value = dict(self.cpu)
            elif op == "ops":
                value = dict(self.ops)
            else:
                raise ValueError(f"unknown request {op!r}")
        except Exception as e:  # the relay side decides what a failure means
            self.reply(rid, False, f"{type(e).__name__}: {e}")
            return
        finally:
            self.cpu["decode"] += time.thread_time() - t0
        self.reply(rid, True, value)

    # --- detect thread -------------------------------------------------------------------
    def detect_loop(self) -> None:
        while (item := self.detect_q.get()) is not None:
            op, rid, args = item
            t0 = time.thread_time()
            try:
                value = (
                    self.detect(args[0])
                    if op == "detect"
                    else detect_in_runs(self.detector, args[0], self.per_run)
                )
            except Exception as e:
                self.reply(rid, False, f"{type(e).__name__}: {e}")
                continue
            finally:
                self.cpu["detect"] += time.thread_time() - t0
            self.reply(rid, True, value)

    # --- identity thread -----------------------------------------------------------------
    def identity_loop(self) -> None:
        """Face descriptors (dlib's landmarks and chips, then the ONNX network, which releases
        the GIL): of a kept sample (in-call and before-the-call checks) or of a sent image
        (enrolment photos). A sample no longer kept is answered None (the check is skipped)."""
        from vision.identity import load_encoder
        from vision.identity_precall import face_luma

        while (item := self.identity_q.get()) is not None:
            op, rid, args = item
            t0 = time.thread_time()
            try:
                if self.encoder is None:
                    self.encoder = load_encoder(self.settings)
                if op == "load":
                    continue
                if op == "describe":
                    image, faces = args
                    value: object = self.encoder.descriptors(image, faces)
                else:
                    kept, faces, lumas = args
                    if kept is None:
                        value = None
                    else:
                        image = to_array(kept.frame)
                        value = (
                            self.encoder.descriptors(image, faces),
                            [face_luma(image, f) for f in faces] if lumas else [],
                        )
            except Exception as e:
                if rid:
                    self.reply(rid, False, f"{type(e).__name__}: {e}")
                continue
            finally:
                spent = time.thread_time() - t0
                self.cpu["identity"] += spent
            self.reply(rid, True, (value, spent))  # the relay's identity CPU counts it

    def detect(self, seqs: list[int]) -> list[tuple[list[Face], list[np.ndarray]] | None]:
        """Faces (detector pixels) of each kept sample and each face's look; None for a sample
        this process does not have (its leg was closed)."""
        found = [
            (seq, k)
            for seq in seqs
            if (k := self.kept.get(seq)) is not None and k.image is not None
        ]
        images = [k.image for _, k in found]
        results = detect_in_runs(self.detector, images, self.per_run)  # type: ignore[arg-type]
        by_seq: dict[int, tuple[list[Face], list[np.ndarray]]] = {}
        for (seq, kept), faces in zip(found, results, strict=True):
            image, kept.image = kept.image, None
            by_seq[seq] = (faces, [face_look(image, f.box) for f in faces])  # type: ignore[arg-type]
        return [by_seq.get(seq) for seq in seqs]


def main(conn: Connection, config: VisionSettings, describe: bool = False) -> None:
    """The process's entry point: load the model, say ready, serve until told to stop.

    ``describe``: the relay checks identities, so the descriptor models are loaded on the
    identity thread at once (not on the first check, whose leg would wait for them).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the relay decides when this process stops
    try:
        detector = load_detector(config)
        w, h = detector.input_size
        detector.detect_batch([np.zeros((h, w, 3), np.uint8)])  # warm-up
    except Exception as e:
        conn.send((0, False, f"{type(e).__name__}: {e}"))
        return
    worker = _Worker(conn, detector, config.detector_images_per_run, config)
    detect_thread = threading.Thread(target=worker.detect_loop, name="vision-detect", daemon=True)
    detect_thread.start()
    identity_thread = threading.Thread(
        target=worker.identity_loop, name="vision-identity", daemon=True
    )
    identity_thread.start()
    if describe:
        worker.identity_q.put(("load", 0, ()))
    conn.send((0, True, detector.input_size))
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break  # the relay is gone
            if message[0] == "stop":
                break
            worker.handle(message[0], message[1], message[2:])
    finally:
        worker.detect_q.put(None)
        worker.identity_q.put(None)
        detect_thread.join(5)
