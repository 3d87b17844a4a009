"""The settings vision reads, and nothing else: vision takes these, never the relay's config.

The relay builds them from its ``RELAY_*`` configuration (``relay.config.Config.vision``);
the defaults here are the same as there, so ``VisionSettings()`` is what an unconfigured
relay uses (tests/test_import_boundaries.py checks that the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Self


@dataclass(frozen=True)
class VisionSettings:
    enabled: bool = True
    keyframes_only: bool = True
    """Keyframe mode: decode a keyframe asked for when a sample is due, and every frame only
    in a burst (vision/sampler.py). Measured in docs/vision.md: about 60 % less relay CPU for
    vision than every-frame decoding, +0.3 % sender bits, confirm p95 1.44 s."""
    model_cache_dir: Path = Path(".cache/models")
    detector_batch_max: int = 8
    detector_images_per_run: int = 1
    """Images per onnxruntime run within a batch. On this CPU a bigger run saves nothing per
    image (14.4 / 14.9 / 17.5 / 18.3 ms at 1 / 2 / 4 / 8) and the arena keeps the largest
    run's buffers (8 held 220 MB more than 1, counted against the calls); the batch still
    makes one hand-off (one round trip to a detector process) for up to ``detector_batch_max``
    samples."""
    detector_batch_wait_ms: float = 20.0
    detector_threads: int = 1
    sample_interval_s: float = 1.0
    burst_interval_s: float = 0.2
    """0.25 s gave keyframe mode a confirm p95 of 1.66 s; 0.2 s gives 1.44 s (docs/vision.md)."""
    burst_samples: int = 4
    face_score_min: float = 0.5
    face_min_px: int = 24
    confirm_m: int = 3
    confirm_n: int = 4
    clear_m: int = 3
    clear_n: int = 4
    detector_width: int = 640
    detector_height: int = 480
    """The whole VGA frame: 32-56 px faces are found (recall 0.88 at INT8, 0.28 at 384x288);
    the alternatives and their costs are in docs/vision.md ("Detector: size and INT8")."""
    detector_precision: str = "int8"
    """``int8`` (vision/quantise.py, 28 ms at 640x480 here) or ``fp32`` (40 ms)."""
    keyframe_throttle_s: float = 0.5
    """The relay's limit on keyframe requests per sending leg (the evaluation simulates it)."""
    identity_threshold: float = 0.5
    """Descriptor distance at or under which two faces are the same person (docs/identity.md)."""
    identity_photo_min_face_px: int = 80
    identity_photo_min_sharpness: float = 40.0
    """Variance of the Laplacian of the face crop (at 128 px high) below which it is blurred."""
    identity_photo_min_brightness: float = 50.0
    identity_photo_max_brightness: float = 225.0
    identity_interval_s: float = 3.0
    """In-call re-check of a steady picture (count changes, new faces and suspicions are
    checked at once): one descriptor costs ~12 ms of CPU here (docs/identity.md, "Cost")."""
    identity_confirm_m: int = 2
    identity_confirm_n: int = 3
    identity_clear_m: int = 3
    identity_clear_n: int = 4
    identity_look_change: float = 0.6
    """A face whose appearance (``identity_check.face_look``) changes more than this between
    samples is re-identified at once: someone else in the same place (docs/identity.md)."""
    identity_precall_matches: int = 2
    """Passing checks in a row that admit a leg before the call (vision/identity_precall.py)."""
    identity_precall_min_face_px: int = 60
    """A face under this high on camera gets "come closer" before the call."""

    vision_worker_processes: int = 1
    """Detector processes that decode the sampled legs and run the detector, off the relay's
    GIL (vision/worker.py); 0 runs both on threads of the relay's process."""
    vision_worker_start_timeout_s: float = 60.0
    """Loading the model in a fresh process (spawn, imports, one warm-up inference)."""
    vision_worker_stop_timeout_s: float = 5.0
    vision_worker_restart_s: float = 1.0
    """Wait before starting a detector process again after it died."""
    identity_threads: int = 1
    """onnxruntime intra-op threads of the face descriptor network (vision/dlib_resnet.py):
    one, so identity never takes more than one core; a call's faces share one run."""

    def replace(self, **changes: object) -> Self:
        return replace(self, **changes)  # type: ignore[arg-type]
