"""INT8 CenterFace: statically quantised from the pinned FP32 model, reproducibly.

CenterFace at the full 640x480 frame finds 32-56 px faces (recall 0.83 against 0.28 at
384x288) but costs 2.8x; INT8 pays back about a third of that (docs/vision.md, "Detector").
The quantised file ships with the relay (``vision/models/``, 2 MB) and ``make model`` installs
it into the model cache after checking it against the pinned sha256: calibration runs the FP32
model, whose float kernels differ between CPU generations, so a build on another machine may
differ in the last bits of a scale and would be refused. It is reproducible here: ``python -m
bench.detector_model --ensure`` rebuilds it when no checked copy is at hand (the calibration
frames come from the evaluation's own composites), and the calibration tensor and the output
are both checked against pinned sha256s; :func:`vision.model.cached_model_path` refuses an
INT8 file whose hash is not the pinned one. A different onnxruntime/onnx (the lock pins both)
gives a different file: re-pin deliberately after checking its accuracy with ``python -m
bench.detector_sweep``, and ship the new file.

Method (measured in docs/vision.md): opset 9 -> 13 (per-axis QuantizeLinear needs 13),
``quant_pre_process``, then ``quantize_static`` with MinMax calibration, QOperator format,
per-channel INT8 weights, UINT8 activations.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

INT8_MODEL_FILE = "centerface-int8.onnx"
INT8_SIDECAR_FILE = "centerface-int8.json"
INT8_MODEL_SHA256 = "2746065a890c4c72e43003a7b4944f3103b4da7f6c27ff4764cf3b4a7fbb22df"
"""sha256 of the INT8 file that ``make model`` builds with the locked onnxruntime and onnx."""
CALIBRATION_SHA256 = "6aab004bba922194d17825163a1c7ff36bcaec6f441d085ee64170358a024d28"
"""sha256 of the calibration tensor (bench/detector_model.py's frames, float32 NCHW)."""
CALIBRATION_FRAMES = 32
QUANT_OPSET = 13
FORMATS = ("QOperator", "QDQ")


SHIPPED_INT8 = Path(__file__).resolve().parent / "models" / INT8_MODEL_FILE
"""The pinned INT8 model as built here, shipped with the relay."""


class QuantiseError(RuntimeError):
    """The INT8 model could not be made, or is not the pinned one."""


def install_shipped_int8(cache_dir: Path) -> Path | None:
    """Copy the shipped INT8 model into ``cache_dir`` with its sidecar when it is the pinned
    one and the cache has no checked copy; None when there is no such shipped file."""
    from vision.model import MODEL_FILE, ModelError, cached_model_path, sha256_file

    cache_dir = Path(cache_dir)
    try:
        return cached_model_path(cache_dir=cache_dir, precision="int8")
    except ModelError:
        pass
    if not SHIPPED_INT8.is_file() or sha256_file(SHIPPED_INT8) != INT8_MODEL_SHA256:
        return None
    cache_dir.mkdir(parents=True, exist_ok=True)
    model = cache_dir / INT8_MODEL_FILE
    tmp_model = model.with_suffix(f".tmp{os.getpid()}.onnx")
    tmp_model.write_bytes(SHIPPED_INT8.read_bytes())
    os.replace(tmp_model, model)
    record: dict[str, object] = {
        "sha256": INT8_MODEL_SHA256,
        "source": "vision/models (shipped, pinned)",
        "calibration_sha256": CALIBRATION_SHA256,
        "calibration_frames": CALIBRATION_FRAMES,
    }
    fp32 = cache_dir / MODEL_FILE
    if fp32.is_file():
        record["source_sha256"] = sha256_file(fp32)
    _write_sidecar(cache_dir, record)
    return cached_model_path(cache_dir=cache_dir, precision="int8")


def _write_sidecar(cache_dir: Path, record: dict[str, object]) -> None:
    sidecar = cache_dir / INT8_SIDECAR_FILE
    tmp_sidecar = sidecar.with_suffix(f".tmp{os.getpid()}")
    tmp_sidecar.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp_sidecar, sidecar)


def calibration_digest(images: list[np.ndarray]) -> str:
    """sha256 of the calibration images as the model sees them (float32 NCHW, in order)."""
    h = hashlib.sha256()
    for image in images:
        h.update(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32).tobytes())
    return h.hexdigest()


def quantise(
    src: Path, images: list[np.ndarray], dst: Path, fmt: str = "QOperator", per_channel: bool = True
) -> Path:
    """Write ``src`` (FP32 CenterFace) quantised to ``dst``, calibrated on BGR ``images``."""
    import onnx  # set-up time only, like vision.model.make_dynamic
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from vision.model import INPUT_NAME

    if fmt not in FORMATS:
        raise QuantiseError(f"unknown quantisation format {fmt!r} (one of {FORMATS})")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self._items, None)
            if image is None:
                return None
            return {
                INPUT_NAME: np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
            }

    with tempfile.TemporaryDirectory(prefix="centerface-q-") as tmp:
        upgraded = Path(tmp) / "op13.onnx"
        prepared = Path(tmp) / "pre.onnx"
        onnx.save(
            version_converter.convert_version(onnx.load(str(src)), QUANT_OPSET), str(upgraded)
        )
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(dst),
            Reader(),
            quant_format=getattr(QuantFormat, fmt),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
        )
    return dst


def ensure_int8(cache_dir: Path, images: list[np.ndarray], *, check_pins: bool = True) -> Path:
    """The cached INT8 model, built from the cached FP32 one when missing or not the pinned one.

    ``check_pins=False`` builds without the pinned hashes (to re-pin after an upgrade); the
    file it writes is still refused at start-up until :data:`INT8_MODEL_SHA256` says it.
    """
    from vision.model import ModelError, cached_fp32_path, cached_model_path, sha256_file

    cache_dir = Path(cache_dir)
    try:
        return cached_model_path(cache_dir=cache_dir, precision="int8")
    except ModelError:
        pass
    digest = calibration_digest(images)
    if check_pins and digest != CALIBRATION_SHA256:
        raise QuantiseError(
            f"calibration frames sha256 {digest} is not the pinned "
            f"{CALIBRATION_SHA256}: refusing to build from other frames"
        )
    src = cached_fp32_path(cache_dir)
    model = cache_dir / INT8_MODEL_FILE
    tmp_model = model.with_suffix(f".tmp{os.getpid()}.onnx")
    try:
        quantise(src, images, tmp_model)
        built = sha256_file(tmp_model)
        if check_pins and built != INT8_MODEL_SHA256:
            raise QuantiseError(
                f"the INT8 model built here has sha256 {built}, not the pinned "
                f"{INT8_MODEL_SHA256} (another onnxruntime/onnx?): refusing it"
            )
        os.replace(tmp_model, model)
    finally:
        tmp_model.unlink(missing_ok=True)
    import onnxruntime

    record = {
        "sha256": built,
        "source_sha256": sha256_file(src),
        "calibration_sha256": digest,
        "calibration_frames": len(images),
        "format": "QOperator, per-channel INT8 weights, UINT8 activations, MinMax",
        "onnxruntime": onnxruntime.__version__,
    }
    _write_sidecar(cache_dir, record)
    return model if not check_pins else cached_model_path(cache_dir=cache_dir, precision="int8")
