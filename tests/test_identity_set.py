"""The labelled identity set's builder: pinned archives of each registry, read without network.

The archives are made here from scikit-image's two real faces (Eileen Collins, the cameraman)
and put in the downloads folder under their pinned digests, so ``fetch`` verifies them and
downloads nothing; the evaluation then runs on what was built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest

from bench.identity_set import Archive, Photo, SetError, build, debian_source_entries, fetch, jpeg
from vision.detector import CenterFaceDetector
from vision.identity import load_encoder
from vision.identity_eval import (
    Probe,
    evaluate,
    format_report,
    score_probes,
    threshold_for_far,
    unverified_groups,
)
from vision.model import ensure
from vision.settings import VisionSettings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = VisionSettings(model_cache_dir=ROOT / ".cache" / "models")


def bgr(rgb: np.ndarray, factor: float = 1.0, mirror: bool = False) -> np.ndarray:
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=2)
    image = np.ascontiguousarray(rgb[:, ::-1, ::-1] if mirror else rgb[:, :, ::-1])
    if factor != 1.0:
        image = (
            av.VideoFrame.from_ndarray(image, format="bgr24")
            .reformat(
                width=round(image.shape[1] * factor),
                height=round(image.shape[0] * factor),
                format="bgr24",
            )
            .to_ndarray()
        )
    return image


def tarball(path: Path, mode: str, members: dict[str, bytes]) -> str:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def faces() -> dict[str, bytes]:
    from skimage import data

    return {
        "eileen": jpeg(bgr(data.astronaut())),
        "eileen_other": jpeg(bgr(data.astronaut(), 0.7, mirror=True)),
        "cameraman": jpeg(bgr(data.camera(), 2.0)),
        "cameraman_mirrored": jpeg(bgr(data.camera(), 2.0, mirror=True)),
    }


def test_debian_sources_become_deb_src_entries_of_debian_archives_only() -> None:
    deb822 = (
        "Types: deb\n# a comment\nURIs: http://mirror.invalid/debian\nSuites: bookworm "
        "bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/k.gpg\n\n"
        "Types: deb\nURIs: https://vendor.invalid/node_20.x\nSuites: nodistro\n"
        "Components: main\n"
    )
    one_line = "deb http://mirror.invalid/debian-security bookworm-security main\n# deb x y z\n"
    out = debian_source_entries([("debian.sources", deb822), ("extra.list", one_line)])
    stanzas = out.strip().split("\n\n")
    assert len(stanzas) == 2
    assert stanzas[0].splitlines() == [
        "Types: deb-src",
        "URIs: http://mirror.invalid/debian",
        "Suites: bookworm bookworm-updates",
        "Components: main",
        "Signed-By: /usr/share/keyrings/k.gpg",
    ]
    assert "URIs: http://mirror.invalid/debian-security" in stanzas[1]
    assert "vendor.invalid" not in out  # a third-party repository need not offer sources
    assert (
        debian_source_entries([("other.sources", "Types: deb\nURIs: https://x.invalid/apt\n")])
        == ""
    )


def test_set_is_built_from_pinned_archives_of_each_registry_and_evaluated(
    tmp_path: Path, faces: dict[str, bytes]
) -> None:
    downloads = tmp_path / "src"
    downloads.mkdir()
    pypi = Archive(
        "facepkg",
        "1.0",
        "facepkg-1.0.tar.gz",
        tarball(downloads / "facepkg-1.0.tar.gz", "w:gz", {"facepkg-1.0/t/a.jpg": faces["eileen"]}),
        "MIT",
    )
    debian = Archive(
        "facesrc (Debian source)",
        "1.0-1",
        "facesrc_1.0.orig.tar.bz2",
        tarball(
            downloads / "facesrc_1.0.orig.tar.bz2",
            "w:bz2",
            {"facesrc-1.0/ex/e.jpg": faces["eileen_other"], "facesrc-1.0/ex/x.txt": b"not read"},
        ),
        "Boost-Software-License-1.0",
        registry="debian-source",
    )
    npm = Archive(
        "portraits",
        "0.1.0",
        "portraits-0.1.0.tgz",
        tarball(
            downloads / "portraits-0.1.0.tgz",
            "w:gz",
            {"package/p/0.jpg": faces["cameraman"], "package/p/1.jpg": faces["cameraman_mirrored"]},
        ),
        "CC BY-NC-SA 2.0",
        registry="npm",
        labels_distinct=False,
    )
    photos = (
        Photo(pypi, "facepkg-1.0/t/a.jpg", "eileen"),
        Photo(debian, "facesrc-1.0/ex/e.jpg", "eileen"),
        Photo(npm, "package/p/0.jpg", "portrait_0"),
        Photo(npm, "package/p/1.jpg", "portrait_1"),
    )
    out = tmp_path / "set"
    manifest = build(out, downloads, photos, settings=SETTINGS)

    assert [m["image"] for m in manifest] == [
        "eileen/1.jpg",
        "eileen/2.jpg",
        "portrait_0/1.jpg",
        "portrait_1/1.jpg",
    ]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    first, second, portrait = manifest[0], manifest[1], manifest[2]
    assert first["registry"] == "pypi" and first["archive_sha256"] == pypi.sha256
    assert first["member_sha256"] == hashlib.sha256(faces["eileen"]).hexdigest()
    assert second["registry"] == "debian-source" and second["licence"] == debian.licence
    assert second["file_in_archive"] == "facesrc-1.0/ex/e.jpg"
    assert portrait["labels_distinct"] is False and portrait["label_group"] == "portraits"
    assert "labels_distinct" not in first
    for row in manifest:
        with av.open(str(out / str(row["image"]))) as c:
            assert next(c.decode(video=0)).height <= 480
    assert unverified_groups(out) == {"portrait_0": "portraits", "portrait_1": "portraits"}

    detector = CenterFaceDetector(ensure(cache_dir=SETTINGS.model_cache_dir), (384, 288), threads=1)
    report = evaluate(out, detector, load_encoder(), SETTINGS)
    # 4 probes x 3 enrolled people: 1 genuine (eileen/2), 2 left out (the portraits with each
    # other: one man mirrored, which the package would call two people), 6 impostor
    assert report["people_with_several_photos"] == 1
    assert report["genuine_attempts"] == 1 and report["frr"] == 0.0
    assert report["attempts_left_out_within_unverified_groups"] == 2
    assert report["impostor_attempts"] == 6 and report["far"] == 0.0
    pairs = report["closest_impostor_pairs"]
    assert pairs and all({"eileen"} & {p["enrolled"], p["probe"].split("/")[0]} for p in pairs)

    halves = [
        evaluate(out, detector, load_encoder(), SETTINGS, split=h) for h in ("tune", "report")
    ]
    assert [h["split"] for h in halves] == ["tune", "report"]
    for key in ("probes", "genuine_attempts", "impostor_attempts"):
        assert sum(int(h[key]) for h in halves) == report[key]  # a partition of the probes
    for h in halves:  # the whole run reports each half as the split run does
        if h["genuine_attempts"] or h["impostor_attempts"]:
            assert report["by_half"][h["split"]]["far"] == h["far"]
            assert report["by_half"][h["split"]]["impostor"] == h["impostor_attempts"]
    assert all(h["enrolled"] == 3 for h in halves)  # every enrolment photo, in both halves
    with pytest.raises(ValueError, match="split"):
        evaluate(out, detector, load_encoder(), SETTINGS, split="all of them")

    (out / "manifest.json").unlink()  # without the manifest every label counts
    plain = evaluate(out, detector, load_encoder(), SETTINGS)
    assert plain["impostor_attempts"] == 8 and plain["far"] > 0.0
    assert plain["closest_impostor_pairs"][0]["distance"] < SETTINGS.identity_threshold


def test_an_archive_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    sha = tarball(tmp_path / "p-1.tar.gz", "w:gz", {"p-1/a.txt": b"a"})
    archive = Archive("p", "1", "p-1.tar.gz", sha, "MIT")
    assert fetch(archive, tmp_path) == tmp_path / "p-1.tar.gz"
    with pytest.raises(SetError, match="is not the pinned"):
        fetch(dataclasses.replace(archive, sha256="0" * 64), tmp_path)
    with pytest.raises(SetError, match="unknown registry"):
        fetch(dataclasses.replace(archive, filename="q-1.tar.gz", registry="cpan"), tmp_path)


def test_threshold_for_the_far_target_accepts_at_most_that_share_of_impostors() -> None:
    impostor = [0.3, 0.5, 0.6, 0.7, float("inf")] + [0.9] * 995  # 1000 attempts
    genuine = [0.2, 0.35, 0.45, 0.55]
    at = threshold_for_far(genuine, impostor, 0.001)  # one impostor of 1000 may pass
    assert at is not None and at["threshold"] == 0.4999
    assert at["far"] == 0.001 and at["frr"] == 0.25
    strict = threshold_for_far(genuine, impostor, 0.0)
    assert strict is not None and strict["threshold"] < 0.3 and strict["far"] == 0.0
    assert threshold_for_far(genuine, [], 0.001) is None


def test_headline_frr_counts_other_photos_and_splits_rejections_by_cause(tmp_path: Path) -> None:
    """Enrol the first photo, match every other one: the enrolment photo's own camera views
    are scored beside the headline, never in it; each rejection is a failure to acquire or
    a distance over the threshold, per view, person and source."""
    for rel in ("ann/1.jpg", "ann/2.jpg", "bob/1.jpg", "bob/2.jpg", "cy/1.jpg"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    source = {"ann": "pkg-a", "bob": "pkg-b", "cy": "pkg-b"}
    (tmp_path / "manifest.json").write_text(
        json.dumps([{"person": p, "package": s} for p, s in source.items()])
    )
    axis = np.eye(128, dtype=np.float32)
    gallery = {"ann": axis[0], "bob": axis[1], "cy": axis[2]}
    near = {p: v * 0.9 for p, v in gallery.items()}  # 0.1 from its own, ~1.35 from others
    far_off = axis[3]  # 1.41 from everyone
    probes = [
        # the enrolment photos' own views: one no face, one matched
        Probe("ann", "1.jpg", None, True, "60px/as_is"),
        Probe("ann", "1.jpg", near["ann"], True, "200px/as_is"),
        # other photos: ann 60 px no face, ann 200 px matched, bob 60 px over the threshold
        Probe("ann", "2.jpg", None, False, "60px/as_is"),
        Probe("ann", "2.jpg", near["ann"], False, "200px/as_is"),
        Probe("bob", "2.jpg", far_off, False, "60px/as_is"),
        Probe("bob", "2.jpg", near["bob"], False, "200px/as_is"),
    ]
    report = score_probes(tmp_path, gallery, probes, threshold=0.5, camera=True)

    assert report["genuine_attempts"] == 4  # the other photos' views only
    assert report["frr"] == 0.5 and report["fta"] == 0.25
    assert report["fnmr"] == round(1 / 3, 5)  # of the 3 views where a face was found
    assert report["impostor_attempts"] == 6 * 2 and report["far"] == 0.0
    assert report["fmr"] == 0.0
    own = report["enrolment_photo_views"]
    assert own["attempts"] == 2 and own["frr"] == 0.5 and own["no_face"] == 1
    rejections = report["genuine_rejections"]
    assert rejections["by_view"]["60px/as_is"] == {
        "attempts": 2,
        "rejected": 2,
        "no_face": 1,
        "over_threshold": 1,
        "frr": 1.0,
        "fta": 0.5,
        "fnmr": 1.0,
    }
    assert rejections["by_view"]["200px/as_is"]["rejected"] == 0
    assert rejections["by_person"]["ann"]["no_face"] == 1
    assert rejections["by_source"]["pkg-b"]["over_threshold"] == 1
    assert set(rejections["by_photo"]) == {"ann/2.jpg", "bob/2.jpg"}
    assert rejections["enrolment_photo_views_by_view"]["60px/as_is"]["no_face"] == 1
    text = format_report(report)
    assert "FRR 50.00 % of 4 genuine attempts (other photos)" in text
    assert "FTA (no face found) 25.00 %" in text
    assert "enrolment photo's own 2 camera views rejected 50.00 %" in text
    assert "60px/as_is 1+1/2" in text


def test_a_tight_crop_is_framed_in_grey_before_detection(tmp_path: Path) -> None:
    from skimage import data

    tight = bgr(data.astronaut())[66:169, 192:264]  # inside the face box: no hair, no chin
    archive = Archive(
        "crops",
        "1.0",
        "crops-1.0.tgz",
        tarball(tmp_path / "crops-1.0.tgz", "w:gz", {"package/m/e_crop.jpg": jpeg(tight)}),
        "MIT",
        registry="npm",
    )
    out = tmp_path / "set"
    (row,) = build(
        out, tmp_path, (Photo(archive, "package/m/e_crop.jpg", "eileen", pad=True),), SETTINGS
    )
    assert row["padded_px"] == round(0.25 * 103)
    with av.open(str(out / "eileen" / "1.jpg")) as c:
        built = next(c.decode(video=0)).to_ndarray(format="bgr24")
    assert built.shape[0] > tight.shape[0] and built.shape[1] > tight.shape[1]
    assert abs(float(built[:4, :4].mean()) - 128) < 8  # the grey frame, around the crop


def test_camera_views_are_the_same_on_every_run() -> None:
    """The VP8 speed is fixed: with libvpx choosing it from the encoding time, the views (and
    so every camera figure) moved with the machine's load."""
    from skimage import data

    from vision.detector import Face
    from vision.identity_eval import camera_variants

    image = bgr(data.astronaut())
    face = Face(182, 56, 274, 179, 0.9)
    first, second = camera_variants(image, face, seed=7), camera_variants(image, face, seed=7)
    assert len(first) == 12
    for a, b in zip(first, second, strict=True):
        assert (a.face_px, a.light) == (b.face_px, b.light)
        assert np.array_equal(a.image, b.image), (a.face_px, a.light)
