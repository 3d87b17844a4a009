"""Face counting on call legs: detector, sampling, decisions, evaluation (see docs/vision.md).

The names below are imported lazily, so ``python -m vision.model --ensure`` stays quick.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DetectorService": "vision.service",
    "VisionStats": "vision.service",
    "LegSampler": "vision.sampler",
    "VisionEvent": "vision.decisions",
    "Detector": "vision.detector",
    "CenterFaceDetector": "vision.detector",
    "Face": "vision.detector",
    "ModelError": "vision.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vision' has no attribute {name!r}")
