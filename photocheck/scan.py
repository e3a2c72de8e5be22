"""Scanning: walk the paths, screen each photo in a worker pool, store every result.

Each photo is isolated: whatever goes wrong with one file makes that photo an `error`
(never "no faces") and the batch goes on. Each photo's result is committed on its own, so a
crash loses at most the photos in flight. A folder or file that was found but could not be
read is an `error` item too, and so is a file whose bytes changed while it was screened:
nothing unscreened may look screened.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.orm import selectinload

from photocheck.db import Database
from photocheck.db.convert import photo_result
from photocheck.db.models import Face, Photo, RosterImport, Scan, utcnow
from photocheck.filestat import FileHashes, settled, signature
from photocheck.results import PhotoResult, ScanSummary, Verdict, printable_path
from photocheck.thresholds import without_memory_only

# The screening modules (pipeline, worker, video: numpy, the engine) are imported only once a
# file needs screening: an unchanged rescan does without them.
__all__ = ["ScanOutcome", "ScanSetupError", "Skipped", "scan"]


class ScanSetupError(Exception):
    """The scan cannot start (no roster imported, no photos given...): a configuration problem."""


@dataclass
class Skipped:
    """Passed over on purpose (a hidden file, a folder already walked): not a photo to screen.
    What could not be read is never Skipped: it is an `error` photo of the scan."""
    path: str
    reason: str


@dataclass
class ScanOutcome:
    summary: ScanSummary
    skipped: list[Skipped] = field(default_factory=list)
    resumed: int = 0      # photos already stored by the interrupted scan this one continued
    cached: int = 0       # photos whose stored result for the same bytes was reused
    screened: int = 0     # photos decoded and screened by this run
    duplicates: int = 0   # photos given the result of an identical file (same sha256) screened in this run
    hashes_read: int = 0    # files read to learn their sha256 (before any screening)
    hashes_reused: int = 0  # files whose sha256 came from the stat fast path (not read for it)


def face_rows(result: PhotoResult) -> list[Face]:
    return [
        Face(top=f.box[0], right=f.box[1], bottom=f.box[2], left=f.box[3], status=f.status.value,
             student_id=f.student_id, candidate_id=f.candidate_id, distance=f.distance,
             detector_score=f.detector_score, reason=f.reason, time_s=f.time_s)
        for f in result.faces
    ]


def _persist(db: Database, scan_id: int, result: PhotoResult, owner: str, cached_from: int | None = None) -> None:
    with db.session(immediate=True) as s:
        _add_photos(s, scan_id, [(result, cached_from)], owner)


def _add_photos(s, scan_id: int, results: list[tuple[PhotoResult, int | None]], owner: str) -> None:
    """Add (result, cached_from) photos, their faces and their audit events to session `s`: one
    flush for the photos and faces, one for the events."""
    from photocheck import audit

    photos = []
    for result, cached_from in results:
        photo = Photo(scan_id=scan_id, path=result.path, sha256=result.sha256, verdict=result.verdict.value,
                      reasons=json.dumps(result.reasons), error=result.error, width=result.width,
                      height=result.height, phash=result.phash, cached_from=cached_from,
                      text_hits=result.text_hits, kind=result.kind, duration_s=result.duration_s,
                      channel_verdicts=json.dumps({k: str(v) for k, v in result.channel_verdicts.items()}))
        photo.faces = face_rows(result)
        photos.append(photo)
    s.add_all(photos)
    s.flush()
    for (result, _), photo in zip(results, photos):
        result.photo_id = photo.id
    audit.record_many(s, actor=owner, events=[
        ("scan.photo", result.sha256, dict(scan_id=scan_id, photo_id=result.photo_id,
                                           verdict=result.verdict.value, faces=len(result.faces)))
        for result, _ in results])


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def scan_cache_key(roster_fp: str, model: dict, thresholds) -> str:
    """Results may be reused only between scans with the same roster (listed students and their
    reference encodings), the same models/settings and the same thresholds (memory-only settings aside)."""
    if "settings" in model:  # the detector's settings (model_files.model_info)
        model = {**model, "settings": without_memory_only("detector", model["settings"])}
    canon = json.dumps({"roster": roster_fp, "model": model, "thresholds": thresholds.fingerprint()},
                       sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


@dataclass
class _Keys:
    """The scan's cache key and what its record needs from the models and the roster."""
    cache_key: str
    roster_fp: str
    model: dict
    listed: int
    unprotected: list[str]


