"""Build the INT8 detector from the pinned FP32 CenterFace and the pinned calibration frames.

    python -m bench.detector_model --ensure          # what `make model` runs
    python -m bench.detector_model --print-hashes    # build without the pins, print them

The calibration frames are the evaluation's own kind of picture (bench/vision_clips.py): 32
640x480 composites of seed 11 (the scored sets use seeds 1 and 2), 0-4 faces of 32-160 px
over the eight scenes, with the sensor-like noise, before VP8 (so the tensor does not depend
on libvpx). Quantisation itself is vision/quantise.py's.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.vision_clips import (
    SIZES,
    SMALL_SIZES,
    add_noise,
    backgrounds,
    face_patches,
    paste_face,
    place_faces,
)
from vision import quantise
from vision.model import MODEL_FILE, ModelError, cached_model_path, ensure, sha256_file
from vision.settings import VisionSettings

CALIBRATION_SEED = 11


def calibration_images(
    n: int = quantise.CALIBRATION_FRAMES, seed: int = CALIBRATION_SEED
) -> list[np.ndarray]:
    """The pinned calibration frames, BGR uint8 640x480 (the detector's input order)."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    scenes = backgrounds()
    names = sorted(scenes)
    patches = face_patches()
    out = []
    for i in range(n):
        canvas = scenes[names[i % len(names)]].copy()
        for x, y, h in place_faces(rng, i % 5, SIZES + SMALL_SIZES):
            paste_face(canvas, rng.choice(patches), x, y, h)
        out.append(np.ascontiguousarray(add_noise(canvas, nrng)[..., ::-1]))
    return out


def ensure_int8(config: VisionSettings | None = None, cache_dir: Path | None = None) -> Path:
    """The FP32 model fetched when missing, then the INT8 one built from it when missing."""
    settings = config or VisionSettings()
    cache_dir = Path(cache_dir if cache_dir is not None else settings.model_cache_dir)
    ensure(settings, cache_dir=cache_dir)
    return quantise.ensure_int8(cache_dir, calibration_images())


def ensure_model(config: VisionSettings) -> Path:
    """The model ``config.detector_precision`` names, made first when missing."""
    if config.detector_precision == "int8":
        return ensure_int8(config)
    ensure(config)
    return cached_model_path(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.detector_model", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--ensure",
        action="store_true",
        help="build the INT8 model when it is not cached (checked by pinned hashes)",
    )
    parser.add_argument(
        "--print-hashes",
        action="store_true",
        help="build into a temporary folder without the pins and print the hashes",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache folder (default: VisionSettings.model_cache_dir)",
    )
    args = parser.parse_args(argv)
    settings = VisionSettings()
    cache_dir = args.cache_dir or settings.model_cache_dir
    try:
        if args.print_hashes:
            images = calibration_images()
            with tempfile.TemporaryDirectory(prefix="centerface-int8-") as tmp:
                ensure(settings, cache_dir=cache_dir)
                src = Path(cache_dir) / MODEL_FILE
                dst = quantise.quantise(src, images, Path(tmp) / "int8.onnx")
                print(
                    json.dumps(
                        {
                            "calibration_sha256": quantise.calibration_digest(images),
                            "int8_sha256": sha256_file(dst),
                        },
                        indent=2,
                    )
                )
            return 0
        print(
            ensure_int8(settings, cache_dir=cache_dir)
            if args.ensure
            else cached_model_path(settings, cache_dir=cache_dir, precision="int8")
        )
    except (ModelError, quantise.QuantiseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
