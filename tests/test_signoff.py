"""Sign-off, redaction, the publish gate, per-channel consent, re-check and the audit chain.

The demo is scanned once per module and backend (by "alice", with the real engine, on SQLite
and on PostgreSQL); each test gets its own copy of that database (PostgreSQL: CREATE DATABASE
... TEMPLATE) and of the photos, and acts as "bob", the second person.
"""
from __future__ import annotations

import json
import shutil
import threading
from contextlib import ExitStack
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, text

from photocheck import audit
from photocheck.db import open_database
from photocheck.db.models import AuditEvent, Photo, Publication, Redaction, Signoff
from photocheck.review import SignoffError, sign_one
from photocheck.screening import listed_for
from tests.helpers import REPO, Cli, pg_url

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def said(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


HEADER = "student_id,first_name,last_name,campus,grade,opt_out,opt_out_until,strict\n"


def _build_golden(root: Path, url: str) -> None:
    """The demo imported, enrolled and scanned by alice; obama1.jpg carries EXIF GPS and a comment."""
    imgs = root / "imgs"
    shutil.copytree(REPO / "sample_images", imgs)
    (imgs / "SOURCES.md").unlink()
    im = Image.open(imgs / "obama1.jpg")
    exif = Image.Exif()
    exif[0x010E] = "Emma Smith, grade 3"             # ImageDescription naming a child
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 30.0)     # GPSLatitude
    im.save(imgs / "obama1.jpg", exif=exif, comment=b"Emma Smith at sports day")
    cli = Cli(url, user="alice")
    with pytest.MonkeyPatch.context() as mp:  # the encryption key travels with each copy of the demo
        mp.setenv("PHOTOCHECK_KEY_FILE", str(root / "photocheck.key"))
        cli("roster", "import", REPO / "roster" / "no_consent.csv")
        cli("enroll", REPO / "roster" / "photos")
        cli("scan", imgs, "--jobs", "1", expect=1)


@pytest.fixture(scope="module")
def goldens(tmp_path_factory):
    """backend -> (folder with the photos and key, database URL): built on first use, once per module."""
    built: dict[str, tuple[Path, str]] = {}
    with ExitStack() as stack:
        def get(backend: str) -> tuple[Path, str]:
            if backend not in built:
                root = tmp_path_factory.mktemp(f"golden-{backend}")
                url = (stack.enter_context(pg_url()) if backend == "postgresql"
                       else f"sqlite:///{root / 'db.sqlite'}")
                _build_golden(root, url)
                built[backend] = root, url
            return built[backend]
        yield get


@pytest.fixture
def demo(goldens, backend: str, tmp_path: Path, monkeypatch):
    """A private copy of the scanned demo: (cli as bob, db, photo ids by file name, images folder)."""
    golden, golden_url = goldens(backend)
    root = tmp_path / "demo"
    shutil.copytree(golden, root)
    monkeypatch.setenv("PHOTOCHECK_KEY_FILE", str(root / "photocheck.key"))
    with ExitStack() as stack:
        if backend == "postgresql":
            url = stack.enter_context(pg_url(template=golden_url))
        else:
            url = f"sqlite:///{root / 'db.sqlite'}"
        db = open_database(url)
        with db.engine.begin() as c:
            c.execute(text("UPDATE photos SET path = replace(path, :a, :b)"), {"a": str(golden), "b": str(root)})
        with db.session() as s:
            ids = {Path(p.path).name: p.id for p in s.scalars(select(Photo))}
        yield Cli(url, user="bob"), db, ids, root / "imgs"
        db.dispose()


def _sql(db, *statements: str, **params) -> None:
    """Edit the database behind photocheck's back (as someone with write access could)."""
    with db.engine.begin() as c:
        for stmt in statements:
            c.execute(text(stmt), params)


def _state(db, pid: int) -> str:
    with db.session() as s:
        return s.get(Photo, pid).signoff_state


# --- sign-off rules ------------------------------------------------------------------------------

