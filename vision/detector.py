"""Face detectors: a small interface and CenterFace behind it.

A :class:`Detector` takes a batch of BGR ``uint8`` images (H×W×3) and returns, for each
image, the faces found in it, in that image's pixels. Another model (YuNet, SCRFD...) slots in
by implementing :meth:`Detector.detect_batch`; it must decode every item of the batch.

Images of exactly the detector's input size go straight to the model (the sampler prepares
them that way: see :func:`letterbox_frame`); others are letterboxed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import av
import numpy as np

from vision.convert import to_array
from vision.model import INPUT_NAME, OUTPUT_NAMES
from vision.settings import VisionSettings

STRIDE = 4
NMS_IOU = 0.3
OPTIMIZATION_LEVELS = {"none": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                       "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
"""onnxruntime graph optimisation levels by short name."""


@dataclass(frozen=True)
class Face:
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    landmarks: tuple[float, ...] = ()
    """Five (x, y) points, flattened: eyes, nose, mouth corners."""

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def scaled(self, factor: float) -> Face:
        """This face with all coordinates multiplied by ``factor``."""
        return Face(self.x1 * factor, self.y1 * factor, self.x2 * factor, self.y2 * factor,
                    self.score, tuple(v * factor for v in self.landmarks))


@runtime_checkable
class Detector(Protocol):
    input_size: tuple[int, int]
    """(width, height) the model runs at; images of this size are used as they are."""

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]: ...


def letterbox_scale(src_w: int, src_h: int, dst_w: int, dst_h: int) -> float:
    return min(dst_w / src_w, dst_h / src_h)


def letterbox_frame(frame: av.VideoFrame, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """A decoded frame scaled (aspect kept) into ``size`` (top-left, black padding), as BGR.

    Returns the image and the scale: source pixels = detector pixels / scale. Converting and
    resizing happen in one swscale pass, only for the frames that are sampled.
    """
    dst_w, dst_h = size
    scale = letterbox_scale(frame.width, frame.height, dst_w, dst_h)
    w = max(1, min(dst_w, round(frame.width * scale)))
    h = max(1, min(dst_h, round(frame.height * scale)))
    small = to_array(frame, "bgr24", w, h)
    if (w, h) == (dst_w, dst_h):
        return small, scale
    out = np.zeros((dst_h, dst_w, 3), np.uint8)
    out[:h, :w] = small
    return out, scale


def letterbox_image(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Like :func:`letterbox_frame` for a BGR ndarray."""
    if image.shape[1] == size[0] and image.shape[0] == size[1]:
        return image, 1.0
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
    return letterbox_frame(frame, size)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Greedy non-maximum suppression; the indices kept, best first."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[overlap < iou]
    return np.asarray(keep, dtype=np.int64)


def decode_centerface(heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray,
                      landmarks: np.ndarray, size: tuple[int, int],
                      threshold: float) -> list[list[Face]]:
    """CenterFace outputs for a whole batch to faces (input pixels), NMS'd per item.

    Shapes: heatmap [B,1,h,w] (already sigmoid), scale [B,2,h,w] (log, stride units),
    offset [B,2,h,w], landmarks [B,10,h,w]; ``size`` is the input (width, height).
    """
    width, height = size
    results: list[list[Face]] = []
    for b in range(heatmap.shape[0]):  # every item, not only the first
        ys, xs = np.nonzero(heatmap[b, 0] > threshold)
        if ys.size == 0:
            results.append([])
            continue
        score = heatmap[b, 0, ys, xs]
        bh = np.exp(scale[b, 0, ys, xs]) * STRIDE
        bw = np.exp(scale[b, 1, ys, xs]) * STRIDE
        cy = (ys + offset[b, 0, ys, xs] + 0.5) * STRIDE
        cx = (xs + offset[b, 1, ys, xs] + 0.5) * STRIDE
        x1 = np.clip(cx - bw / 2, 0, width)
        y1 = np.clip(cy - bh / 2, 0, height)
        x2 = np.minimum(x1 + bw, width)
        y2 = np.minimum(y1 + bh, height)
        lm = landmarks[b][:, ys, xs]  # [10, n]: (y, x) pairs relative to the box, in box units
        lm_x = lm[1::2] * bw + x1
        lm_y = lm[0::2] * bh + y1
        boxes = np.stack([x1, y1, x2, y2], axis=1)
        keep = nms(boxes, score)
        faces = []
        for i in keep:
            points = tuple(float(v) for pair in zip(lm_x[:, i], lm_y[:, i], strict=True)
                           for v in pair)
            faces.append(Face(float(x1[i]), float(y1[i]), float(x2[i]), float(y2[i]),
                              float(score[i]), points))
        results.append(faces)
    return results


class CenterFaceDetector:
    """CenterFace (FP32 or INT8: same inputs and outputs) on onnxruntime's CPU provider, few
    threads (the relay has few cores)."""

    def __init__(self, model_path: Path | str, input_size: tuple[int, int] = (320, 256),
                 threads: int = 1, score_threshold: float = 0.3, *,
                 optimization: str = "all", parallel: bool = False) -> None:
        import onnxruntime as ort

        w, h = input_size
        if w % 32 or h % 32:
            raise ValueError(f"detector input size {input_size} must be multiples of 32")
        self.input_size = (w, h)
        self.score_threshold = score_threshold
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        # the defaults measured best (bench/detector_sweep.py); the others stay to measure
        options.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if parallel
                                  else ort.ExecutionMode.ORT_SEQUENTIAL)
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                   OPTIMIZATION_LEVELS[optimization])
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(model_path), options,
                                             providers=["CPUExecutionProvider"])

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        if not images:
            return []
        w, h = self.input_size
        batch = np.empty((len(images), 3, h, w), np.float32)
        scales = []
        for i, image in enumerate(images):
            boxed, s = letterbox_image(image, self.input_size)
            batch[i] = boxed.transpose(2, 0, 1)  # HWC BGR 0-255 -> CHW, no normalisation
            scales.append(s)
        outputs = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        decoded = decode_centerface(*outputs, size=self.input_size,
                                    threshold=self.score_threshold)
        return [faces if s == 1.0 else [f.scaled(1.0 / s) for f in faces]
                for faces, s in zip(decoded, scales, strict=True)]


def load_detector(config: VisionSettings) -> CenterFaceDetector:
    """CenterFace of ``config.detector_precision`` from the verified cache ``config`` names."""
    from vision.model import cached_model_path

    return CenterFaceDetector(
        cached_model_path(config),
        input_size=(config.detector_width, config.detector_height),
        threads=config.detector_threads,
    )
