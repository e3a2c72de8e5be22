"""The web review (Flask test client) over the real library, engine and SQLite database.

The demo is scanned once per module by "alice"; each test gets its own copy of the database
and photos. "bob" is the second person; "alice" has an account too, to show she cannot sign
off her own scan from the browser either.
"""
from __future__ import annotations

import io
import re
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from photocheck.db import open_database
from photocheck.db.models import AuditEvent, Photo, Redaction, Signoff, User
from photocheck.users import add_user
from photocheck.web import create_app, load_secret_key
from tests.helpers import REPO, Cli, scan_demo

PASSWORD = "correct horse battery"
HEADER = "student_id,first_name,last_name,campus,grade,opt_out,opt_out_until,strict\n"


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("webgolden")
    shutil.copytree(REPO / "roster", root / "roster")
    shutil.copytree(REPO / "sample_images", root / "sample_images")
    (root / "sample_images" / "SOURCES.md").unlink()
    url = f"sqlite:///{root / 'db.sqlite'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHOTOCHECK_KEY_FILE", str(root / "photocheck.key"))
        scan_demo(root, url, owner="alice")
        db = open_database(url)
        for name in ("alice", "bob"):
            add_user(db, name, PASSWORD, display_name=name.title(), actor="admin")
        db.dispose()
    return root


@pytest.fixture
def site(golden: Path, tmp_path: Path, monkeypatch):
    """(app, db, photo ids by file name, root) on a private copy of the scanned demo."""
    root = tmp_path / "demo"
    shutil.copytree(golden, root)
    monkeypatch.setenv("PHOTOCHECK_KEY_FILE", str(root / "photocheck.key"))
    con = sqlite3.connect(root / "db.sqlite")
    con.execute("UPDATE photos SET path = replace(path, ?, ?)", (str(golden), str(root)))
    con.commit()
    con.close()
    url = f"sqlite:///{root / 'db.sqlite'}"
    app = create_app(url, secret_key=b"k" * 32, redact_dir=root / "redacted")
    db = app.extensions["photocheck_db"]
    with db.session() as s:
        ids = {Path(p.path).name: p.id for p in s.scalars(select(Photo))}
    yield app, db, ids, root
    db.dispose()


def token(page: bytes) -> str:
    m = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert m, "no CSRF token in the page"
    return m.group(1).decode()


def signed_in(app, user: str = "bob", password: str = PASSWORD):
    client = app.test_client()
    t = token(client.get("/signin").data)
    r = client.post("/signin", data={"username": user, "password": password, "csrf_token": t})
    assert r.status_code == 303, r.data
    return client


def post_form(client, url: str, page_url: str, **data):
    """POST a form the way a browser does: with the CSRF token of the page it is on."""
    data["csrf_token"] = token(client.get(page_url).data)
    return client.post(url, data=data, follow_redirects=True)


def sign(client, pid: int, decision: str, **extra):
    """POST a decision on a photo, as its page's form would (or as a hand-made POST would, when the
    page offers no form: the photo's first version)."""
    page = client.get(f"/photos/{pid}").data
    m = re.search(rb'name="version" value="(\d+)"', page)
    version = m.group(1).decode() if m else "0"
    return client.post(f"/photos/{pid}/sign", data={"decision": decision, "version": version,
                                                    "csrf_token": token(page), **extra}, follow_redirects=True)


def state(db, pid: int) -> str:
    with db.session() as s:
        return s.get(Photo, pid).signoff_state