def test_the_person_who_scanned_cannot_sign_off(demo):
    cli, db, ids, _ = demo
    out = said(cli("review", "sign", ids["obama1.jpg"], "--decision", "approve", "--as", "alice", expect=1))
    assert "alice ran scan" in out and "second person" in out
    with pytest.raises(SignoffError, match="second person"):  # the library refuses too, not only the CLI
        sign_one(db, ids["obama1.jpg"], reviewer="ALICE", decision="approve")
    assert _state(db, ids["obama1.jpg"]) == "pending"


def test_queue_lists_pending_photos_with_verdict_reasons_and_scanner(demo):
    cli, _, ids, _ = demo
    items = json.loads(cli("review", "list", "--json").output)
    assert [i["verdict"] for i in items][:2] == ["blocked", "blocked"]  # most urgent first
    first = items[0]
    assert first["scanned_by"] == "alice" and first["state"] == "pending" and "D0001" in " ".join(first["reasons"])
    assert {i["photo_id"] for i in items} == set(ids.values())
    clear = json.loads(cli("review", "list", "--verdict", "clear", "--json").output)
    assert {Path(i["path"]).name for i in clear} == {"obama1.jpg", "obama3.jpg"}


def test_blocked_photo_is_never_approved_as_is_only_rejected(demo):
    cli, db, ids, _ = demo
    out = said(cli("review", "sign", ids["biden1.jpg"], "--decision", "approve", expect=1))
    assert "never be approved as is" in out and "redact" in out
    assert _state(db, ids["biden1.jpg"]) == "pending"
    cli("review", "sign", ids["biden1.jpg"], "--decision", "reject", "--note", "listed student")
    assert _state(db, ids["biden1.jpg"]) == "rejected"
    out = said(cli("review", "sign", ids["biden1.jpg"], "--decision", "approve", expect=1))
    assert "already signed off by bob" in out


def test_sign_clear_photos_of_a_scan_then_publish_strips_metadata_and_names(demo, tmp_path: Path):
    cli, db, ids, _ = demo
    out = said(cli("review", "sign", "--scan", "1", "--verdict", "clear", "--decision", "approve"))
    assert "2 signed, 0 refused" in out
    dest = tmp_path / "web"
    result = cli("publish", "--channel", "web", "--to", dest, "--scan", "1", expect=1)  # blocked ones refused
    assert "refused" in result.output and "not signed off" in result.output
    files = sorted(p.name for p in dest.iterdir())
    assert files == ["manifest.json", f"web-{ids['obama1.jpg']:06d}.jpg", f"web-{ids['obama3.jpg']:06d}.jpg"]
    out_file = dest / f"web-{ids['obama1.jpg']:06d}.jpg"
    data = out_file.read_bytes()
    assert b"Emma" not in data and b"Exif" not in data and b"http://ns.adobe.com" not in data
    with Image.open(out_file) as im:
        assert not {"exif", "comment", "icc_profile", "xmp"} & set(im.info)
        assert not im.getexif()
    manifest = json.loads((dest / "manifest.json").read_text())
    assert {e["file"] for e in manifest["files"]} == set(files) - {"manifest.json"}
    assert all(e["signed_off_by"] == "bob" and e["channel"] == "web" for e in manifest["files"])
    assert "obama" not in (dest / "manifest.json").read_text()  # no source names leak
    with db.session() as s:
        assert len(s.scalars(select(Publication)).all()) == 2


def test_publishing_for_a_non_school_purpose_is_refused(demo, tmp_path: Path, monkeypatch):
    cli, _, ids, _ = demo
    cli("review", "sign", ids["obama3.jpg"], "--decision", "approve")
    out = said(cli("publish", "--channel", "personal", "--to", tmp_path / "p", ids["obama3.jpg"], expect=2))
    assert "not one of the school's publication channels" in out and "non-school" in out
    assert not (tmp_path / "p").exists()
    monkeypatch.setenv("PHOTOCHECK_CHANNELS", "web,yearbook")  # a school that never uses social media
    from photocheck.publish import PublishError, publish
    with pytest.raises(PublishError, match="not one of"):
        publish(demo[1], [ids["obama3.jpg"]], channel="social", dest=tmp_path / "s", actor="carol")


