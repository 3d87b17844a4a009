"""Where vision's CPU goes per leg, step by step, and what each known way to cut it measures.

    python -m bench.vision_cost [--seconds 20] [--json out.json]

Runs every step of the sampler's work on one thread over the bench's own load clip (VGA VP8
at 1 Mbit/s, two faces, a keyframe every 3 s: bench/clips.py) and reports its CPU time
(``time.thread_time``: not wall time, so a shared machine slows it less) as a percentage of
one core for one leg at 30 fps and one sample a second:

- decoding every frame (FFmpeg's ``vp8``, one thread), with and without the loop filter;
- decoding keyframes only (``skip_frame="NONKEY"``), per keyframe;
- the luma thumbnail and frame difference (5 a second), the conversion + letterbox (1 a second);
- the detector at several input sizes, float32 and INT8 (quantised with onnxruntime's
  static quantisation, calibrated on frames of the project's own clips);
- the hand-off: one thread-pool round trip per decode group (5 a second).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench import clips
from vision.detector import CenterFaceDetector, letterbox_frame
from vision.model import cached_model_path
from vision.sampler import DECODE_GROUP, changed_fraction, luma_thumbnail
from vision.settings import VisionSettings

FPS = 30
SIZES = ((384, 288), (320, 256), (256, 192), (160, 128))


def cpu(fn: Callable[[], Any], repeat: int = 1) -> float:
    """Thread CPU seconds of one call of ``fn`` (the mean over ``repeat`` calls)."""
    t0 = time.thread_time()
    for _ in range(repeat):
        fn()
    return (time.thread_time() - t0) / repeat


def pct(seconds_each: float, per_second: float) -> float:
    return round(100 * seconds_each * per_second, 3)


def decode_all(frames: list[clips.EncodedClipFrame], **options: str) -> list[av.VideoFrame]:
    ctx = av.CodecContext.create("vp8", "r")
    ctx.thread_count = 1
    if options:
        ctx.options = options
    out = []
    for f in frames:
        out.extend(ctx.decode(av.Packet(f.data)))
    return out


def decode_keyframes(frames: list[clips.EncodedClipFrame]) -> int:
    ctx = av.CodecContext.create("vp8", "r")
    ctx.thread_count = 1
    ctx.skip_frame = "NONKEY"
    n = 0
    for f in frames:
        if f.keyframe:
            n += len(ctx.decode(av.Packet(f.data)))
    return n


def quantized_model(src: Path, calibration: list[np.ndarray], dst: Path) -> Path:
    """CenterFace with INT8 weights and activations (QDQ), calibrated on ``calibration``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self.items, None)
            if item is None:
                return None
            return {"input.1": item.transpose(2, 0, 1)[None].astype(np.float32)}

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=False,  # the model's opset predates per-axis DequantizeLinear
    )
    return dst


def measure(seconds: float, int8: bool) -> dict[str, Any]:
    video = clips.ensure_video(clips.FULL)
    clip, meta = clips.load(video)
    n_loops = max(1, round(seconds * FPS / len(clip)))
    frames = clip * n_loops
    span_s = len(frames) / FPS
    out: dict[str, Any] = {
        "clip": {k: meta[k] for k in ("width", "height", "keyframe_interval", "measured_bitrate")},
        "seconds_of_video": span_s,
    }

    # decoding
    decoded: list[av.VideoFrame] = []
    t = cpu(lambda: decoded.extend(decode_all(frames)))
    out["decode_every_frame_ms"] = round(1000 * t / len(frames), 3)
    out["decode_every_frame_pct"] = pct(t / len(frames), FPS)
    t = cpu(lambda: decode_all(frames, skip_loop_filter="all"))
    out["decode_no_loop_filter_pct"] = pct(t / len(frames), FPS)
    keys = sum(f.keyframe for f in frames)
    t = cpu(lambda: decode_keyframes(frames))
    out["decode_keyframe_ms"] = round(1000 * t / keys, 3)
    out["decode_keyframes_only_1_per_s_pct"] = pct(t / keys, 1.0)

    # the frame difference (5 a second) and the sampled frame's conversion (1 a second)
    thumbs = [luma_thumbnail(f) for f in decoded[: DECODE_GROUP * 20 : DECODE_GROUP]]
    t = cpu(lambda: [luma_thumbnail(f) for f in decoded[:600:DECODE_GROUP]]) / len(
        decoded[:600:DECODE_GROUP]
    )
    t += cpu(lambda: changed_fraction(thumbs[1], thumbs[0], [(100, 50, 260, 230)]), 50)
    out["frame_difference_pct"] = pct(t, FPS / DECODE_GROUP)
    for w, h in SIZES:
        t = cpu(lambda w=w, h=h: letterbox_frame(decoded[7], (w, h)), 50)
        out[f"convert_{w}x{h}_pct"] = pct(t, 1.0)

    # hand-off: one thread-pool round trip per decode group
    pool = ThreadPoolExecutor(1)
    t0 = time.process_time()
    for _ in range(500):
        pool.submit(lambda: None).result()
    out["handoff_pct"] = pct((time.process_time() - t0) / 500, FPS / DECODE_GROUP)
    pool.shutdown()

    # detection, float32 and INT8, at each size
    settings = VisionSettings()
    model = cached_model_path(settings)
    images = {size: letterbox_frame(decoded[i], size)[0] for size in SIZES for i in (7,)}
    for w, h in SIZES:
        det = CenterFaceDetector(model, (w, h), threads=1)
        det.detect_batch([images[(w, h)]])
        t = cpu(lambda det=det, w=w, h=h: det.detect_batch([images[(w, h)]]), 30)
        out[f"detect_fp32_{w}x{h}_ms"] = round(1000 * t, 2)
        out[f"detect_fp32_{w}x{h}_pct"] = pct(t, 1.0)
        out[f"detect_fp32_{w}x{h}_faces"] = len(det.detect_batch([images[(w, h)]])[0])
    if int8:
        calib = [letterbox_frame(f, (384, 288))[0] for f in decoded[:180:6]]
        from bench import vision_clips

        # composites of the evaluation's kind, from seeds the evaluation does not use
        for item in vision_clips.build_set(20, seed=11):
            calib.append(letterbox_frame(item.frame, (384, 288))[0])
        import tempfile

        q = quantized_model(model, calib, Path(tempfile.mkdtemp()) / "centerface-int8.onnx")
        out["int8_model"] = str(q)
        for w, h in SIZES:
            det = CenterFaceDetector(q, (w, h), threads=1)
            det.detect_batch([images[(w, h)]])
            t = cpu(lambda det=det, w=w, h=h: det.detect_batch([images[(w, h)]]), 30)
            out[f"detect_int8_{w}x{h}_ms"] = round(1000 * t, 2)
            out[f"detect_int8_{w}x{h}_pct"] = pct(t, 1.0)
            out[f"detect_int8_{w}x{h}_faces"] = len(det.detect_batch([images[(w, h)]])[0])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.vision_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seconds", type=float, default=20.0, help="seconds of video to decode")
    p.add_argument("--no-int8", action="store_true", help="skip quantising the detector")
    p.add_argument("--json", dest="json_path")
    args = p.parse_args(argv)
    result = measure(args.seconds, not args.no_int8)
    for k, v in result.items():
        print(f"{k:<40} {json.dumps(v)}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
