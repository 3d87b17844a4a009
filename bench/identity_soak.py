"""A call with only the enrolled visitor on camera: does identity ever pause it?

    python -m bench.identity_soak [--seconds 120]

Real relay, real aiortc clients; the family side sends bench/vision_clips.py's one-face clip
(the astronaut moving about, nearer and further, lighting changing, over four scenes), whose
face is enrolled for the booking's main visitor from the original photo. Prints the identity
checks made (all legs, and the family leg's by why they ran), the single checks that saw a
"stranger" (a pause needs 2 of 3), the identity pauses (should be 0) and the identity CPU
(the prison side has nobody enrolled: all of it is the family leg's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
from pathlib import Path

import numpy as np

from bench.identity_set import jpeg
from bench.product import start_product
from bench.vision_clips import FPS, encode_frames, one_face_images
from protocol.media import EncodedClipFrame, EncodedTrack
from relay import keys


def astronaut_seed() -> int:
    """A seed for which one_face_clip picks an astronaut patch (index 0 or 1)."""
    return next(s for s in range(100) if random.Random(s).randrange(4) < 2)


async def soak(seconds: float) -> dict[str, object]:
    from skimage import data

    with tempfile.TemporaryDirectory() as tmp:
        product = await start_product(Path(tmp), vision_enabled=True)
        try:
            w = product.world
            photo = jpeg(np.ascontiguousarray(data.astronaut()[:, :, ::-1]))
            await product.app[keys.FACE_ENROLMENTS].enrol_face(
                "visitor", w.vid("mum"), photo, actor="bench"
            )
            # a keyframe a second, as a browser answering the relay's keyframe requests gives
            # keyframe mode (the clip's own encoder default is one every ~4 s: a quarter of the
            # samples, and of the chances to pause falsely)
            clip = encode_frames(one_face_images(astronaut_seed(), min(seconds, 60.0)), gop=FPS)
            track = EncodedTrack("video", [EncodedClipFrame(f.data, f.keyframe) for f in clip], FPS)
            # the booking outlasts the soak (a call that ended would soak nothing)
            b = product.booking_now(seconds=seconds + 600)
            fam, pri = await product.pair(b, family_video=track)
            service = product.app[keys.DETECTOR]
            try:
                await fam.wait_state("live")
                samples_before = service.stats.samples_detected
                await asyncio.sleep(seconds)
                records = product.app[keys.AUDIT_LOG].for_booking(b)
                live = product.app[keys.REGISTRY].get(b)
                legs = [s.identity for k, s in service.legs.items() if k.endswith(":family")]
                ident = legs[0] if legs else None
                return {
                    "seconds": seconds,
                    "call_state_at_end": live.policy.state if live is not None else "gone",
                    "samples_detected": service.stats.samples_detected - samples_before,
                    "identity_checks": service.identity_checks,
                    "checks_by_reason": dict(ident.by_reason) if ident else {},
                    "stranger_checks": ident.stranger_checks if ident else None,
                    "identity_pauses": sum(r["kind"] == "identity_unmatched" for r in records),
                    "identity_cpu_s": round(service.identity_cpu_s, 2),
                    "identity_cpu_percent_of_a_core": round(
                        100 * service.identity_cpu_s / seconds, 2
                    ),
                    "count_pauses": sum(r["kind"] == "vision_over_limit" for r in records),
                }
            finally:
                await fam.close()
                await pri.close()
        finally:
            await product.server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.identity_soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(soak(args.seconds)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
