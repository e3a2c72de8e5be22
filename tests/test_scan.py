"""Scanning real and broken files through the library and the CLI: each file isolated,
bad files are `error` with a reason (never "no faces"), odd-but-valid ones are screened."""
from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import FACES, REPO, load_report, need_shared

BIDEN = REPO / "sample_images" / "biden1.jpg"  # the demo's listed student, public domain


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims w x h pixels (a decompression bomb) with a tiny body."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.fixture
def odd_batch(tmp_path: Path) -> Path:
    """Bad and odd files, each carrying (where decodable) the listed student's face."""
    d = tmp_path / "batch"
    d.mkdir()
    face = Image.open(BIDEN).convert("RGB")
    face.thumbnail((900, 900))
    (d / "zero.jpg").write_bytes(b"")
    data = BIDEN.read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "notes.jpg").write_text("not a photo")
    _png_header_only(d / "bomb.png", 60000, 60000)
    frames = [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    # odd but valid: must be screened and blocked
    face.save(d / "wrong_extension.png", "JPEG")
    face.convert("CMYK").save(d / "cmyk.jpg", "JPEG")
    grey16 = (np.asarray(face.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(grey16).save(d / "grey16.png")
    rgba = face.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(d / "rgba.png")
    face.quantize(256).save(d / "palette.png")
    return d


ERRORS = {"zero.jpg", "truncated.jpg", "notes.jpg", "bomb.png", "animated.gif"}
SCREENED = {"wrong_extension.png", "cmyk.jpg", "grey16.png", "rgba.png", "palette.png"}


def test_bad_files_are_errors_and_odd_files_are_screened(cli, demo_copy: Path, odd_batch: Path, tmp_path: Path):
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    report = tmp_path / "r.json"
    cli("scan", odd_batch, "--json", report, "--jobs", "2", expect=1)
    images = {Path(im["path"]).name: im for im in load_report(report)["images"]}
    assert set(images) == ERRORS | SCREENED
    for name in ERRORS:
        assert images[name]["verdict"] == "error", images[name]
        assert images[name]["error"], images[name]
    assert "truncated" in images["truncated.jpg"]["error"]
    assert "animated" in images["animated.gif"]["error"]
    assert "MP" in images["bomb.png"]["error"]
    for name in SCREENED:
        assert images[name]["verdict"] == "blocked", images[name]


def test_real_group_photos_of_strangers_are_not_blocked(cli, demo_copy: Path, tmp_path: Path):
    need_shared()
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    batch = tmp_path / "groups"
    batch.mkdir()
    for name in ("2007_007763.jpg", "2008_001009.jpg", "2008_001322.jpg", "2008_002079.jpg", "kit_with_rose.jpg"):
        shutil.copy(FACES / "groups" / name, batch / name)
    for f in (FACES / "nofaces").iterdir():
        shutil.copy(f, batch / f.name)
    report = tmp_path / "r.json"
    cli("scan", batch, "--json", report, expect=None)
    images = {Path(im["path"]).name: im for im in load_report(report)["images"]}
    assert images["2007_007763.jpg"]["faces"], "a group photo must have faces"
    for name, im in images.items():
        assert im["verdict"] != "blocked", im
        assert im["verdict"] != "error", im
    for f in (FACES / "nofaces").iterdir():  # animals; a dog's face may be detected, never matched
        im = images[f.name]
        if f.name == "dog.jpg" and im["verdict"] == "review":
            # The int8 detector's weak false detection on fur (score 0.41, test_engine.test_no_faces)
            # is smooth along the fur: too blurred to rule out. That costs a review, nothing more.
            assert all(face["status"] == "too_small" for face in im["faces"]), im
            continue
        assert im["verdict"] == "clear", im


@pytest.mark.backends("sqlite", "postgresql")
def test_scan_results_are_stored_and_queued_for_signoff(cli, demo_copy: Path, db_url: str):
    from sqlalchemy import select

    from photocheck.db import open_database
    from photocheck.db.models import Face, Photo, Scan

    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    cli("scan", demo_copy / "sample_images", expect=1)
    db = open_database(db_url)
    with db.session() as s:
        scan = s.scalars(select(Scan)).one()
        assert scan.status == "finished" and scan.owner == "tester"
        photos = s.scalars(select(Photo)).all()
        assert len(photos) == 4
        assert all(p.signoff_state == "pending" and len(p.sha256) == 64 for p in photos)
        blocked = [f for f in s.scalars(select(Face)) if f.status == "listed"]
        assert blocked and all(f.student_id == "D0001" for f in blocked)
