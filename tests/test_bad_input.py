"""Bad input never crashes a scan and never comes out `clear`: a property test that mutates real
JPEG/PNG/TIFF/HEIC bytes (hypothesis), a corpus of hand-made bad files scanned through the CLI,
and hostile rosters."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from photocheck.images import ImageError, load_image
from photocheck.pipeline import screen_photo
from photocheck.results import Verdict
from photocheck.screening import ReferenceSet
from tests.helpers import REPO, load_report

BIDEN = REPO / "sample_images" / "biden1.jpg"
REFERENCE = REPO / "roster" / "photos" / "D0001" / "biden2.jpg"


@pytest.fixture(scope="module")
def engine():
    from photocheck.engine import FaceEngine

    return FaceEngine()


@pytest.fixture(scope="module")
def references(engine) -> ReferenceSet:
    img = load_image(REFERENCE)
    (enc,) = engine.encode(img.rgb, engine.detect(img.rgb))
    return ReferenceSet.build({"D0001": [enc]}, ["D0001"])


@pytest.fixture(scope="module")
def thresholds():
    from photocheck.thresholds import load_thresholds

    return load_thresholds()


def _seed(fmt: str) -> bytes:
    """A small real photo of the listed student in `fmt` (small: many examples, little time)."""
    import io

    im = Image.open(BIDEN).convert("RGB")
    im.thumbnail((160, 360))
    buf = io.BytesIO()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
        if not pillow_heif.libheif_info().get("encoders"):
            pytest.skip("no HEIF encoder in this installation")
        im.save(buf, "HEIF", quality=80)
    elif fmt == "JPEG":
        exif = Image.Exif()
        exif[0x0112] = 1
        im.save(buf, "JPEG", quality=85, exif=exif)
    else:
        im.save(buf, fmt)
    return buf.getvalue()


# One mutation: (kind, where as a fraction of the length, payload).
mutation = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite", "zero-run"]),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    st.binary(min_size=1, max_size=64),
)


def mutate(data: bytes, steps) -> bytes:
    b = bytearray(data)
    for kind, where, payload in steps:
        if not b:
            break
        i = min(int(where * len(b)), len(b) - 1)
        if kind == "flip":
            b[i] ^= payload[0] or 0xFF
        elif kind == "truncate":
            del b[i:]
        elif kind == "insert":
            b[i:i] = payload
        elif kind == "delete":
            del b[i:i + len(payload)]
        elif kind == "overwrite":
            b[i:i + len(payload)] = payload
        else:
            b[i:i + len(payload)] = bytes(len(payload))
    return bytes(b)


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("TIFF", ".tif"), ("HEIF", ".heic")])
def test_mutated_real_photos_never_crash_and_never_come_out_clear_unread(fmt, suffix, engine, references,
                                                                          thresholds, tmp_path_factory):
    seed = _seed(fmt)
    work = tmp_path_factory.mktemp(f"fuzz-{fmt}")
    # Sanity: unmutated, the photo is read and the listed student is found.
    (work / f"seed{suffix}").write_bytes(seed)
    assert screen_photo(work / f"seed{suffix}", engine, references, thresholds).verdict is Verdict.BLOCKED

    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(mutation, min_size=1, max_size=4))
    def check(steps):
        path = work / f"mutated{suffix}"
        path.write_bytes(mutate(seed, steps))
        try:
            load_image(path)
            decoded = True
        except ImageError:
            decoded = False
        # any other exception from load_image is a bug: hypothesis reports it with the input
        result = screen_photo(path, engine, references, thresholds)  # must never raise
        assert result.verdict in set(Verdict)
        if not decoded:
            assert result.verdict is Verdict.ERROR and result.error, result
        else:
            assert result.verdict is not Verdict.ERROR or result.error
        assert result.reasons

    check()


# --- hand-made bad files through the CLI --------------------------------------------------------


def _jpeg_with_huge_exif(path: Path) -> None:
    """A valid JPEG whose APP1 segment is filled to the 64 KB limit with junk EXIF."""
    im = Image.open(BIDEN).convert("RGB")
    im.thumbnail((300, 300))
    im.save(path, "JPEG")
    data = path.read_bytes()
    body = b"Exif\0\0MM\0*\0\0\0\x08" + struct.pack(">H", 0xFFFF) + b"\xAB" * (65533 - 2 - 16)
    app1 = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    path.write_bytes(data[:2] + app1 + data[2:])


def test_corpus_of_bad_files_each_ends_error_and_the_batch_completes(cli, tmp_path: Path):
    d = tmp_path / "batch"
    d.mkdir()
    good = Image.open(BIDEN).convert("RGB")
    good.thumbnail((600, 600))
    good.save(d / "zz_good.jpg")  # sorted last: the batch goes on past every bad file
    (d / "zero.jpg").write_bytes(b"")
    data = (d / "zz_good.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (d / "text.png").write_text("hello")
    (d / "bomb.tif").write_bytes(b"II*\0\x08\0\0\0" + struct.pack("<H", 2)
                                 + struct.pack("<HHII", 256, 4, 1, 200000) + struct.pack("<HHII", 257, 4, 1, 200000)
                                 + b"\0\0\0\0")
    _jpeg_with_huge_exif(d / "huge_exif.jpg")
    os.symlink("loop_b.jpg", d / "loop_a.jpg")
    os.symlink("loop_a.jpg", d / "loop_b.jpg")
    os.symlink(".", d / "dir_loop")
    name = os.fsdecode(b"caf\xe9_latin1_name.jpg")  # not UTF-8: a surrogate-escaped str
    (d / name).write_bytes(data)
    unreadable = d / "unreadable.jpg"
    unreadable.write_bytes(data)
    os.chmod(unreadable, 0)
    Image.fromarray((np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)).save(d / "grey16.png")
    good.convert("CMYK").save(d / "cmyk.jpg")

    cli("roster", "import", REPO / "roster" / "no_consent.csv")  # D0001 listed, not enrolled: faces -> review
    report = tmp_path / "r.json"
    csv_out, html_out = tmp_path / "r.csv", tmp_path / "r.html"
    result = cli("scan", d, "--jobs", "1", "--json", report, "--csv", csv_out, "--html", html_out, expect=1)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    images = {Path(im["path"]).name: im for im in load_report(report)["images"]}
    errors = {"zero.jpg", "truncated.jpg", "text.png", "bomb.tif", "loop_a.jpg", "loop_b.jpg"}
    if os.geteuid() != 0:  # root reads anything
        errors.add("unreadable.jpg")
    for n in errors:
        assert images[n]["verdict"] == "error" and images[n]["error"], images[n]
    # odd but decodable: screened like any photo (a face while D0001 is unprotected -> review)
    name = "caf\\xe9_latin1_name.jpg"  # stored and reported with the odd byte escaped
    for n in ("zz_good.jpg", "cmyk.jpg", "huge_exif.jpg", name):
        assert images[n]["verdict"] in ("review", "error"), images[n]
    assert images["zz_good.jpg"]["verdict"] == "review"
    assert images[name]["verdict"] == "review"
    assert images["grey16.png"]["verdict"] in ("clear", "review")  # no face in a gradient
    assert not any(im["verdict"] == "clear" for n, im in images.items() if n in errors)
    assert "zz_good.jpg" in csv_out.read_text(encoding="utf-8-sig") and html_out.stat().st_size


# --- hostile rosters ----------------------------------------------------------------------------


def test_hostile_roster_is_refused_or_handled_safely_and_outputs_escape_it(cli, tmp_path: Path):
    header = "student_id,first_name,last_name,campus,grade,opt_out\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "=cmd|' /C calc'!A0,Eve,Ray,North,9,all\nS1,A,B,C,9,all\nS1,A,B,C,9,all\n")
    out = cli("roster", "import", bad, expect=1).output
    assert "spreadsheet formula" in out and "duplicate student_id" in out and "nothing was changed" in out
    missing = tmp_path / "missing.csv"
    missing.write_text("student_id,first_name\nS1,A\n")
    assert "roster not imported" in cli("roster", "import", missing, expect=1).output
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes((header + "S2,Zoë,Lé,North,9,all\n").encode("latin-1"))
    assert "roster not imported" in cli("roster", "import", latin1, expect=1).output
    # formula-like names and markup are stored as text and printed inertly
    odd = tmp_path / "odd.csv"
    odd.write_bytes(b"\xef\xbb\xbf" + (header + "S3,=HYPERLINK(\"http://x\"),[bold]<script>x</script>[/bold],"
                                       "North,9,all\n").encode())
    cli("roster", "import", odd)
    listing = cli("roster", "list").output
    assert "<script>x</script>" in listing.replace("\n", "") or "<script>" in listing
