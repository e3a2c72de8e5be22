"""Names of listed students in text: the name matcher, the embedded-text reader, the scan's text
check (real face engine, real database), `check-text` and `publish --caption`."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from photocheck.cli import app
from photocheck.db import open_database
from photocheck.db.models import AuditEvent, Photo, Publication
from photocheck.metadata import parse_xmp, read_embedded_text
from photocheck.names import FIRST_NAME, NAMED, NameIndex, Person, tokens
from photocheck.results import Verdict
from photocheck.scan import scan
from tests.helpers import load_report
from tests.tagged import blank, iptc_app13, save_jpeg, save_png, xmp

ROSTER = """student_id,first_name,last_name,campus,grade,opt_out,opt_out_until,strict,preferred_name
T1,Zoë,Müller,Demo,5,all,,,
T2,Jane,Doe,Demo,5,social,,,
T3,Xiomara,Okonkwo,Demo,5,all,,,
T4,Beatriz,Santos,Demo,5,all,,,Trixie
T5,Jane,Smith,Demo,5,all,,,
T6,Olu,Adeyemi,Demo,5,all,2020-01-01,,
"""
PEOPLE = [Person("T1", "Zoë", "Müller"), Person("T2", "Jane", "Doe"), Person("T3", "Xiomara", "Okonkwo"),
          Person("T4", "Beatriz", "Santos", "Trixie"), Person("T5", "Jane", "Smith"),
          Person("T7", "Mary Ann", "O'Brien-Lee"), Person("T8", "Xiomara", "Quinn"), Person("T9", "Kalinda", "Ray"),
          Person("T10", "伟", "张"), Person("T11", "민준", "김")]


def hits(text: str, people=PEOPLE, min_letters: int = 4) -> set[tuple[str, str]]:
    return {(h.student_id, h.level) for h in NameIndex.build(people, min_letters).find(text)}


# ------------------------------------------------------------------ names.py

@pytest.mark.parametrize("text,sid", [
    ("ZOË müller's first goal", "T1"),             # case, accents, possessive
    ("Zoe Mueller", "T1"),                        # German transliteration
    ("MÜLLER, Zoë", "T1"),                        # last name first
    ("Zoë A. Müller scores", "T1"),               # a middle initial
    ("IMG_2041_ZoeMuller.jpg", "T1"),             # camelCase file name
    ("#zoemuller", "T1"),                         # run together
    ("zoe-muller-2024-03.jpg", "T1"),
    ("Congrats Jane Doe’s team!", "T2"),          # typographic apostrophe
    ("Trixie Santos", "T4"),                      # preferred name
    ("Mary O'Brien-Lee", "T7"),                   # first of two given names
    ("MARY ANN OBRIEN LEE", "T7"),
    ("张伟在比赛中得分", "T10"),                     # no spaces between words
    ("김민준이 골을 넣었다", "T11"),
])
def test_full_names_are_found_whatever_the_spelling(text, sid):
    assert (sid, NAMED) in hits(text)


@pytest.mark.parametrize("text", [
    "Jane Doerr", "Janet Doe", "Zoë and Max Müller", "Müller Street", "Does Jane Smithers", "jane",
    "Santos Trixies",
])
def test_other_words_do_not_name_anyone(text):
    assert not {h for h in hits(text) if h[1] == NAMED}


def test_a_first_name_alone_is_review_only_when_rare_long_and_one_childs():
    assert hits("Trixie at the fair") == {("T4", FIRST_NAME)}      # preferred name, rare, one owner
    assert hits("Kalinda's science project") == {("T9", FIRST_NAME)}
    assert hits("Jane at the fair") == set()                      # common, and two Janes
    assert hits("Xiomara at the fair") == set()                   # two listed Xiomaras: points at no one
    assert hits("Zoë at the fair") == set()                       # three letters: too short
    assert hits("Beatriz", min_letters=8) == set()                # under the threshold
    assert hits("Beatriz") == {("T4", FIRST_NAME)}
    assert hits("Beatriz Santos") == {("T4", NAMED)}              # a full name is not also a first-name hit


def test_ascii_fast_paths_fold_and_split_as_the_general_code():
    """fold() and the camelCase split take a shortcut for ASCII text: same result on every pair of
    ASCII characters (and longer mixes), so no name is folded differently."""
    import random

    from photocheck.names import _fold_any, _split_camel, _split_camel_any, fold

    ascii_chars = [chr(i) for i in range(128)]
    texts = [a + b for a in ascii_chars for b in ascii_chars]
    rng = random.Random(7)
    texts += ["".join(rng.choice(ascii_chars) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    texts += ["ZoeMuller", "JANE doe's", "o`Brien", "x_Ab9cD-eF"]
    assert [fold(t) for t in texts] == [_fold_any(t) for t in texts]
    assert [_split_camel(t) for t in texts] == [_split_camel_any(t) for t in texts]


def test_tokens_fold_accents_case_and_possessives():
    assert tokens("ZOË müller's") == ["zoe", "muller"]
    assert tokens("Łukasz Øberg-Straße’") == ["lukasz", "oberg", "strasse"]
    assert tokens("JaneDoe2", camel=True) == ["jane", "doe", "2"]


# ------------------------------------------------------------------ metadata.py

def test_every_tag_photo_apps_write_is_read_with_its_source(tmp_path: Path):
    exif = Image.Exif()
    exif[0x010E] = "EXIF description"
    exif[0x9C9E] = "kw one;kw two".encode("utf-16-le") + b"\0\0"   # Windows XPKeywords
    exif[0x9C9B] = "XP title".encode("utf-16-le")
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0user comment"
    p = save_jpeg(tmp_path / "all.jpg", xmp_packet=xmp(
        "the description", title="the title", subjects=["kw"], persons=["person tag"], mwg_names=["region name"],
        ms_names=["windows person"], hierarchical=["People|hier name"], attribute_title="attr title"),
        exif=exif, iptc=iptc_app13("iptc caption", ["iptc kw"], "iptc headline"))
    found = {(t.source, t.text) for t in read_embedded_text(p).texts}
    assert {
        ("file name", "all.jpg"), ("XMP dc:description", "the description"), ("XMP dc:title", "the title"),
        ("XMP dc:title", "attr title"), ("XMP dc:subject", "kw"), ("XMP Iptc4xmpExt:PersonInImage", "person tag"),
        ("XMP mwg-rs:Name", "region name"), ("XMP MPReg:PersonDisplayName", "windows person"),
        ("XMP lr:hierarchicalSubject", "People|hier name"), ("IPTC caption", "iptc caption"),
        ("IPTC keywords", "iptc kw"), ("IPTC headline", "iptc headline"),
        ("EXIF ImageDescription", "EXIF description"), ("EXIF XPKeywords", "kw one;kw two"),
        ("EXIF XPTitle", "XP title"), ("EXIF UserComment", "user comment"),
    } <= found
    png = save_png(tmp_path / "p.png", {"Description": "png words", "XML:com.adobe.xmp": xmp("png xmp").decode()},
                   compressed=True)
    found = {(t.source, t.text) for t in read_embedded_text(png).texts}
    assert {("PNG text Description", "png words"), ("XMP dc:description", "png xmp")} <= found
    exif = Image.Exif()
    exif[0x010E] = "png exif"
    blank().save(tmp_path / "e.png", exif=exif)  # an eXIf chunk, read without decoding the pixels
    assert ("EXIF ImageDescription", "png exif") in {(t.source, t.text) for t in read_embedded_text(tmp_path / "e.png").texts}


def test_hostile_or_broken_xmp_is_a_problem_not_a_crash(tmp_path: Path):
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&b;</x:xmpmeta>')
    with pytest.raises(ValueError, match="DOCTYPE"):
        parse_xmp(bomb)
    with pytest.raises(ValueError, match="limit"):
        parse_xmp(b"<x:xmpmeta>" + b" " * (5 * 1024 * 1024) + b"</x:xmpmeta>")
    p = save_jpeg(tmp_path / "bad.jpg", xmp_packet=b"<x:xmpmeta><rdf:RDF><unclosed></x:xmpmeta>")
    out = read_embedded_text(p)
    assert out.problems and "XMP" in out.problems[0]


def test_the_text_check_never_passes_a_file_it_could_not_check(tmp_path: Path):
    from photocheck.images import file_sha256
    from photocheck.results import PhotoResult
    from photocheck.textcheck import TextChecker

    checker = TextChecker(index=NameIndex.build(PEOPLE), listing={p.student_id: ("all", None, False) for p in PEOPLE})
    p = save_jpeg(tmp_path / "a.jpg")
    ok = checker.apply(PhotoResult(str(p), Verdict.CLEAR, sha256=file_sha256(p), channel_verdicts={"web": Verdict.CLEAR}))
    assert ok.verdict is Verdict.CLEAR and ok.text_hits == 0
    changed = checker.apply(PhotoResult(str(p), Verdict.CLEAR, sha256="0" * 64, channel_verdicts={"web": Verdict.CLEAR}))
    assert changed.verdict is Verdict.ERROR and changed.channel_verdicts == {"web": Verdict.ERROR}
    gone = checker.apply(PhotoResult(str(tmp_path / "gone.jpg"), Verdict.CLEAR, sha256="0" * 64))
    assert gone.verdict is Verdict.ERROR and "cannot read" in gone.error
    bad = save_jpeg(tmp_path / "badxmp.jpg", xmp_packet=b"<x:xmpmeta><rdf:RDF><oops></x:xmpmeta>")
    r = checker.apply(PhotoResult(str(bad), Verdict.CLEAR, sha256=file_sha256(bad), channel_verdicts={"web": Verdict.CLEAR}))
    assert r.verdict is Verdict.REVIEW and r.channel_verdicts["web"] is Verdict.REVIEW and r.text_hits


# ------------------------------------------------------------------ scan (real engine, real database)

@pytest.fixture
def tagged(tmp_path: Path) -> Path:
    """Photos with no face in them, whose only link to a child is their text."""
    d = tmp_path / "post"
    d.mkdir()
    save_jpeg(d / "caption.jpg", xmp_packet=xmp("ZOË müller's first goal!"))
    save_jpeg(d / "region.jpg", xmp_packet=xmp(mwg_names=["Okonkwo, Xiomara"]))  # a region, no face there
    save_jpeg(d / "windows.jpg", xmp_packet=xmp(ms_names=["Trixie Santos"]))
    save_jpeg(d / "doerr.jpg", xmp_packet=xmp("Jane Doerr and Jane Smithers at the fair"))
    save_jpeg(d / "IMG_jane_doe.jpg", blank(color=(90, 140, 90)))
    save_jpeg(d / "iptc.jpg", blank(color=(200, 120, 90)), iptc=iptc_app13("Go MUELLER, Zoe!"))
    exif = Image.Exif()
    exif[0x9C9E] = "team;Beatriz Santos".encode("utf-16-le") + b"\0\0"
    save_jpeg(d / "exif.jpg", blank(color=(90, 90, 190)), exif=exif)
    save_png(d / "firstname.png", {"Description": "Trixie at the science fair"})
    save_jpeg(d / "expired.jpg", xmp_packet=xmp("Olu Adeyemi"))            # opt-out ended in 2020
    save_jpeg(d / "plain.jpg", blank(color=(110, 110, 110)))
    return d


def _roster(cli, tmp_path: Path, text: str = ROSTER) -> None:
    f = tmp_path / "roster.csv"
    f.write_text(text, encoding="utf-8")
    cli("roster", "import", f)


def test_preferred_names_are_imported_and_a_change_of_name_is_a_change(cli, tmp_path: Path):
    from photocheck.db.models import Student
    from photocheck.roster import read_roster

    _roster(cli, tmp_path)
    db = open_database(cli.db_url)
    with db.session() as s:
        assert s.scalar(select(Student.preferred_name).where(Student.student_id == "T4")) == "Trixie"
    out = cli("roster", "import", _write(tmp_path, ROSTER.replace("Santos,Demo,5,all,,,Trixie",
                                                                  "Santos,Demo,5,all,,,Bea"))).output
    assert "T4" in out
    with db.session() as s:
        assert s.scalar(select(Student.preferred_name).where(Student.student_id == "T4")) == "Bea"
    # an SIS export maps its own column onto preferred_name
    mapping = tmp_path / "m.toml"
    mapping.write_text('[columns]\nstudent_id = "id"\nfirst_name = "given"\nlast_name = "family"\n'
                       'preferred_name = "preferredFirstName"\nopt_out = "consent"\n'
                       '[constants]\ncampus = "Demo"\ngrade = "5"\n')
    export = _write(tmp_path, "id,given,family,preferredFirstName,consent\nS1,Beatriz,Santos,Trixie,all\n", "sis.csv")
    from photocheck.roster import load_mapping

    (rec,) = read_roster(export, load_mapping(mapping))
    assert rec.preferred_name == "Trixie"


def _write(tmp_path: Path, text: str, name: str = "roster2.csv") -> Path:
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return f


@pytest.mark.backends("sqlite", "postgresql")
def test_names_in_tags_and_file_names_block_the_photo_per_channel(cli, tagged: Path, tmp_path: Path):
    _roster(cli, tmp_path)
    # two cores: the pool's results go through the same text check as the in-process ones
    cli("scan", tagged, "--jobs", "2", "--json", tmp_path / "r.json", expect=1)
    report = load_report(tmp_path / "r.json")
    by = {Path(im["path"]).name: im for im in report["images"]}
    assert all(not im["faces"] for im in by.values())  # no face anywhere: the text alone decides
    expect = {"caption.jpg": ("blocked", "named in XMP dc:description: T1"),
              "region.jpg": ("blocked", "named in XMP mwg-rs:Name: T3"),
              "windows.jpg": ("blocked", "named in XMP MPReg:PersonDisplayName: T4"),
              "IMG_jane_doe.jpg": ("blocked", "named in file name: T2"),
              "iptc.jpg": ("blocked", "named in IPTC caption: T1"),
              "exif.jpg": ("blocked", "named in EXIF XPKeywords: T4"),
              "firstname.png": ("review", "first name alone of a listed student in PNG text Description "
                                          "(may be them): T4")}
    for name, (verdict, reason) in expect.items():
        assert by[name]["verdict"] == verdict, (name, by[name])
        assert reason in by[name]["reasons"], (name, by[name]["reasons"])
    for name in ("doerr.jpg", "expired.jpg", "plain.jpg"):
        assert by[name]["verdict"] == "clear", (name, by[name])
    # T2 opted out of social only: the file name blocks social, not web
    db = open_database(cli.db_url)
    with db.session() as s:
        row = s.scalar(select(Photo).where(Photo.path.like("%IMG_jane_doe.jpg")))
        assert json.loads(row.channel_verdicts)["social"] == "blocked"
        assert json.loads(row.channel_verdicts)["web"] == "clear"
        assert row.text_hits == 1
    # ids, never names, in the reasons
    reasons = json.dumps([im["reasons"] for im in report["images"]], ensure_ascii=False)
    for name in ("Zoë", "Müller", "Xiomara", "Okonkwo", "Trixie", "Santos"):
        assert name.casefold() not in reasons.casefold()
    # a scan for web only: the social-only student does not count
    out = scan(db, [tagged / "IMG_jane_doe.jpg"], owner="t", jobs=1, channel="web").summary
    assert out.photos[0].verdict is Verdict.CLEAR


@pytest.mark.backends("sqlite", "postgresql")
def test_cached_results_still_get_a_fresh_name_check(cli, tagged: Path, tmp_path: Path):
    _roster(cli, tmp_path)
    db = open_database(cli.db_url)
    first = {Path(p.path).name: p for p in scan(db, [tagged], owner="t", jobs=1).summary.photos}
    assert first["plain.jpg"].verdict is Verdict.CLEAR
    # Same bytes under a student's name: reused from the cache, and still blocked by the name.
    shutil.copy(tagged / "plain.jpg", tagged / "Zoe_Muller_goal.jpg")
    again = {Path(p.path).name: p for p in scan(db, [tagged], owner="t", jobs=1).summary.photos}
    renamed = again["Zoe_Muller_goal.jpg"]
    assert renamed.cached and renamed.verdict is Verdict.BLOCKED
    assert "named in file name: T1" in renamed.reasons
    assert again["plain.jpg"].cached and again["plain.jpg"].verdict is Verdict.CLEAR
    assert not again["caption.jpg"].cached  # a photo whose text named someone is screened afresh
    assert again["caption.jpg"].verdict is Verdict.BLOCKED
    # The roster changes names only (same ids, no new faces): the cache still applies, the names are new.
    _roster(cli, tmp_path, ROSTER.replace("T5,Jane,Smith", "T5,Jane,Smithers"))
    third = {Path(p.path).name: p for p in scan(db, [tagged], owner="t", jobs=1).summary.photos}
    assert third["doerr.jpg"].cached and third["doerr.jpg"].verdict is Verdict.BLOCKED
    assert "named in XMP dc:description: T5" in third["doerr.jpg"].reasons


# ------------------------------------------------------------------ check-text, publish --caption

def test_check_text_exit_status_and_ids(cli, tmp_path: Path):
    _roster(cli, tmp_path)
    out = cli("check-text", "Well played, Zoe Müller's team!", expect=1).output
    assert "T1" in out and "Müller" not in out
    out = cli("check-text", "Trixie won the prize", expect=1).output
    assert "T4" in out and "first name" in out
    assert "No listed student" in cli("check-text", "Jane Doerr won the prize", expect=0).output
    result = cli.runner.invoke(app, ["check-text", "-"],
                               input="Congratulations MUELLER, Zoe\n",
                               env={"PHOTOCHECK_DB": cli.db_url, "PHOTOCHECK_USER": "tester"})
    assert result.exit_code == 1 and "T1" in result.output
    cli("check-text", "Jane Doe", "--channel", "web", expect=0)  # T2 opted out of social only
    out = cli("check-text", "Jane Doe", "--channel", "social", expect=1).output
    assert "T2" in out


@pytest.mark.backends("sqlite", "postgresql")
def test_publish_refuses_a_caption_naming_an_opted_out_student(cli, tmp_path: Path):
    _roster(cli, tmp_path)
    post = tmp_path / "post"
    post.mkdir()
    save_jpeg(post / "IMG_1.jpg")
    cli("scan", post, "--jobs", "1", "--as", "alice")
    cli.user = "bob"
    cli("review", "sign", "--scan", "1", "--decision", "approve")
    bad, good = tmp_path / "bad.txt", tmp_path / "good.txt"
    bad.write_text("Our team with Zoë Müller at the final\n", encoding="utf-8")
    good.write_text("Jane Doe at the final\n", encoding="utf-8")  # T2 opted out of social only
    out = cli("publish", "--channel", "web", "--to", tmp_path / "web", "--scan", "1", "--caption", bad, expect=1).output
    assert "T1" in out and "caption" in out
    assert not (tmp_path / "web").exists() or not any((tmp_path / "web").glob("*.jpg"))
    cli("publish", "--channel", "web", "--to", tmp_path / "web", "--scan", "1", "--caption", good)
    out = cli("publish", "--channel", "social", "--to", tmp_path / "so", "--scan", "1", "--caption", good,
              expect=1).output
    assert "T2" in out
    digest = hashlib.sha256(good.read_bytes().decode("utf-8").strip().encode()).hexdigest()
    db = open_database(cli.db_url)
    with db.session() as s:
        pubs = s.scalars(select(Publication)).all()
        assert len(pubs) == 1 and pubs[0].channel == "web" and pubs[0].caption_sha256 == digest
        assert pubs[0].caption == "Jane Doe at the final"
        events = s.scalars(select(AuditEvent)).all()
        text = " ".join(e.details for e in events)
        assert digest in text and "Jane Doe" not in text and "Müller" not in text
        refused = [json.loads(e.details) for e in events if e.action == "publish.caption_refused"]
        assert len(refused) == 2 and refused[0]["students"] == ["T1"]