# Modules whose code decides the cache key: an upgrade of any of them recomputes it.
_KEY_MODULES = ("photocheck.engine", "photocheck.model_files", "photocheck.students", "photocheck.screening", "photocheck.scan",
                "photocheck.thresholds", "photocheck.protect")


def _inputs_key(db: Database, thresholds, channel: str | None, channels: list[str], today) -> str:
    """sha256 of everything the cache key is computed from, read without the engine or the key:
    the students' rows, the encrypted encodings (the same ciphertext decrypts to the same vector),
    the thresholds, channels, today's date (opt-outs end), the code computing the key and the
    installed packages (model runtimes' versions). The model files are checked by their stat."""
    import importlib.util
    import sys

    from photocheck.db.models import ReferenceEncoding, Student

    h = hashlib.sha256()

    def add(value) -> None:
        h.update(json.dumps(value, default=str, separators=(",", ":")).encode() + b"\n")

    add(["photocheck-scan-inputs-v1", channel, channels, today.isoformat(), thresholds.as_dict()])
    for name in _KEY_MODULES:
        spec = importlib.util.find_spec(name)
        h.update(Path(spec.origin).read_bytes() if spec and spec.origin else name.encode())
    for entry in sys.path:  # package folders only (not a working directory full of photos)
        if not entry.endswith(("site-packages", "dist-packages")):
            continue
        try:
            add(sorted(n for n in os.listdir(entry) if n.endswith((".dist-info", ".egg-info"))))
        except OSError:
            pass
    with db.session() as s:
        add([list(r) for r in s.execute(select(Student.id, Student.student_id, Student.opt_out,
                                                Student.opt_out_until, Student.strict).order_by(Student.id))])
        for r in s.execute(select(ReferenceEncoding.id, ReferenceEncoding.student_pk,
                                  ReferenceEncoding.reference_photo_id, ReferenceEncoding.model_name,
                                  ReferenceEncoding.model_version, ReferenceEncoding.key_id,
                                  ReferenceEncoding.vector).order_by(ReferenceEncoding.id)):
            add([*r[:-1], hashlib.sha256(r[-1]).hexdigest()])
    return h.hexdigest()


def _recall_keys(db: Database, inputs_key: str) -> _Keys | None:
    """The keys stored for these inputs, if every model file's stat is still the one recorded."""
    from photocheck.db.models import ScanKey

    with db.session() as s:
        row = s.get(ScanKey, inputs_key)
    if row is None or any(signature(path) != tuple(sig) for path, *sig in json.loads(row.model_files)):
        return None
    return _Keys(row.cache_key, row.roster_fingerprint, json.loads(row.model), row.listed_students,
                 json.loads(row.unprotected))


def _remember_keys(db: Database, inputs_key: str, keys: _Keys, files: list[tuple[Path, tuple]], at_ns: int) -> None:
    """Store `keys` for these inputs, with the model files' stats taken before model_info read them
    (`files`); not if any file was written within the racy window or has changed since."""
    from datetime import timedelta

    from photocheck.db.models import ScanKey

    if not files or any(not settled(sig, at_ns) or signature(path) != sig for path, sig in files):
        return
    with db.session(immediate=True) as s:
        s.execute(delete(ScanKey).where(ScanKey.created_at < utcnow() - timedelta(days=30)))
        s.merge(ScanKey(inputs_key=inputs_key, cache_key=keys.cache_key, roster_fingerprint=keys.roster_fp,
                        model=json.dumps(keys.model), listed_students=keys.listed,
                        unprotected=json.dumps(keys.unprotected),
                        model_files=json.dumps([[str(p), *sig] for p, sig in files])))


def scan_roots_key(roots: list[Path]) -> str:
    """Identifies "the same command": the roots exactly as given (sorted), plus the working
    directory when any is relative (stored photo paths are as walked, so relative to it)."""
    given = sorted(str(p) for p in roots)
    cwd = os.getcwd() if any(not Path(p).is_absolute() for p in given) else ""
    return hashlib.sha256(json.dumps([cwd, given]).encode()).hexdigest()