def text(resp) -> str:
    """The page's words as a reader sees them: tags dropped, white space collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", resp.get_data(as_text=True)).split())


# --- sign-in and session ------------------------------------------------------------------------

ROUTES = ["/", "/scans/1", "/scans/1/sheet", "/photos/1", "/photos/1/redact", "/photos/1/image.jpg",
          "/photos/1/preview.jpg", "/audit"]


@pytest.mark.parametrize("url", ROUTES)
def test_every_page_needs_a_session(site, url):
    app, *_ = site
    r = app.test_client().get(url)
    assert r.status_code == 302 and r.headers["Location"].startswith("/signin?next=")


def test_posts_without_a_session_change_nothing(site):
    app, db, ids, _ = site
    client = app.test_client()
    t = token(client.get("/signin").data)  # a valid token, but no one signed in
    pid = ids["obama1.jpg"]
    r = client.post(f"/photos/{pid}/sign", data={"decision": "approve", "version": "0", "csrf_token": t})
    assert r.status_code == 401
    assert state(db, pid) == "pending"


def test_sign_in_wrong_password_disabled_account_and_sign_out_are_audited(site):
    app, db, _, _ = site
    client = app.test_client()
    t = token(client.get("/signin").data)
    r = client.post("/signin", data={"username": "bob", "password": "wrong password!", "csrf_token": t})
    assert r.status_code == 401 and "Wrong username or password" in text(r)
    r = client.post("/signin", data={"username": "Mallory-typed-a-secret", "password": "x", "csrf_token": t})
    assert r.status_code == 401
    client = signed_in(app, "BOB")  # usernames are case-insensitive
    r = client.get("/")
    assert r.status_code == 200 and '<strong id="whoami">bob</strong>' in r.get_data(as_text=True)
    r = post_form(client, "/signout", "/")
    assert "Sign in" in text(r)
    assert client.get("/").status_code == 302
    with db.session() as s:
        events = [(e.actor, e.action) for e in s.scalars(select(AuditEvent).where(AuditEvent.action.like("web.%"))
                                                         .order_by(AuditEvent.seq))]
    assert events == [("bob", "web.signin.failed"), ("(unknown)", "web.signin.failed"),
                      ("bob", "web.signin"), ("bob", "web.signout")]  # never the text typed for an unknown user


def test_disabling_an_account_or_changing_its_password_ends_its_sessions(site):
    from photocheck.users import set_disabled, set_password

    app, db, _, _ = site
    client = signed_in(app)
    assert client.get("/").status_code == 200
    set_password(db, "bob", "another long password", actor="admin")
    assert client.get("/").status_code == 302
    client = signed_in(app, password="another long password")
    set_disabled(db, "bob", True, actor="admin")
    assert client.get("/").status_code == 302
    client = app.test_client()
    t = token(client.get("/signin").data)
    r = client.post("/signin", data={"username": "bob", "password": "another long password", "csrf_token": t})
    assert r.status_code == 401


def test_session_cookie_is_httponly_and_samesite_lax_and_pages_forbid_framing(site):
    app, *_ = site
    client = app.test_client()
    t = token(client.get("/signin").data)
    r = client.post("/signin", data={"username": "bob", "password": PASSWORD, "csrf_token": t})
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_sign_in_redirects_only_within_the_site(site):
    app, *_ = site
    client = app.test_client()
    for target, expected in (("/audit", "/audit"), ("//evil.example/x", "/"), ("https://evil.example/", "/")):
        t = token(client.get("/signin").data)
        r = client.post(f"/signin?next={target}", data={"username": "bob", "password": PASSWORD, "csrf_token": t})
        assert r.headers["Location"] == expected


def test_a_post_without_csrf_token_is_rejected(site):
    app, db, ids, _ = site
    client = signed_in(app)
    pid = ids["obama1.jpg"]
    r = client.post(f"/photos/{pid}/sign", data={"decision": "approve", "version": "0"})
    assert r.status_code == 400 and "CSRF" in text(r)
    r = client.post(f"/photos/{pid}/sign", data={"decision": "approve", "version": "0", "csrf_token": "forged"})
    assert r.status_code == 400
    r = client.post("/signout")
    assert r.status_code == 400
    assert state(db, pid) == "pending"
    assert client.get("/").status_code == 200  # still signed in: the forged sign-out did nothing


def test_only_loopback_host_names_are_accepted_when_serving_on_loopback(site):
    from photocheck.web.app import LOOPBACK_HOSTS

    app, db, _, root = site
    local = create_app(db.url, secret_key=b"k" * 32, trusted_hosts=LOOPBACK_HOSTS)
    client = local.test_client()
    assert client.get("/signin", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert client.get("/signin", headers={"Host": "[::1]:8765"}).status_code == 200
    assert client.get("/signin", headers={"Host": "LOCALHOST"}).status_code == 200
    for evil in ("rebound.evil.example:8765", "localhost.evil.example", "127.0.0.1.evil.example:8765", ""):
        assert client.get("/signin", headers={"Host": evil}).status_code == 400, evil
    assert client.post("/signin", headers={"Host": "rebound.evil.example"}).status_code == 400


def test_session_secret_is_made_once_and_kept_0600(_photocheck_home):
    key = load_secret_key()
    path = _photocheck_home / "web-secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 32
    assert load_secret_key() == key
    path.chmod(0o644)
    assert load_secret_key() == key and stat.S_IMODE(path.stat().st_mode) == 0o600


# --- the rules, enforced by the library behind the pages --------------------------------------------

def test_the_person_who_ran_the_scan_cannot_sign_it_off(site):
    app, db, ids, _ = site
    client = signed_in(app, "alice")
    pid = ids["obama1.jpg"]
    assert "a second person must sign off" in text(client.get(f"/photos/{pid}"))
    sheet = client.get("/scans/1/sheet").get_data(as_text=True)
    assert buttons(client, f"/photos/{pid}") == set() and 'name="photo"' not in sheet and 'name="decision"' not in sheet
    r = sign(client, pid, "approve")
    assert "Refused: alice ran scan 1: a second person must sign off its photos" in text(r)
    assert state(db, pid) == "pending"


def test_a_second_person_approves_a_clear_photo(site):
    app, db, ids, _ = site
    client = signed_in(app)
    pid = ids["obama1.jpg"]
    r = sign(client, pid, "approve", note="checked")
    assert "Signed: approved for web, social, yearbook, newsletter, press" in text(r)
    with db.session() as s:
        so = s.scalars(select(Signoff).where(Signoff.photo_id == pid)).one()
    assert (so.reviewer, so.decision, so.note) == ("bob", "approve", "checked")
    assert state(db, pid) == "approved"
    assert 'name="decision"' not in client.get(f"/photos/{pid}").get_data(as_text=True)  # no form any more
    # A replayed POST is refused by the library.
    r = client.post(f"/photos/{pid}/sign", data={"decision": "reject", "version": "0",
                                                 "csrf_token": token(client.get("/").data)}, follow_redirects=True)
    assert "already signed off by bob" in text(r) and state(db, pid) == "approved"


def buttons(client, url: str) -> set[str]:
    """The decisions a page offers as buttons, and whether it links to Redact…"""
    body = client.get(url).get_data(as_text=True)
    found = set(re.findall(r'<button type="submit" name="decision" value="(\w+)"', body))
    return found | ({"redact-link"} if "/redact\"" in body else set())


def test_a_blocked_photo_is_never_approved_as_is(site):
    app, db, ids, _ = site
    client = signed_in(app)
    pid = ids["biden1.jpg"]
    assert buttons(client, f"/photos/{pid}") == {"reject", "redact-link"}  # no "Approve as is" on offer
    page = text(client.get(f"/photos/{pid}"))
    assert "Not offered here: Approve as is — photo" in page and "never approved as is" in page
    # A hand-made (or stale) POST is refused, in words naming what the page offers, not a command.
    for extra in ({}, {"channel": "web"}):
        r = text(sign(client, pid, "approve", **extra))
        assert "Refused: photo" in r and "never approved as is" in r and "use Redact…" in r, r
        assert "photocheck redact" not in r and state(db, pid) == "pending"
    r = text(sign(client, pid, "redact"))
    assert "no verified redacted copy yet: use Redact…" in r and state(db, pid) == "pending"
    r = sign(client, pid, "reject")
    assert "Signed: rejected" in text(r) and state(db, pid) == "rejected"
    assert buttons(client, f"/photos/{pid}") == set()


def test_each_page_offers_only_what_the_rules_accept(site):
    app, db, ids, root = site
    bob, alice = signed_in(app), signed_in(app, "alice")
    clear, other = ids["obama1.jpg"], ids["obama3.jpg"]
    assert buttons(bob, f"/photos/{clear}") == {"approve", "reject"}  # nothing to redact on a clear photo
    assert buttons(alice, f"/photos/{clear}") == set()  # her own scan: nothing to decide
    assert buttons(alice, f"/photos/{ids['biden1.jpg']}") == {"redact-link"}  # she may make the copy only
    with db.session() as s:
        path = Path(s.get(Photo, other).path)
    path.write_bytes(path.read_bytes() + b"\0")  # changed since the scan: it can only be rejected now
    assert buttons(bob, f"/photos/{other}") == {"reject"}
    assert "The file has changed or gone since it was scanned" in text(bob.get(f"/photos/{other}"))
    with db.session() as s:
        s.get(Photo, clear).needs_recheck = True
    assert buttons(bob, f"/photos/{clear}") == {"reject"}
    assert "A roster change may concern this photo" in text(bob.get(f"/photos/{clear}"))
    with db.session() as s:  # a photo that could not be screened: reject only, nothing to redact
        p = s.get(Photo, ids["together_sideways.jpg"])
        p.verdict, p.sha256, p.error, p.channel_verdicts = "error", None, "cannot decode", "{}"
    assert buttons(bob, f"/photos/{ids['together_sideways.jpg']}") == {"reject"}
    r = text(sign(bob, ids["together_sideways.jpg"], "approve"))
    assert "could not be screened: it can only be rejected" in r
    sheet = bob.get("/scans/1/sheet").get_data(as_text=True)  # the cards offer the same
    card = sheet[sheet.index(f'id="card-{ids["biden1.jpg"]}"'):]
    card = card[:card.index("</article>")]
    assert 'value="reject"' in card and 'value="approve"' not in card and "/redact" in card


def test_a_strict_student_is_never_published_not_even_redacted(site, tmp_path: Path):
    app, db, ids, _ = site
    strict = tmp_path / "strict.csv"
    strict.write_text(HEADER + "D0001,Joseph,Biden,Demo High School,12,all,,yes\n")
    Cli(db.url, user="alice")("roster", "import", strict)
    client = signed_in(app)
    pid = ids["biden1.jpg"]
    assert buttons(client, f"/photos/{pid}") == {"reject"}  # no approval, no redaction on offer
    assert "not even redacted" in text(client.get(f"/photos/{pid}"))
    page = client.get(f"/photos/{pid}/redact")
    assert "not even redacted" in text(page) and "confirm-redact" not in page.get_data(as_text=True)
    assert client.get(f"/photos/{pid}/preview.jpg").status_code == 404
    r = post_form(client, f"/photos/{pid}/redact", f"/photos/{pid}", style="fill", version="0")
    assert "Redaction refused" in text(r) and "not even redacted" in text(r)
    r = sign(client, pid, "approve")
    assert "Refused" in text(r) and state(db, pid) == "pending"
    with db.session() as s:
        assert s.scalars(select(Redaction)).all() == []


def test_redaction_preview_saves_nothing_and_confirming_signs_off_the_verified_copy(site):
    app, db, ids, root = site
    client = signed_in(app)
    pid = ids["biden1.jpg"]
    page = client.get(f"/photos/{pid}/redact?style=pixelate")
    assert page.status_code == 200 and "confirm-redact" in page.get_data(as_text=True)
    img = client.get(f"/photos/{pid}/preview.jpg?style=pixelate")
    assert img.status_code == 200 and img.headers["Content-Type"] == "image/jpeg"
    Image.open(io.BytesIO(img.data)).verify()
    with db.session() as s:
        assert s.scalars(select(Redaction)).all() == []  # a preview records nothing
    assert not (root / "redacted").exists()
    r = post_form(client, f"/photos/{pid}/redact", f"/photos/{pid}/redact?style=pixelate",
                  style="pixelate", version="0", note="face covered")
    assert "Redacted copy verified" in text(r) and "Signed: approved in redacted form" in text(r)
    with db.session() as s:
        red = s.scalars(select(Redaction)).one()
        so = s.scalars(select(Signoff).where(Signoff.photo_id == pid)).one()
    assert red.style == "pixelate" and Path(red.path).parent == root / "redacted" and red.created_by == "bob"
    assert (so.decision, so.redaction_id, so.reviewer) == ("redact", red.id, "bob")
    assert state(db, pid) == "redacted"


def test_the_scanner_may_make_a_redacted_copy_but_not_sign_it(site):
    app, db, ids, _ = site
    client = signed_in(app, "alice")
    pid = ids["biden1.jpg"]
    r = post_form(client, f"/photos/{pid}/redact", f"/photos/{pid}/redact", style="fill", version="0")
    assert "Redacted copy verified" in text(r) and "Refused: alice ran scan 1" in text(r)
    assert state(db, pid) == "pending"
    bob = signed_in(app)
    assert "Approve the verified redacted copy" in text(bob.get(f"/photos/{pid}"))
    r = sign(bob, pid, "redact")
    assert "approved in redacted form" in text(r) and state(db, pid) == "redacted"


# --- evidence beside each decision ----------------------------------------------------------------

def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and not p.name.startswith("db.sqlite")}


def test_evidence_shows_each_face_beside_the_reference_picture_with_the_distance_in_words(site):
    from photocheck.thresholds import load_thresholds

    app, db, ids, root = site
    client = signed_in(app)
    before = _files(root)
    pid = ids["biden1.jpg"]
    body = client.get(f"/photos/{pid}").get_data(as_text=True)
    crop = re.search(r'src="(/faces/(\d+)/crop\.jpg)"', body)
    ref = re.search(r'src="(/faces/\d+/reference\.jpg)"', body)
    assert crop and ref, "the face and the reference picture are side by side"
    m = load_thresholds().match  # the words come from models/thresholds.toml, as the scan used them
    page = text(client.get(f"/photos/{pid}"))
    assert "Very likely the same person as listed student D0001" in page
    assert f"at or below {m.block_distance:.2f} counts as the same person, up to {m.review_distance:.2f}" in page
    for url, px in ((crop.group(1), 160), (ref.group(1), 128)):
        r = client.get(url)
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
        with Image.open(io.BytesIO(r.data)) as im:
            assert max(im.size) == px
    assert "Very likely the same person" in text(client.get("/scans/1/sheet"))  # on the contact sheet too
    assert "/faces/" not in client.get(f"/photos/{ids['obama1.jpg']}").get_data(as_text=True)  # nothing to weigh
    assert _files(root) == before  # crops are cut on demand: no copy of an event photo is written
    assert app.test_client().get(crop.group(1)).status_code == 302  # signed-in reviewers only
    Cli(db.url, user="admin")("forget", "D0001")
    assert client.get(ref.group(1)).status_code == 404
    assert "no reference picture kept" in text(client.get(f"/photos/{pid}"))
    assert client.get("/faces/9999/crop.jpg").status_code == 404


def test_distances_in_the_review_band_could_be_the_same_person(site):
    app, db, ids, _ = site
    from photocheck.db.models import Face
    from photocheck.thresholds import load_thresholds

    m = load_thresholds().match
    pid = ids["obama1.jpg"]
    with db.session() as s:  # as if the scan had found obama1's face in the review band of D0001
        f = s.scalars(select(Face).where(Face.photo_id == pid)).first()
        f.status, f.candidate_id, f.distance = "uncertain", "D0001", (m.block_distance + m.review_distance) / 2
        s.get(Photo, pid).verdict = "review"
    page = text(signed_in(app).get(f"/photos/{pid}"))
    assert "Could be the same person as listed student D0001" in page


# --- deciding many at once ------------------------------------------------------------------------

def test_a_contact_sheet_decides_the_ticked_photos_each_on_its_own(site):
    app, db, ids, _ = site
    client = signed_in(app)
    body = client.get("/scans/1/sheet").get_data(as_text=True)
    assert "Decided 0 of 4 photos" in text(client.get("/scans/1/sheet"))
    ticks = re.findall(r'<input type="checkbox" form="bulk" name="photo"\s+value="(\d+):(\d+)"( checked)?', body)
    assert {int(pid) for pid, _, _ in ticks} == {ids["obama1.jpg"], ids["obama3.jpg"]}  # the clear photos only
    assert not any(checked for *_, checked in ticks)  # nothing pre-selected
    r = client.post("/scans/1/sign-selected", data={"decision": "approve", "csrf_token": token(body.encode())},
                    follow_redirects=True)
    assert "No photo selected" in text(r) and state(db, ids["obama1.jpg"]) == "pending"
    with db.session() as s:  # one of them changed on disk after the page was shown
        path = Path(s.get(Photo, ids["obama3.jpg"]).path)
    path.write_bytes(path.read_bytes() + b"\0")
    # ...and a blocked photo slipped into the selection by hand: each is refused on its own
    picked = [f"{pid}:{v}" for pid, v, _ in ticks] + [f"{ids['biden1.jpg']}:0"]
    r = client.post("/scans/1/sign-selected", data={"decision": "approve", "photo": picked,
                                                     "csrf_token": token(body.encode())}, follow_redirects=True)
    page = text(r)
    assert f"Approved: 1 photo(s) ({ids['obama1.jpg']})" in page
    assert f"Refused photo {ids['obama3.jpg']}:" in page and "has changed since it was scanned" in page
    assert f"Refused photo {ids['biden1.jpg']}: photo {ids['biden1.jpg']} is blocked" in page
    assert "Decided 1 of 4 photos" in page  # back on the sheet, progress moved
    assert [state(db, ids[n]) for n in ("obama1.jpg", "obama3.jpg", "biden1.jpg")] == \
        ["approved", "pending", "pending"]
    with db.session() as s:
        so = s.scalars(select(Signoff).where(Signoff.photo_id == ids["obama1.jpg"])).one()
    assert (so.reviewer, so.decision) == ("bob", "approve")
    # a stale page: the same selection again is refused, not decided twice
    r = client.post("/scans/1/sign-selected", data={"decision": "reject", "photo": picked[:1],
                                                     "csrf_token": token(body.encode())}, follow_redirects=True)
    assert "already signed off by bob" in text(r) and state(db, ids["obama1.jpg"]) == "approved"


def test_a_burst_group_is_decided_in_one_action_and_a_blocked_group_only_rejected(site):
    app, db, ids, _ = site
    with db.session() as s:  # same dHash: obama1+obama3 one clear burst, biden1+together one blocked burst
        for names, h in ((("obama1.jpg", "obama3.jpg"), "00ff00ff00ff00ff"),
                         (("biden1.jpg", "together_sideways.jpg"), "ff00ff00ff00ff00")):
            for n in names:
                s.get(Photo, ids[n]).phash = h
    client = signed_in(app)
    body = client.get("/scans/1/sheet").get_data(as_text=True)
    forms = re.findall(r'<form method="post" class="group-decide" action="(/scans/1/groups/(\d+)/sign)">(.*?)</form>',
                       body, re.S)
    assert len(forms) == 2
    by_verdict = {}
    for url, _, inner in forms:
        pids = {int(p) for p in re.findall(r'name="photo" value="(\d+):\d+"', inner)}
        by_verdict["clear" if ids["obama1.jpg"] in pids else "blocked"] = (url, inner, pids)
    url, inner, pids = by_verdict["blocked"]
    assert 'value="approve"' not in inner and 'value="reject"' in inner and "one by one" in inner
    versions = re.findall(r'name="photo" value="(\d+:\d+)"', inner)
    r = client.post(url, data={"decision": "approve", "photo": versions, "csrf_token": token(body.encode())},
                    follow_redirects=True)  # a hand-made POST: the library refuses it
    assert "holds a blocked photo" in text(r) and all(state(db, p) == "pending" for p in pids)
    url, inner, pids = by_verdict["clear"]
    assert 'value="approve"' in inner and pids == {ids["obama1.jpg"], ids["obama3.jpg"]}
    versions = re.findall(r'name="photo" value="(\d+:\d+)"', inner)
    r = client.post(url, data={"decision": "approve", "photo": versions, "csrf_token": token(body.encode())},
                    follow_redirects=True)
    assert "Approved: 2 photo(s)" in text(r) and all(state(db, p) == "approved" for p in pids)
    url, inner, pids = by_verdict["blocked"]
    versions = re.findall(r'name="photo" value="(\d+:\d+)"', inner)
    r = client.post(url, data={"decision": "reject", "photo": versions, "csrf_token": token(body.encode())},
                    follow_redirects=True)
    assert "Rejected: 2 photo(s)" in text(r) and all(state(db, p) == "rejected" for p in pids)
    assert "Decided 4 of 4 photos" in text(r)


def test_a_decision_on_a_card_comes_back_to_the_sheet_at_the_next_photo(site):
    app, db, ids, _ = site
    client = signed_in(app)
    body = client.get("/scans/1/sheet").get_data(as_text=True)
    pid = ids["biden1.jpg"]
    card = body[body.index(f'id="card-{pid}"'):]
    nxt = re.search(r'name="next" value="([^"]+)"', card).group(1)
    assert nxt.startswith("/scans/1/sheet#card-")
    r = client.post(f"/photos/{pid}/sign", data={"decision": "reject", "version": "0", "next": nxt,
                                                  "csrf_token": token(body.encode())})
    assert r.status_code == 303 and r.headers["Location"] == nxt and state(db, pid) == "rejected"
    r = client.post(f"/photos/{ids['obama1.jpg']}/sign", data={"decision": "reject", "version": "0",
                                                                "next": "https://evil.example/",
                                                                "csrf_token": token(body.encode())})
    assert r.headers["Location"] == f"/photos/{ids['obama1.jpg']}"  # never an open redirect


def test_pages_load_only_their_own_script(site):
    app, *_ = site
    r = signed_in(app).get("/scans/1/sheet")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert re.findall(r"<script[^>]*>", r.get_data(as_text=True)) == [
        '<script src="/static/review.js" defer>']  # no inline script, which the policy would block


# --- the pages --------------------------------------------------------------------------------------

def test_pages_show_the_queue_sheet_photo_and_audit_log_without_names(site):
    app, db, ids, _ = site
    client = signed_in(app)
    pages = {}
    pages["scans"] = client.get("/")
    pages["queue"] = client.get("/scans/1")
    pages["queue_web_all"] = client.get("/scans/1?channel=web&state=all")
    pages["sheet"] = client.get("/scans/1/sheet?state=all")
    pages["photo"] = client.get(f"/photos/{ids['biden1.jpg']}")
    sign(client, ids["obama1.jpg"], "approve")
    pages["audit"] = client.get("/audit")
    for name, r in pages.items():
        body = r.get_data(as_text=True)
        assert r.status_code == 200, name
        assert "Biden" not in body and "Joseph" not in body, f"{name} shows a student's name"
    assert "alice" in text(pages["scans"]) and "contact sheet" in text(pages["scans"])
    queue = text(pages["queue"])
    assert queue.index("biden1.jpg") < queue.index("obama1.jpg")  # blocked first
    assert f"photo {ids['obama1.jpg']}" in text(pages["queue_web_all"])
    sheet = pages["sheet"].get_data(as_text=True)
    assert sheet.count('class="box listed') >= 2  # red boxes on the two blocked photos
    assert f'src="/photos/{ids["biden1.jpg"]}/image.jpg?size=thumb"' in sheet
    assert "D0001" in text(pages["photo"]) and 'class="box listed' in pages["photo"].get_data(as_text=True)
    audit_page = text(pages["audit"])
    assert "Chain intact" in audit_page and "signoff" in audit_page and "web.signin" in audit_page
    assert client.get("/scans/99").status_code == 404 and client.get("/photos/9999").status_code == 404


def test_queue_shows_burst_groups(site):
    app, db, ids, _ = site
    with db.session() as s:  # two photos with the same dHash: one burst group
        for p in s.scalars(select(Photo).where(Photo.id.in_([ids["obama1.jpg"], ids["obama3.jpg"]]))):
            p.phash = "00ff00ff00ff00ff"
    r = text(signed_in(app).get("/scans/1?state=all"))
    assert "Burst group" in r and "2 near-identical photos" in r


def test_images_are_served_downscaled(site):
    app, db, ids, root = site
    client = signed_in(app)
    pid = ids["obama1.jpg"]
    for size, px in (("thumb", 480), ("page", 1600)):
        r = client.get(f"/photos/{pid}/image.jpg?size={size}")
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
        with Image.open(io.BytesIO(r.data)) as im:
            assert max(im.size) <= px
            assert not im.getexif()  # the original's metadata does not travel
    assert client.get(f"/photos/{pid}/image.jpg?size=original").status_code == 404


# --- the CLI ------------------------------------------------------------------------------------------

@pytest.mark.backends("sqlite", "postgresql")
def test_user_commands(cli, db_url):
    from photocheck.cli import app

    r = cli.runner.invoke(app, ["user", "add", "Carol", "--name", "Carol C.", "--password-stdin"],
                          input="a long enough password\n", env={"PHOTOCHECK_DB": db_url, "PHOTOCHECK_USER": "admin"})
    assert r.exit_code == 0, r.output
    db = open_database(db_url)
    with db.session() as s:
        u = s.scalars(select(User)).one()
    assert u.username == "carol" and u.password_hash.startswith("$argon2id$")
    assert "a long enough password" not in u.password_hash
    listing = cli("user", "list").output
    assert "carol" in listing and "Carol C." in listing and "argon2" not in listing
    assert "already exists" in cli("user", "add", "carol", "--password-stdin", expect=2).output
    cli("user", "disable", "carol")
    assert "disabled" in cli("user", "list").output
    cli("user", "disable", "carol", "--enable")
    assert "no user 'dave'" in cli("user", "disable", "dave", expect=2).output
    from photocheck.users import authenticate
    assert authenticate(db, "carol", "a long enough password") is not None
    with db.session() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
    assert actions == ["user.add", "user.disable", "user.enable", "web.signin"]


@pytest.mark.backends("sqlite", "postgresql")
def test_user_passwords_are_checked_and_never_arguments(cli, db_url):
    from photocheck.cli import app

    env = {"PHOTOCHECK_DB": db_url, "PHOTOCHECK_USER": "admin"}
    r = cli.runner.invoke(app, ["user", "add", "dan", "--password-stdin"], input="short\n", env=env)
    assert r.exit_code == 2 and "at least 10 characters" in r.output
    r = cli.runner.invoke(app, ["user", "add", "dan"], input="first password\nsecond password\n", env=env)
    assert r.exit_code != 0  # typed twice, and they differ
    r = cli.runner.invoke(app, ["user", "add", "dan"], input="same password 1\nsame password 1\n", env=env)
    assert r.exit_code == 0, r.output
    assert "same password 1" not in r.output  # the prompt hides it
    r = cli.runner.invoke(app, ["user", "add", "erin", "--password", "x"], env=env)
    assert r.exit_code == 2  # there is no such option
    r = cli.runner.invoke(app, ["user", "passwd", "dan", "--password-stdin"], input="a new password!\n", env=env)
    assert r.exit_code == 0, r.output
    r = cli.runner.invoke(app, ["user", "add", "bad name!", "--password-stdin"], input="long password 1\n", env=env)
    assert r.exit_code == 2 and "not a valid username" in r.output


def test_serve_help_says_it_binds_to_this_machine_only(cli):
    out = " ".join(cli("serve", "--help").output.split())
    assert "127.0.0.1" in out and "8765" in out and "this machine only" in out


def test_loopback_detection():
    from photocheck.cli.serve_cmd import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.10", "example.org"]))


def test_redacting_from_the_contact_sheet_leads_back_to_it(site):
    from urllib.parse import unquote

    app, db, ids, _ = site
    client = signed_in(app)
    pid = ids["biden1.jpg"]
    body = client.get("/scans/1/sheet").get_data(as_text=True)
    card = body[body.index(f'id="card-{pid}"'):]
    href = re.search(r'href="(/photos/\d+/redact\?next=[^"]+)"', card).group(1)
    assert unquote(href.split("next=")[1]) == "/scans/1/sheet"
    page = client.get(href.replace("&amp;", "&"))
    assert 'name="next" value="/scans/1/sheet"' in page.get_data(as_text=True)
    r = client.post(f"/photos/{pid}/redact", data={"style": "fill", "version": "0", "next": "/scans/1/sheet",
                                                    "csrf_token": token(page.data)})
    assert r.status_code == 303 and unquote(r.headers["Location"]) == f"/photos/{pid}?next=/scans/1/sheet"
    assert state(db, pid) == "redacted"
    assert "back to the contact sheet" in text(client.get(r.headers["Location"]))
