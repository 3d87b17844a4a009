"""Scoring face detection against labelled boxes: matching, per-frame counts, recall by size.

The labelled clips and the evaluation command that use these live in bench/
(bench/vision_clips.py, ``python -m bench.vision_eval``): vision/ ships only what the relay
and the evaluation share.
"""

from __future__ import annotations

import av

from vision.decisions import counted_faces
from vision.detector import Detector, Face, letterbox_frame
from vision.settings import VisionSettings

Box = tuple[float, float, float, float]
BUCKETS = (36, 44, 52, 60, 72, 88, 112, 144)  # recall by face height: bucket upper bounds


# --- matching --------------------------------------------------------------------------------

def iou(a: Box, b: Box) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(pred: list[Box], truth: list[Box], threshold: float = 0.5) -> tuple[int, list[bool]]:
    """Greedy one-to-one matching at IoU >= threshold: true positives, and per truth box
    whether it was found."""
    pairs = sorted(((iou(p, t), i, j) for i, p in enumerate(pred) for j, t in enumerate(truth)),
                   reverse=True)
    used_p: set[int] = set()
    found = [False] * len(truth)
    for value, i, j in pairs:
        if value < threshold:
            break
        if i not in used_p and not found[j]:
            used_p.add(i)
            found[j] = True
    return sum(found), found



def detect_frames(detector: Detector, frames: list[av.VideoFrame], config: VisionSettings,
                  batch: int = 8) -> list[list[Face]]:
    """Counted faces per frame, in source pixels, through the sampler's own preparation."""
    size = (config.detector_width, config.detector_height)
    out: list[list[Face]] = []
    for i in range(0, len(frames), batch):
        prepared = [letterbox_frame(f, size) for f in frames[i:i + batch]]
        results = detector.detect_batch([img for img, _ in prepared])
        out.extend(counted_faces([f.scaled(1 / s) for f in faces], config)
                   for faces, (_, s) in zip(results, prepared, strict=True))
    return out


def score_frames(preds: list[list[Face]], truths: list[list[Box]]) -> dict[str, object]:
    tp = n_pred = n_truth = correct = 0
    negatives = fp_on_negatives = 0
    by_size: dict[str, list[int]] = {}
    for faces, truth in zip(preds, truths, strict=True):
        boxes = [f.box for f in faces]
        hits, found = match(boxes, truth)
        tp += hits
        n_pred += len(boxes)
        n_truth += len(truth)
        correct += len(boxes) == len(truth)
        if not truth:
            negatives += 1
            fp_on_negatives += len(boxes)
        for t, ok in zip(truth, found, strict=True):
            h = t[3] - t[1]
            bucket = next((f"<{s}" for s in BUCKETS if h < s), f">={BUCKETS[-1]}")
            by_size.setdefault(bucket, [0, 0])
            by_size[bucket][0] += ok
            by_size[bucket][1] += 1
    order = [f"<{s}" for s in BUCKETS] + [f">={BUCKETS[-1]}"]
    return {
        "frames": len(truths),
        "faces": n_truth,
        "count_accuracy": correct / len(truths) if truths else None,
        "precision": tp / n_pred if n_pred else 1.0,
        "recall": tp / n_truth if n_truth else 1.0,
        "false_positives_per_frame": fp_on_negatives / negatives if negatives else None,
        "negative_frames": negatives,
        "recall_by_face_height_px": {k: round(by_size[k][0] / by_size[k][1], 4)
                                     for k in order if k in by_size},
        "faces_by_face_height_px": {k: by_size[k][1] for k in order if k in by_size},
    }



# --- command line ----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """``python -m vision.eval identity --set DIR [--camera] [--json]``."""
    import argparse
    import json
    import os
    import sys
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m vision.eval")
    sub = parser.add_subparsers(dest="command", required=True)
    ident = sub.add_parser("identity", help="FAR, FRR and EER of face identity on a labelled set")
    ident.add_argument(
        "--set",
        dest="folder",
        type=Path,
        required=True,
        help="folder of DIR/<person>/<n>.jpg; the first photo of each is enrolled",
    )
    ident.add_argument(
        "--camera",
        action="store_true",
        help="match the faces as 640x480 VP8-coded camera frames, darker and brighter",
    )
    ident.add_argument("--json", action="store_true", help="print the report as JSON")
    ident.add_argument(
        "--split",
        choices=("tune", "report"),
        default=None,
        help="match only one half of the probe photos (fixed by name): pick a "
        "threshold on 'tune', measure it on 'report'",
    )
    ident.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="distance threshold (default: VisionSettings.identity_threshold, "
        "RELAY_IDENTITY_THRESHOLD)",
    )
    args = parser.parse_args(argv)

    from vision.detector import load_detector
    from vision.identity import IdentityModelError, load_encoder
    from vision.identity_eval import evaluate, format_report
    from vision.model import ModelError

    settings = VisionSettings()
    env_threshold = os.environ.get("RELAY_IDENTITY_THRESHOLD")  # the relay's own setting
    threshold = (
        args.threshold
        if args.threshold is not None
        else (float(env_threshold) if env_threshold else None)
    )
    if threshold is not None:
        settings = settings.replace(identity_threshold=threshold)
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    try:
        detector = load_detector(settings)
        encoder = load_encoder()
    except (ModelError, IdentityModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = evaluate(
        args.folder, detector, encoder, settings, camera=args.camera, split=args.split
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