def _copy_cached(db: Database, scan_id: int, hits: list[tuple[Path, str, int]], owner: str,
                 text_check: Callable[..., PhotoResult] | None = None,
                 hashes: FileHashes | None = None) -> list[PhotoResult]:
    """Store each (path, sha256, source photo id) in this scan with the result stored for the same
    bytes, after `text_check` (names in its file name and tags, judged against today's roster; the
    file is read once, its bytes checked by `hashes`). One transaction for all: copies are cheap
    to redo if a crash rolls them back."""
    out = []
    with db.session(immediate=True) as s:
        sources = {p.id: p for p in s.scalars(select(Photo).where(Photo.id.in_({src for _, _, src in hits}))
                                               .options(selectinload(Photo.faces)))}
        for path, sha, source_id in hits:
            result = photo_result(sources[source_id], path=printable_path(path), cached=True)
            result.sha256 = sha
            if text_check is not None and result.kind == "video":  # its name only: not read if the stat vouches
                text_check(result, path, confirmed=hashes is not None and hashes.recorded(path) == sha)
            elif text_check is not None:
                data = hashes.read_verified(path, sha) if hashes is not None else None
                if data is not None:
                    text_check(result, path, data=data, confirmed=True)
                else:  # reads and hashes it itself, and says what went wrong
                    text_check(result, path)
            out.append((result, source_id))
        _add_photos(s, scan_id, out, owner)
    return [result for result, _ in out]


def confirm_unchanged(result: PhotoResult, channels: list[str],
                      hashes: FileHashes | None = None) -> tuple[PhotoResult, bytes | None]:
    """(`result`, the file's bytes) if its file still holds the bytes that were screened (same
    sha256), else (an `error`, None): a verdict on bytes the file no longer holds must never
    stand. A photo's bytes are kept for the text check (one read serves both); a clip's are not.
    `hashes` records the file's stat for the next scan's fast path."""
    from photocheck.mediafiles import os_error_text

    if result.verdict == Verdict.ERROR or result.sha256 is None:
        return result, None
    data = None
    try:
        before = signature(result.path)
        started = time.time_ns()
        if result.kind == "video":
            with open(result.path, "rb") as fh:
                now = hashlib.file_digest(fh, "sha256").hexdigest()
        else:
            with open(result.path, "rb") as fh:
                data = fh.read()
            now = hashlib.sha256(data).hexdigest()
    except FileNotFoundError as exc:
        reason = f"vanished while being screened: {os_error_text(result.path, exc)}"
    except OSError as exc:
        reason = f"cannot read again after screening: {os_error_text(result.path, exc)}"
    else:
        if now == result.sha256:
            if hashes is not None:
                hashes.note(result.path, now, before, started)
            return result, data
        reason = (f"changed while being screened: {printable_path(result.path)} no longer holds the bytes "
                  "that were screened; scan it again")
    from photocheck.pipeline import error_result

    return error_result(result.path, channels, reason), None


def _same_size(files: list[Path]) -> list[Path]:
    """The files that share their size with another: only those can be identical."""
    sizes: dict[int, list[Path]] = {}
    for f in files:
        try:
            sizes.setdefault(os.stat(f).st_size, []).append(f)
        except OSError:  # screening reports it
            pass
    return [f for group in sizes.values() if len(group) > 1 for f in group]


class _Identical:
    """Identical files (same sha256) in one scan: the first is screened, the others take its
    result once it is back, each file still its own photo. Each is hashed again then, so a file
    that changed meanwhile is screened itself; so are all when the first ends in `error` (an
    error is never passed on: another copy may be readable)."""

    def __init__(self, files: list[Path], hashes: dict[Path, str], sha256: Callable[[Path], str | None]):
        self.sha256 = sha256
        groups: dict[str, list[Path]] = {}
        for f in files:
            if (sha := hashes.get(f)) is not None:
                groups.setdefault(sha, []).append(f)
        self.waiting = {str(g[0]): (sha, g[1:]) for sha, g in groups.items() if len(g) > 1}
        later = {f for g in groups.values() for f in g[1:]}
        self.first = [f for f in files if f not in later]  # to screen, in the walk's order

    def settle(self, path: str, result: PhotoResult) -> tuple[list[Path], list[Path]]:
        """(files that take `result`, files to screen themselves) once `path` is screened."""
        sha, others = self.waiting.pop(path, (None, []))
        if not others or result.verdict == Verdict.ERROR or result.sha256 != sha:
            return [], others
        same: list[Path] = []
        again: list[Path] = []
        for f in others:
            (same if self.sha256(f) == sha else again).append(f)
        return same, again


