"""Burst groups in the sign-off queue: one decision per group, never hiding a blocked photo.

Real engine, real database: the demo photos plus a burst copy of two of them (shifted a few
pixels and brighter, as the next frame of a burst would be).
"""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, update

from photocheck.db import open_database
from photocheck.db.models import Photo
from photocheck.review import (
    GroupRefused,
    SignoffError,
    decision_options,
    distance_words,
    face_crop,
    face_evidence,
    face_reference,
    queue,
    sign,
    sign_group,
    sign_selected,
)
from photocheck.thresholds import load_thresholds
from tests.helpers import REPO, Cli

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def _burst_copy(src: Path, dest: Path) -> None:
    a = np.asarray(Image.open(src).convert("RGB")).astype(np.int16)
    Image.fromarray(np.clip(a[:, 6:] + 5, 0, 255).astype(np.uint8)).save(dest, quality=92)


@pytest.fixture
def bursts(tmp_path: Path, db_url: str):
    """alice scanned obama1 + its burst frame, biden1 + its burst frame, obama3 (alone)."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in ("obama1.jpg", "obama3.jpg", "biden1.jpg"):
        shutil.copy(REPO / "sample_images" / name, imgs / name)
    _burst_copy(imgs / "obama1.jpg", imgs / "obama1_b.jpg")
    _burst_copy(imgs / "biden1.jpg", imgs / "biden1_b.jpg")
    alice = Cli(db_url, user="alice")
    alice("roster", "import", REPO / "roster" / "no_consent.csv")
    alice("enroll", REPO / "roster" / "photos")
    alice("scan", imgs, "--jobs", "1", "--json", tmp_path / "r.json", expect=1)
    db = open_database(db_url)
    yield Cli(db_url, user="bob"), db, json.loads((tmp_path / "r.json").read_text())
    db.dispose()


def _by_name(items) -> dict:
    return {Path(i["path"]).name: i for i in items}


def test_queue_keeps_bursts_together_with_the_groups_of_the_report(bursts):
    bob, _, report = bursts
    items = json.loads(bob("review", "list", "--json").output)
    q = _by_name(items)
    assert q["obama1.jpg"]["group"] == q["obama1_b.jpg"]["group"] and q["obama1.jpg"]["group_size"] == 2
    assert q["biden1.jpg"]["group"] == q["biden1_b.jpg"]["group"] != q["obama1.jpg"]["group"]
    assert q["obama3.jpg"]["group_size"] == 1
    assert q["biden1_b.jpg"]["verdict"] == "blocked" and q["biden1.jpg"]["group_verdict"] == "blocked"
    # same numbering as the scan's own report
    rep = {Path(i["path"]).name: i["group"] for i in report["images"]}
    assert {n: i["group"] for n, i in q.items()} == rep
    # the blocked burst comes first, its two frames next to each other
    names = [Path(i["path"]).name for i in items]
    assert set(names[:2]) == {"biden1.jpg", "biden1_b.jpg"}
    i, j = names.index("obama1.jpg"), names.index("obama1_b.jpg")
    assert abs(i - j) == 1
    table = " ".join(bob("review", "list").output.split())
    assert "group" in table


def test_one_decision_signs_a_whole_burst(bursts):
    bob, db, _ = bursts
    q = _by_name(json.loads(bob("review", "list", "--json").output))
    group = q["obama1.jpg"]["group"]
    out = bob("review", "sign", "--scan", "1", "--group", group, "--decision", "approve").output
    assert "2 signed, 0 refused" in " ".join(out.split())
    after = _by_name([vars(i) for i in queue(db, scan_id=1, states=None)])
    assert after["obama1.jpg"]["state"] == after["obama1_b.jpg"]["state"] == "approved"
    assert after["obama3.jpg"]["state"] == "pending"


def test_a_burst_holding_a_blocked_photo_is_never_approved_as_a_group(bursts):
    bob, db, _ = bursts
    q = _by_name(json.loads(bob("review", "list", "--json").output))
    bid = q["biden1_b.jpg"]["photo_id"]
    # The detector missed the student in one frame of the burst (simulated): that frame alone
    # would be approvable, but the group still holds a blocked frame.
    with db.session() as s:
        s.execute(update(Photo).where(Photo.id == bid).values(verdict="clear", channel_verdicts="{}", reasons="[]"))
    group = q["biden1.jpg"]["group"]
    out = " ".join(bob("review", "sign", "--scan", "1", "--group", group, "--decision", "approve",
                       expect=1).output.split())
    assert "holds a blocked photo" in out and "one by one" in out
    with pytest.raises(GroupRefused):  # the library refuses, not only the CLI
        sign_group(db, 1, group, reviewer="carol", decision="approve")
    states = {i.photo_id: i.state for i in queue(db, scan_id=1, states=None)}
    assert states[bid] == states[q["biden1.jpg"]["photo_id"]] == "pending"
    # rejecting the whole group is allowed
    bob("review", "sign", "--scan", "1", "--group", group, "--decision", "reject")
    states = {i.photo_id: i.state for i in queue(db, scan_id=1, states=None)}
    assert states[bid] == states[q["biden1.jpg"]["photo_id"]] == "rejected"


def test_group_option_needs_a_scan_and_an_existing_group(bursts):
    bob, _, _ = bursts
    assert "--group needs --scan" in bob("review", "sign", "--group", "1", "--decision", "reject", expect=2).output
    out = bob("review", "sign", "--scan", "1", "--group", "99", "--decision", "reject", expect=2).output
    assert "no burst group 99" in " ".join(out.split())


def test_review_contact_sheet_shows_burst_groups(bursts, tmp_path: Path):
    bob, _, _ = bursts
    bob("review", "list", "--scan", "1", "--html", tmp_path / "q.html")
    html = (tmp_path / "q.html").read_text(encoding="utf-8")
    assert html.count("near-identical photos") == 2


# --- the library behind the web review's bulk decisions and evidence ------------------------------

def _ids_versions(db) -> dict[str, tuple[int, int]]:
    with db.session() as s:
        return {Path(p.path).name: (p.id, p.version) for p in s.scalars(select(Photo))}


def test_sign_selected_decides_each_photo_on_its_own_at_the_version_seen(bursts):
    _, db, _ = bursts
    ids = _ids_versions(db)
    with pytest.raises(SignoffError, match="no photo selected"):
        sign_selected(db, {}, reviewer="bob", decision="approve")
    picked = {ids[n][0]: ids[n][1] for n in ("obama3.jpg", "biden1.jpg", "obama1.jpg")}
    picked[ids["obama1.jpg"][0]] += 1  # shown at an older version: someone decided it since
    results = {r.photo_id: r for r in sign_selected(db, picked, reviewer="bob", decision="approve")}
    assert results[ids["obama3.jpg"][0]].ok
    assert (results[ids["biden1.jpg"][0]].ok, results[ids["biden1.jpg"][0]].rule) == (False, "blocked")
    assert (results[ids["obama1.jpg"][0]].ok, results[ids["obama1.jpg"][0]].rule) == (False, "signed")
    states = {Path(i.path).name: i.state for i in queue(db, scan_id=1, states=None)}
    assert states["obama3.jpg"] == "approved" and states["biden1.jpg"] == states["obama1.jpg"] == "pending"


def test_a_group_decision_covers_only_the_photos_shown(bursts):
    _, db, _ = bursts
    ids = _ids_versions(db)
    group = next(i.group for i in queue(db, scan_id=1) if Path(i.path).name == "obama1.jpg")
    with pytest.raises(SignoffError, match="not in burst group"):
        sign_group(db, 1, group, reviewer="bob", decision="approve", versions=dict([ids["obama3.jpg"]]))
    results = sign_group(db, 1, group, reviewer="bob", decision="approve", versions=dict([ids["obama1.jpg"]]))
    assert [r.ok for r in results] == [True]
    states = {Path(i.path).name: i.state for i in queue(db, scan_id=1, states=None)}
    assert states["obama1.jpg"] == "approved" and states["obama1_b.jpg"] == "pending"


def test_decision_options_offer_exactly_what_sign_one_accepts(bursts, tmp_path: Path):
    _, db, _ = bursts
    ids = _ids_versions(db)
    clear, blocked = ids["obama3.jpg"][0], ids["biden1.jpg"][0]
    o = decision_options(db, clear, reviewer="bob")
    assert o.decisions == ["approve", "reject"] and not o.can_make_redaction
    assert o.approve_channels == ["web", "social", "yearbook", "newsletter", "press"]
    o = decision_options(db, blocked, reviewer="bob")
    assert o.decisions == ["reject"] and o.can_make_redaction
    assert (o.rules["approve"], o.rules["redact"]) == ("blocked", "no_redaction")
    o = decision_options(db, clear, reviewer="alice")
    assert o.decisions == [] and o.rules["reject"] == "own_scan"
    with db.session() as s:
        path = Path(s.get(Photo, clear).path)
    path.write_bytes(path.read_bytes() + b"\0")  # the file changed after the scan
    o = decision_options(db, clear, reviewer="bob")
    assert o.decisions == ["reject"] and o.rules["approve"] == "changed"
    assert decision_options(db, clear, reviewer="bob", check_file=False).decisions == ["approve", "reject"]
    for decision in ("approve", "reject"):  # what is offered is what signing accepts, and no more
        ok = {r.ok for r in sign(db, [clear], reviewer="bob", decision=decision)}
        assert ok == {decision in o.decisions}


def test_face_evidence_puts_the_distance_in_words_from_the_scans_thresholds(bursts):
    _, db, _ = bursts
    ids = _ids_versions(db)
    assert face_evidence(db, ids["obama3.jpg"][0]) == []  # no listed or doubtful face: nothing to weigh
    (ev,) = face_evidence(db, ids["biden1.jpg"][0])
    block, review = load_thresholds().match.block_distance, load_thresholds().match.review_distance
    assert (ev.status, ev.student_id, ev.words) == ("listed", "D0001", "very likely the same person")
    assert ev.distance <= block and f"{block:.2f}" in ev.detail and f"{review:.2f}" in ev.detail
    assert [distance_words(d, 0.5, 0.6) for d in (0.5, 0.55, 0.6, 0.61, None)] == [
        "very likely the same person", "could be the same person", "could be the same person",
        "probably not the same person", "no listed student to compare with"]
    crop, ref = face_crop(db, ev.face_id), face_reference(db, ev.face_id)
    for jpeg, px in ((crop, 160), (ref, 128)):
        with Image.open(io.BytesIO(jpeg)) as im:
            assert im.format == "JPEG" and max(im.size) == px


def test_near_pairs_plain_python_and_numpy_agree():
    """Small sets are grouped without numpy (an unchanged rescan imports none), large ones with it:
    both find the same pairs in the same order."""
    import random

    from photocheck import groups

    rng = random.Random(5)
    base = [rng.getrandbits(64) for _ in range(40)]
    hashes = [b ^ (1 << rng.randrange(64)) if i % 3 else b for i, b in enumerate(base * 2)]
    plain = list(groups._near_pairs(hashes, 6))
    saved = groups._NUMPY_FROM
    groups._NUMPY_FROM = 0
    try:
        vectorised = list(groups._near_pairs(hashes, 6))
    finally:
        groups._NUMPY_FROM = saved
    assert plain == vectorised and len(plain) >= 40
