"""The web review in a real browser: `photocheck serve` as a user starts it, driven by headless
Chromium (Debian's chromium through Playwright; nothing is downloaded), over the demo scanned
with the real engine. Sign-in, the evidence beside each decision, a bulk decision and a rejection
by keyboard, a blocked photo offering no approval, and a redaction, checked in the database; screenshots go to $PHOTOCHECK_SCREENSHOTS (default: a folder under pytest's tmp).

Skipped when chromium is not installed, unless PHOTOCHECK_REQUIRE_BROWSER=1 (set by .ci/run).
"""
from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from photocheck.db import open_database
from photocheck.db.models import AuditEvent, Photo, Redaction, Signoff
from photocheck.users import add_user
from tests.helpers import scan_demo

PASSWORD = "correct horse battery"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium() -> str:
    path = os.environ.get("PHOTOCHECK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        if os.environ.get("PHOTOCHECK_REQUIRE_BROWSER") == "1":
            pytest.fail(f"chromium not found at {path} and PHOTOCHECK_REQUIRE_BROWSER=1 "
                        "(install it: apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return path


@pytest.fixture
def server(demo_copy: Path, tmp_path: Path, monkeypatch):
    """`photocheck serve` on 127.0.0.1 and a free port, over the demo scanned by alice: (url, db)."""
    chromium()
    monkeypatch.setenv("PHOTOCHECK_KEY_FILE", str(tmp_path / "photocheck.key"))
    url = f"sqlite:///{tmp_path / 'photocheck.db'}"
    scan_demo(demo_copy, url, owner="alice")
    db = open_database(url)
    for name in ("alice", "bob"):
        add_user(db, name, PASSWORD, actor="admin")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from photocheck.cli import main; main()", "serve", "--host", "127.0.0.1",
         "--port", "0", "--redacted-dir", str(tmp_path / "redacted"), "--db", url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        first = lines.get(timeout=60)
        m = re.search(r"on (http://127\.0\.0\.1:\d+/)", first)
        assert m, first
        second = lines.get(timeout=10)
        assert "reachable from this machine only" in second.casefold(), second
        yield m.group(1), db
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        db.dispose()


def _pid(db, name: str) -> int:
    with db.session() as s:
        return next(p.id for p in s.scalars(select(Photo)) if Path(p.path).name == name)


@pytest.mark.enable_socket  # loopback TCP to the test server (pytest-socket blocks sockets by default)
def test_sign_in_sign_off_and_redact_in_a_real_browser(server, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    base, db = server
    shots = Path(os.environ.get("PHOTOCHECK_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    # The test process can reach the server too (and the server answers only to loopback host names).
    with urllib.request.urlopen(base + "signin", timeout=10) as r:
        assert r.status == 200 and "no-store" in r.headers["Cache-Control"]
    clear, other, blocked = _pid(db, "obama1.jpg"), _pid(db, "obama3.jpg"), _pid(db, "biden1.jpg")
    together = _pid(db, "together_sideways.jpg")

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=chromium(),
                                                    headless=True, args=CHROMIUM_ARGS,
                                                    viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(20_000)
        page = ctx.new_page()

        def shot(name: str) -> None:
            page.wait_for_load_state("load")  # images included
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        def images_loaded() -> None:  # every <img> was served (authenticated route) and decoded
            page.wait_for_load_state("load")
            for img in page.locator("img").all():
                assert img.evaluate("i => i.complete && i.naturalWidth > 0"), img.get_attribute("src")

        # Sign-in: any page sends you there; a wrong password is refused.
        page.goto(base)
        expect(page).to_have_url(re.compile(r"/signin\?next="))
        page.fill("input[name=username]", "bob")
        page.fill("input[name=password]", "not the password")
        page.click("button[type=submit]")
        expect(page.locator("#signin-error")).to_be_visible()
        shot("01-signin-refused")
        page.fill("input[name=username]", "bob")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("#whoami")).to_have_text("bob")
        shot("02-scans")

        # The contact sheet: red box on the listed student, each face beside the reference picture, in words.
        page.click("text=contact sheet")
        expect(page.locator(".box.listed").first).to_be_visible()
        expect(page.locator(".progress")).to_contain_text("Decided 0 of 4 photos")
        expect(page.locator(f"#card-{blocked} .evidence")).to_contain_text("Very likely the same person")
        images_loaded()  # photos, face crops and reference thumbnails
        assert page.locator(f"#card-{blocked} .evidence img").count() == 2
        assert page.locator("input[type=checkbox]:checked").count() == 0  # nothing pre-selected
        shot("03-contact-sheet")

        # The keyboard alone: j/k move between photos, x ticks, then one action decides the ticked photos.
        first = page.evaluate("document.activeElement.id")
        assert first.startswith("card-")  # the first photo has the focus on arrival
        page.keyboard.press("j")
        assert page.evaluate("document.activeElement.id") != first
        page.keyboard.press("k")
        assert page.evaluate("document.activeElement.id") == first
        for pid in (clear, other):
            page.focus(f"#card-{pid}")
            page.keyboard.press("x")
            expect(page.locator(f"#card-{pid} input[type=checkbox]")).to_be_checked()
        expect(page.locator("#ticked-count")).to_have_text(" — 2 ticked")
        shot("04-ticked")
        page.focus("#approve-ticked")
        page.keyboard.press("Enter")
        expect(page.locator(".flash.ok")).to_contain_text("Approved: 2 photo(s)")
        expect(page.locator(".progress")).to_contain_text("Decided 2 of 4 photos")
        shot("05-bulk-approved")
        page.focus(f"#card-{together}")
        page.keyboard.press("r")  # reject the focused photo
        expect(page.locator(".flash.ok")).to_contain_text("Signed: rejected")
        expect(page.locator(".progress")).to_contain_text("Decided 3 of 4 photos")

        # The blocked photo: its page shows the evidence and offers no "Approve as is"; it is redacted instead.
        page.goto(f"{base}photos/{blocked}")
        images_loaded()
        img = page.locator(".thumb.big img").bounding_box()
        box = page.locator(".thumb.big .box.listed").bounding_box()
        assert img["width"] > 200 and img["height"] <= 900
        assert img["x"] <= box["x"] and box["x"] + box["width"] <= img["x"] + img["width"] + 1  # on the face,
        assert img["y"] <= box["y"] and box["y"] + box["height"] <= img["y"] + img["height"] + 1  # not beside it
        expect(page.locator(".side .evidence")).to_contain_text("Very likely the same person as listed student D0001")
        assert page.locator("button[value=approve]").count() == 0
        expect(page.locator("#not-offered")).to_contain_text("never approved as is")
        shot("06-blocked-evidence")
        page.click("#redact-link")
        expect(page.locator("#preview")).to_be_visible()
        images_loaded()
        shot("07-redaction-preview")
        with db.session() as s:
            assert s.scalars(select(Redaction)).all() == []  # the preview saved nothing
        page.click("#confirm-redact", timeout=120_000)  # loads the face engine and re-scans the copy
        expect(page.locator(".flash.ok").last).to_contain_text("approved in redacted form", timeout=120_000)
        shot("08-redacted")

        page.goto(f"{base}audit")
        expect(page.locator("text=Chain intact")).to_be_visible()
        shot("09-audit-log")
        page.click("text=Sign out")
        expect(page).to_have_url(re.compile(r"/signin"))
        ctx.close()

    with db.session() as s:
        states = {pid: s.get(Photo, pid).signoff_state for pid in (clear, other, together, blocked)}
        signoffs = {so.photo_id: so for so in s.scalars(select(Signoff))}
        red = s.scalars(select(Redaction)).one()
        actions = [e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.actor == "bob")
                                                  .order_by(AuditEvent.seq))]
    assert states == {clear: "approved", other: "approved", together: "rejected", blocked: "redacted"}
    assert {(signoffs[p].reviewer, signoffs[p].decision) for p in (clear, other)} == {("bob", "approve")}
    assert (signoffs[blocked].reviewer, signoffs[blocked].decision, signoffs[blocked].redaction_id) == \
        ("bob", "redact", red.id)
    assert Path(red.path).is_file() and red.path.startswith(str(tmp_path / "redacted"))
    assert actions == ["web.signin.failed", "web.signin", "signoff", "signoff", "signoff", "redact", "signoff",
                       "web.signout"]
    assert len(list(shots.glob("*.png"))) >= 9