def _as_copy(result: PhotoResult, path: Path) -> PhotoResult:
    """`result` for another file with the same bytes: same verdict, reasons and faces."""
    return dataclasses.replace(result, path=str(path), reasons=list(result.reasons),
                               faces=[dataclasses.replace(f) for f in result.faces],
                               channel_verdicts=dict(result.channel_verdicts), photo_id=None)


def _find_resumable(db: Database, roots_key: str, cache_key: str) -> int | None:
    """The newest unfinished scan of the same roots with the same roster/models/thresholds."""
    with db.session() as s:
        return s.scalar(select(Scan.id).where(Scan.status != "finished", Scan.roots_key == roots_key,
                                              Scan.cache_key == cache_key).order_by(Scan.id.desc()).limit(1))


def scan(
    db: Database,
    paths: Iterable[Path],
    *,
    owner: str,
    channel: str | None = None,
    jobs: int | None = None,
    thresholds=None,
    use_cache: bool = True,
    resume: bool = True,
    rehash: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_photo: Callable[[PhotoResult], None] | None = None,
    on_screened: Callable[[str], None] | None = None,
) -> ScanOutcome:
    """Screen every photo under `paths` against the no-consent list and store the results.

    `channel`: judge only the opt-outs that apply to this publication channel; None judges every
    opt-out (strictest wins) and also records a verdict per school channel.
    `jobs` cores to use (default: one per core): 1 screens in this process; 2+ runs one worker
    process per two cores (see worker.py).

    Scan cache: a file whose sha256 was already screened by a scan with the same roster,
    models and thresholds (same `cache_key`) is not decoded again; its stored result is copied
    into this scan (`Photo.cached_from`). Errors are never reused.

    Resume: if the newest unfinished scan (interrupted, or left `running` by a kill) has the
    same roots as given and the same `cache_key`, it is continued: photos it already stored are
    kept, its `error` photos are screened again, and the rest are screened — each path once.

    Identical files in one scan (same sha256; only files of the same size are hashed ahead) are
    decoded and screened once; each path is still stored as its own photo (`Photo.cached_from`
    names the one screened).

    A file's sha256 is taken from the stat fast path (filestat.py) when its stat is exactly
    what was recorded when it was last hashed; `rehash=True` reads and hashes every file.

    Nothing unscreened looks screened: a folder that cannot be listed, or a file found but not
    read, is stored as an `error` photo whose reason names the path and the OS error; a photo
    whose file changed or vanished while it was screened is an `error` too (its sha256 is checked
    after screening). `on_screened(path)` runs as each screened photo comes back, before that
    check (tests change the file there).
    """
    from datetime import date

    from photocheck import audit
    from photocheck.config import ConfigError, check_channel, school_channels
    from photocheck.mediafiles import iter_image_files
    from photocheck.protect import resolve_key
    from photocheck.thresholds import load_thresholds

    try:
        channel = check_channel(channel) if channel is not None else None
        channels = [channel] if channel else list(school_channels())
    except ConfigError as exc:
        raise ScanSetupError(str(exc)) from None

    roots = [Path(p) for p in paths]
    missing = []
    for p in roots:
        try:
            os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            missing.append(str(p))
        except OSError:  # there but out of reach: an `error` item (iter_image_files reports it)
            pass
    if missing:
        raise ScanSetupError("no such file or folder: " + ", ".join(missing))
    with db.session() as s:
        if not s.scalar(select(func.count()).select_from(RosterImport)):
            raise ScanSetupError("no roster imported yet: run `photocheck roster import FILE.csv` first "
                                 "(an empty list is fine, but it must be imported)")

    thresholds = thresholds or load_thresholds()
    skipped: list[Skipped] = []
    unreadable: list[tuple[Path, str]] = []  # found, not read: each becomes an `error` photo
    files = list(dict.fromkeys(iter_image_files(
        roots, on_skip=lambda p, why: skipped.append(Skipped(printable_path(p), why)),
        on_error=lambda p, why: unreadable.append((p, why)), videos=True)))

    # Before anything else: a missing or wrong key fails at once (protect.KeyUnavailable), even
    # when every result will come from the cache.
    resolve_key(db)
    today = date.today()
    ref_sets: dict = {}

    def load_references(model: dict) -> tuple:
        """(references, channel_refs), decrypted once: only when a photo must be screened or
        the cache key must be computed."""
        if not ref_sets:
            from photocheck.students import load_channel_references

            ref_sets.update(load_channel_references(db, model["encoder"]["name"], model["encoder"]["version"],
                                                    [None, *channels], today=today))
        return ref_sets[channel], {ch: ref_sets[ch] for ch in channels}

    def compute_keys(model: dict) -> _Keys:
        from photocheck.students import roster_fingerprint

        references, channel_refs = load_references(model)
        roster_fp = roster_fingerprint(references)
        # Per-channel verdicts are stored too, so who is listed for which channel is part of the key.
        listing_fp = hashlib.sha256(json.dumps(
            [channel, roster_fp, [(ch, roster_fingerprint(refs)) for ch, refs in channel_refs.items()]]).encode()
        ).hexdigest()
        return _Keys(scan_cache_key(listing_fp, model, thresholds), roster_fp, model,
                     len(set(references.student_ids)) + len(references.unprotected), list(references.unprotected))

    inputs_key = _inputs_key(db, thresholds, channel, channels, today)
    keys = _recall_keys(db, inputs_key)  # an unchanged rescan: no engine, no decryption
    if keys is None:
        from photocheck.model_files import hashed_files, model_info

        started = time.time_ns()
        model_files = [(p, signature(p)) for p in hashed_files(thresholds.detector)]
        keys = compute_keys(model_info(thresholds.detector))
        _remember_keys(db, inputs_key, keys, model_files, started)
    model, roster_fp, cache_key = keys.model, keys.roster_fp, keys.cache_key
    from photocheck.textcheck import TextChecker

    text_check = TextChecker.load(db, thresholds, channel=channel).apply  # names: cheap, never cached
    roots_key = scan_roots_key(roots)

    resumed: list[PhotoResult] = []
    scan_id = _find_resumable(db, roots_key, cache_key) if resume else None
    with db.session(immediate=True) as s:
        if scan_id is not None:
            row = s.get(Scan, scan_id)
            # Errors of the interrupted run (e.g. a photo whose worker was killed) are redone.
            s.execute(delete(Photo).where(Photo.scan_id == scan_id, Photo.verdict == Verdict.ERROR.value))
            s.flush()
            for p in s.scalars(select(Photo).where(Photo.scan_id == scan_id).options(selectinload(Photo.faces))):
                resumed.append(photo_result(p))
            row.status = "running"
            row.finished_at = None
            audit.record(s, actor=owner, action="scan.resume", scan_id=scan_id, photos=len(files),
                         already_stored=len(resumed))
        else:
            row = Scan(owner=owner, roots=json.dumps([str(p) for p in roots]),
                       thresholds=json.dumps(thresholds.as_dict()), model=json.dumps(model),
                       roster_fingerprint=roster_fp, cache_key=cache_key, roots_key=roots_key, channel=channel)
            s.add(row)
            s.flush()
            audit.record(s, actor=owner, action="scan.start", scan_id=row.id, channel=channel, photos=len(files))
        scan_id, started, scan_owner = row.id, row.started_at, row.owner
    summary = ScanSummary(scan_id=scan_id, started_at=started.isoformat(timespec="seconds"), finished_at=None,
                          owner=scan_owner, roots=[str(p) for p in roots], thresholds=thresholds.as_dict(),
                          model=model, listed_students=keys.listed, unprotected_students=list(keys.unprotected),
                          channel=channel)
    summary.photos.extend(resumed)
    done = {p.path for p in resumed}
    todo = [f for f in files if printable_path(f) not in done]
    if on_start:
        on_start(len(files) + len(unreadable))
    if on_photo:
        for r in resumed:
            on_photo(r)
    channel_names = list(channels)
    screened = duplicates = 0

    def store(result: PhotoResult, cached_from: int | None = None, data: bytes | None = None,
              confirmed: bool = False) -> None:
        # each path's own file name and tags, copies of one photo included
        text_check(result, data=data, confirmed=confirmed)
        result.path = printable_path(result.path)  # a non-UTF-8 file name must not crash the batch
        _persist(db, scan_id, result, owner, cached_from)
        summary.photos.append(result)
        if on_photo:
            on_photo(result)

    def record(result: PhotoResult) -> list[Path]:
        """Store a photo just screened, checked against its file as it is now, and the files
        identical to it; returns the files that must be screened themselves after all."""
        nonlocal screened, duplicates
        screened += 1
        path = result.path
        if on_screened:
            on_screened(path)
        result, data = confirm_unchanged(result, channel_names, hashes)
        pixels_only = _as_copy(result, Path(path))  # before store() adds this file's own text findings
        store(result, data=data, confirmed=result.verdict != Verdict.ERROR and result.sha256 is not None)
        same, again = identical.settle(path, result)
        for f in same:
            store(_as_copy(pixels_only, f), cached_from=result.photo_id)
        duplicates += len(same)
        return again

    hashes = FileHashes(db, todo, trust_stat=not rehash)
    status = "interrupted"
    try:
        if unreadable:
            from photocheck.pipeline import error_result

            for path, reason in unreadable:
                store(error_result(path, channel_names, reason))
        misses = todo
        known: dict[Path, str] = {}
        if use_cache and todo:
            with db.session() as s:
                cached = dict(s.execute(
                    select(Photo.sha256, func.max(Photo.id)).join(Scan, Photo.scan_id == Scan.id)
                    .where(Scan.cache_key == cache_key, Photo.verdict != Verdict.ERROR.value,
                           Photo.sha256.is_not(None), Photo.text_hits == 0)
                    .group_by(Photo.sha256)).all())
            if cached:  # hash the bytes and look up; a hit is never decoded
                misses, hits = [], []
                for f in todo:
                    sha = hashes.sha256(f)
                    if sha is not None and sha in cached:
                        hits.append((f, sha, cached[sha]))
                    else:
                        misses.append(f)
                        if sha is not None:
                            known[f] = sha
                for result in _copy_cached(db, scan_id, hits, owner, text_check, hashes) if hits else []:
                    summary.photos.append(result)
                    if on_photo:
                        on_photo(result)
        for f in _same_size([f for f in misses if f not in known]):
            if (sha := hashes.sha256(f)) is not None:
                known[f] = sha
        hashes.save()
        identical = _Identical(misses, known, hashes.sha256)
        if identical.first:  # else nothing to screen: no screening module is loaded
            references, channel_refs = load_references(model)
            if compute_keys(model).cache_key != cache_key:  # the stored keys must be what they stand for
                raise RuntimeError("internal error: the stored scan cache key does not match the roster")
            from photocheck.pipeline import screen_photo
            from photocheck.video import is_clip, screen_clips
            from photocheck.worker import release_memory, run_pool

            clips = [f for f in identical.first if is_clip(f)]  # screened after the photos, in this process
            clip_set = set(clips)
            to_screen = [f for f in identical.first if f not in clip_set]
            n_jobs = max(1, min(jobs or default_jobs(), len(to_screen) or 1))
            if os.name != "posix":  # the worker pool hands pipe fds to its children (pass_fds): POSIX only
                n_jobs = 1
            if to_screen and n_jobs == 1:
                from photocheck.engine import FaceEngine

                engine = FaceEngine(thresholds.detector)
                queue = deque(to_screen)
                while queue:
                    result = screen_photo(queue.popleft(), engine, references, thresholds, channel_refs)
                    release_memory()
                    queue.extend(record(result))
            elif to_screen:
                run_pool(to_screen, n_jobs, references, thresholds, record, channel_refs)
            screen_clips(clips, references, thresholds, channel_refs, record, threads=min(2, jobs or default_jobs()))
            hashes.save()  # the stats of the files just screened (confirm_unchanged read them)
        status = "finished"
    finally:
        with db.session(immediate=True) as s:
            row = s.get(Scan, scan_id)
            row.status = status
            row.finished_at = utcnow()
            audit.record(s, actor=owner, action="scan.finish", scan_id=scan_id, status=status,
                         photos=len(summary.photos))
            summary.finished_at = row.finished_at.isoformat(timespec="seconds")
    from photocheck.groups import assign_groups

    summary.photos.sort(key=lambda p: p.path)
    assign_groups(summary.photos, thresholds.grouping.max_hamming)
    return ScanOutcome(summary=summary, skipped=skipped, resumed=len(resumed),
                       cached=sum(p.cached for p in summary.photos), screened=screened, duplicates=duplicates,
                       hashes_read=hashes.read, hashes_reused=hashes.reused)