def test_a_changed_file_loses_its_signoff(demo, tmp_path: Path):
    cli, db, ids, imgs = demo
    pid = ids["obama3.jpg"]
    cli("review", "sign", pid, "--decision", "approve")
    with Image.open(imgs / "obama3.jpg") as im:
        im.rotate(1).save(imgs / "obama3.jpg")  # someone edits the file after sign-off
    out = said(cli("publish", "--channel", "web", "--to", tmp_path / "w", pid, expect=1))
    assert "changed since it was signed off" in out and "pending again" in out
    assert _state(db, pid) == "pending"
    assert not list((tmp_path / "w").glob("*.jpg"))
    assert "changed since it was scanned" in said(cli("review", "sign", pid, "--decision", "approve", expect=1))


def test_two_reviewers_racing_one_wins_nothing_lost(demo):
    _, db, ids, _ = demo
    pid = ids["obama1.jpg"]
    url = db.url
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def reviewer(name: str, decision: str) -> None:
        own = open_database(url, migrate=False)  # each reviewer has their own connection pool
        barrier.wait()
        try:
            outcomes[name] = sign_one(own, pid, reviewer=name, decision=decision, expected_version=0)
        except SignoffError as exc:
            outcomes[name] = exc
        finally:
            own.dispose()

    threads = [threading.Thread(target=reviewer, args=a) for a in (("bob", "approve"), ("carol", "reject"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [n for n, o in outcomes.items() if not isinstance(o, Exception)]
    losses = [o for o in outcomes.values() if isinstance(o, Exception)]
    assert len(wins) == 1 and len(losses) == 1
    assert "already signed off" in str(losses[0]) or "someone else" in str(losses[0])
    with db.session() as s:
        signoffs = s.scalars(select(Signoff).where(Signoff.photo_id == pid)).all()
        assert [so.reviewer for so in signoffs] == wins and s.get(Photo, pid).version == 1
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "signoff")).all()
        assert [e.actor for e in events] == wins
    assert audit.verify(db).ok


def test_a_signoff_on_a_stale_view_is_refused(demo):
    """A reviewer who looked at version 0 cannot sign after the photo moved on, even if it is pending again."""
    cli, db, ids, _ = demo
    pid = ids["obama3.jpg"]
    cli("review", "sign", pid, "--decision", "approve", "--as", "carol")
    cli("review", "reopen", pid, "--reason", "wrong photo set")
    with pytest.raises(SignoffError, match="already signed off"):
        sign_one(db, pid, reviewer="bob", decision="approve", expected_version=0)
    assert sign_one(db, pid, reviewer="bob", decision="reject").ok
    assert [e.action for e in audit.log(db, action="signoff")] == ["signoff", "signoff.void", "signoff"]


# --- redaction ------------------------------------------------------------------------------------

def test_redact_then_sign_and_publish_the_redacted_copy(demo, tmp_path: Path, monkeypatch):
    import photocheck.redact as redact_mod

    cli, db, ids, imgs = demo
    pid = ids["biden1.jpg"]
    out = said(cli("review", "sign", pid, "--decision", "redact", expect=1))
    assert "no verified redacted copy" in out
    reads = []
    checks = redact_mod._checks
    monkeypatch.setattr(redact_mod, "_checks", lambda *a: reads.append(a[1]) or checks(*a))
    cli("redact", pid, "--out", tmp_path / "red", "--style", "pixelate")
    assert reads == [pid]  # the photo's row is read once, its result passed on
    with db.session() as s:
        red = s.scalars(select(Redaction)).one()
        face = s.get(Photo, pid).faces[0]
    assert red.style == "pixelate" and Path(red.path).is_file() and "biden" not in red.path
    box = (face.left, face.top, face.right, face.bottom)
    with Image.open(imgs / "biden1.jpg") as orig:
        before = _detail(orig.crop(box))
    with Image.open(red.path) as im:  # coarse blocks: almost no pixel-to-pixel detail left
        assert _detail(im.crop(box)) < before / 4
    cli("review", "sign", pid, "--decision", "redact")
    dest = tmp_path / "yb"
    cli("publish", "--channel", "yearbook", "--to", dest, pid)
    with Image.open(dest / f"yearbook-{pid:06d}.jpg") as out:  # the redacted copy is what went out
        assert _detail(out.crop(box)) < before / 4


def _detail(im: Image.Image) -> float:
    a = np.asarray(im.convert("L"), dtype=float)
    return float(np.abs(np.diff(a, axis=1)).mean() + np.abs(np.diff(a, axis=0)).mean())


def test_redaction_refused_when_a_listed_face_is_still_found(demo, tmp_path: Path):
    cli, db, ids, _ = demo
    pid = ids["biden1.jpg"]
    # A wrong stored box (as if the detector had misplaced it): the fill misses the face, so
    # the re-scan still finds the listed student and the copy must not be accepted.
    _sql(db, "UPDATE faces SET top=0, bottom=20, \"left\"=0, \"right\"=20 WHERE photo_id=:pid", pid=pid)
    out = said(cli("redact", pid, "--out", tmp_path / "red", expect=1))
    assert "redaction refused" in out and "still found" in out
    assert not list((tmp_path / "red").glob("*.jpg"))
    with db.session() as s:
        assert s.scalars(select(Redaction)).all() == []


def test_strict_student_cannot_be_published_even_redacted(demo, tmp_path: Path):
    cli, db, ids, _ = demo
    strict = tmp_path / "strict.csv"
    strict.write_text(HEADER + "D0001,Joseph,Biden,Demo High School,12,all,,yes\n")
    cli("roster", "import", strict)
    pid = ids["biden1.jpg"]
    assert "not even redacted" in said(cli("redact", pid, "--out", tmp_path / "r", expect=1))
    out = said(cli("review", "sign", pid, "--decision", "redact", expect=1))
    assert "must never be published" in out
    cli("review", "sign", pid, "--decision", "reject")


# --- per-channel consent -------------------------------------------------------------------------

def test_opt_out_applies_to_its_channels_until_it_expires():
    today = date(2026, 6, 1)
    assert listed_for("social", None, False, "social", today)
    assert not listed_for("social", None, False, "yearbook", today)
    assert listed_for("social", None, False, None, today)  # no channel: strictest
    assert listed_for("all", None, False, "press", today)
    assert not listed_for("all", date(2026, 5, 31), False, "web", today)  # expired
    assert listed_for("all", date(2026, 6, 1), False, "web", today)       # inclusive end
    assert listed_for("social", date(2020, 1, 1), True, "web", today)     # strict: always, everywhere
    assert listed_for("", None, False, "web", today)                       # empty never means consent


def test_social_only_opt_out_does_not_block_a_yearbook_photo(demo, tmp_path: Path):
    cli, db, ids, imgs = demo
    social = tmp_path / "social.csv"
    social.write_text(HEADER + "D0001,Joseph,Biden,Demo High School,12,social,,\n")
    cli("roster", "import", social)
    alice = Cli(cli.db_url, user="alice")
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(imgs / "biden1.jpg", one / "biden1.jpg")
    report = tmp_path / "yb.json"
    alice("scan", one, "--channel", "yearbook", "--json", report, "--jobs", "1")  # exit 0: clear for yearbook
    assert json.loads(report.read_text())["images"][0]["verdict"] == "clear"
    assert json.loads(report.read_text())["images"][0]["channel_verdicts"] == {"yearbook": "clear"}
    alice("scan", one, "--jobs", "1", "--json", report, "--csv", tmp_path / "all.csv", expect=1)  # strictest
    image = json.loads(report.read_text())["images"][0]
    assert image["verdict"] == "blocked" and image["channel_verdicts"]["social"] == "blocked"
    assert image["channel_verdicts"]["yearbook"] == "clear"
    assert "social:blocked" in (tmp_path / "all.csv").read_text(encoding="utf-8-sig")
    item = json.loads(cli("review", "list", "--scan", "3", "--json").output)[0]
    assert item["verdict"] == "blocked"
    assert item["channel_verdicts"]["social"] == "blocked" and item["channel_verdicts"]["yearbook"] == "clear"
    out = said(cli("review", "sign", item["photo_id"], "--decision", "approve"))
    assert "approved for web, yearbook, newsletter, press" in out and "social: blocked" in out
    cli("publish", "--channel", "yearbook", "--to", tmp_path / "yb", item["photo_id"])
    out = said(cli("publish", "--channel", "social", "--to", tmp_path / "so", item["photo_id"], expect=1))
    assert "not social" in out and "blocked" in out
    out = said(cli("review", "sign", "--scan", "2", "--decision", "approve", "--channel", "social", expect=1))
    assert "screened for yearbook only" in out


# --- consent changes -----------------------------------------------------------------------------

def test_newly_listed_student_flags_approved_photos_and_recheck_lists_takedowns(demo, tmp_path: Path):
    cli, db, ids, imgs = demo
    pid = ids["obama1.jpg"]
    cli("review", "sign", ids["obama1.jpg"], ids["obama3.jpg"], "--decision", "approve")
    cli("publish", "--channel", "web", "--to", tmp_path / "web", pid)
    # Obama's family withdraws consent: a new roster lists him, with a reference photo.
    roster = tmp_path / "new.csv"
    roster.write_text(HEADER + "D0001,Joseph,Biden,Demo High School,12,all,,\nD0002,Barack,Obama,Demo,12,all,,\n")
    out = said(cli("roster", "import", roster))
    assert "2 approved photo(s) flagged for re-check" in out
    refs = tmp_path / "refs" / "D0002"
    refs.mkdir(parents=True)
    shutil.copy(imgs / "obama3.jpg", refs / "obama3.jpg")
    cli("enroll", tmp_path / "refs")
    out = said(cli("publish", "--channel", "web", "--to", tmp_path / "web2", pid, expect=1))
    assert "recheck" in out  # the gate holds flagged photos back
    out = said(cli("recheck", expect=1))
    assert "TAKE DOWN" in out and f"web-{pid:06d}.jpg" in out
    assert _state(db, pid) == "pending" and _state(db, ids["obama3.jpg"]) == "pending"
    with db.session() as s:
        assert s.get(Photo, pid).verdict == "blocked" and not s.get(Photo, pid).needs_recheck
    assert said(cli("recheck")).strip() == "Nothing to re-check."


# --- audit trail ---------------------------------------------------------------------------------

def _tamper(db, sql: str) -> list[str]:
    _sql(db, *(stmt for stmt in sql.split(";") if stmt.strip()))
    return audit.verify(db).problems


def test_audit_log_records_every_step_without_encodings(demo, tmp_path: Path):
    cli, db, ids, _ = demo
    cli("review", "sign", ids["obama3.jpg"], "--decision", "approve")
    cli("publish", "--channel", "web", "--to", tmp_path / "w", ids["obama3.jpg"])
    actions = [e.action for e in audit.log(db)]
    for a in ("roster.import", "enroll", "scan.start", "scan.photo", "scan.finish", "signoff", "publish"):
        assert a in actions
    with db.session() as s:
        sha = s.get(Photo, ids["obama3.jpg"]).sha256
    mine = audit.log(db, photo_sha256=sha)
    assert [e.action for e in mine] == ["scan.photo", "signoff", "publish"]
    assert all(e.actor == "bob" for e in mine[1:])
    raw = json.dumps([e.details for e in audit.log(db)])
    assert "encoding" not in raw and "Biden" not in raw
    with db.session() as s, pytest.raises(ValueError):
        audit.record(s, actor="x", action="oops", encoding=[0.1] * 128)
    out = said(cli("audit", "verify"))
    assert "intact" in out
    assert "signoff" in said(cli("audit", "log", "--action", "signoff"))


@pytest.mark.parametrize("sql, expected", [
    ("UPDATE audit_events SET actor='mallory' WHERE seq=3;", "event 3: contents do not match"),
    ("DELETE FROM audit_events WHERE seq=4;", "event 4 missing"),
    ("DELETE FROM audit_events WHERE seq=(SELECT max(seq) FROM audit_events);", "newest events deleted"),
    ("UPDATE audit_events SET seq=-1 WHERE seq=2; UPDATE audit_events SET seq=2 WHERE seq=3;"
     "UPDATE audit_events SET seq=3 WHERE seq=-1;", "event 2: does not follow"),
])
def test_audit_verify_detects_edited_deleted_and_reordered_events(demo, sql: str, expected: str):
    cli, db, _, _ = demo
    assert audit.verify(db).ok
    problems = _tamper(db, sql)
    assert any(expected in p for p in problems), problems
    out = said(cli("audit", "verify", expect=1))
    assert "TAMPERED" in out


def test_contact_sheet_shows_signoff_state(demo, tmp_path: Path):
    cli, _, ids, _ = demo
    cli("review", "sign", ids["obama3.jpg"], "--decision", "approve", "--channel", "web")
    sheet = tmp_path / "sheet.html"
    cli("review", "list", "--scan", "1", "--html", sheet)
    html = sheet.read_text()
    assert f"photo {ids['obama3.jpg']} · sign-off: approved by bob for web" in html
    assert f"photo {ids['biden1.jpg']} · sign-off: pending" in html


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize("args", [["review"], ["review", "sign"], ["review", "list"], ["redact"], ["publish"],
                                  ["recheck"], ["audit"], ["audit", "verify"]])
def test_new_commands_help_teaches(cli, args):
    out = said(cli(*args, "--help"))
    assert "Usage" in out
    if args == ["review", "sign"]:
        assert "BLOCKED" in out and "strict" in out and "sha256" in out
    if args == ["publish"]:
        assert "EXIF" in out and "manifest" in out and "Exit status" in out


def test_migration_0002_upgrades_a_database_with_scans(db_url: str):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from photocheck.db.session import MIGRATIONS_DIR
    from photocheck.review import queue

    url = db_url
    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("INSERT INTO scans (id, owner, started_at, status, roots, thresholds, model, "
                          "roster_fingerprint) VALUES (1, 'alice', '2026-01-01', 'finished', '[]', '{}', '{}', 'x')"))
        conn.execute(text("INSERT INTO photos (scan_id, path, sha256, verdict, reasons, scanned_at, signoff_state) "
                          "VALUES (1, 'a.jpg', 'ab', 'blocked', '[]', '2026-01-01', 'pending')"))
    engine.dispose()
    db = open_database(url)
    (item,) = queue(db)
    assert item.state == "pending" and not item.needs_recheck
    assert set(item.channel_verdicts.values()) == {"blocked"}  # old photos: strictest verdict on every channel
    assert audit.verify(db).ok


def test_recheck_reads_the_redacted_copy_that_was_published(demo, tmp_path: Path):
    cli, db, ids, imgs = demo
    pid = ids["together_sideways.jpg"]  # D0001 and a second, unlisted face
    cli("redact", pid, "--out", tmp_path / "red")
    cli("review", "sign", pid, "--decision", "redact")
    cli("publish", "--channel", "press", "--to", tmp_path / "press", pid)
    roster = tmp_path / "new.csv"  # the second person's family now refuses consent too
    roster.write_text(HEADER + "D0001,Joseph,Biden,Demo High School,12,all,,\nD0002,Barack,Obama,Demo,12,all,,\n")
    cli("roster", "import", roster)
    refs = tmp_path / "refs" / "D0002"
    refs.mkdir(parents=True)
    shutil.copy(imgs / "obama3.jpg", refs / "obama3.jpg")
    cli("enroll", tmp_path / "refs")
    out = said(cli("recheck", expect=1))
    assert "redacted copy shows" in out and f"press-{pid:06d}.jpg" in out
    assert _state(db, pid) == "pending"
