"""Scanning: walk the paths, screen each photo in a worker pool, store every result.

Each photo is isolated: whatever goes wrong with one file makes that photo an `error`
(never "no faces") and the batch goes on. Each photo's result is committed on its own, so a
crash loses at most the photos in flight.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy import func, select

from photocheck.db import Database
from photocheck.db.models import Face, Photo, RosterImport, Scan, utcnow
from photocheck.images import ImageError, iter_image_files, load_image
from photocheck.results import PhotoResult, ScanSummary, Verdict, printable_path
from photocheck.screening import ReferenceSet, classify_face, photo_verdict


class ScanSetupError(Exception):
    """The scan cannot start (no roster imported, no photos given...): a configuration problem."""


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class ScanOutcome:
    summary: ScanSummary
    skipped: list[Skipped] = field(default_factory=list)


def screen_photo(path: Path, engine, references: ReferenceSet, thresholds,
                 channel_refs: dict[str, ReferenceSet] | None = None) -> PhotoResult:
    """Load, detect, encode and judge one photo. Never raises: failures become `error`.

    The verdict and faces are judged against `references`; each of `channel_refs` (the students
    listed for that channel) gives a per-channel verdict from the same encodings.
    """
    channels = list(channel_refs or {})

    def error(reason: str, **kw) -> PhotoResult:
        return PhotoResult(path=str(path), verdict=Verdict.ERROR, reasons=[reason], error=reason,
                           channel_verdicts={ch: Verdict.ERROR for ch in channels}, **kw)

    try:
        img = load_image(path)
    except ImageError as exc:
        return error(str(exc))
    except OSError as exc:
        return error(f"cannot read file: {exc.strerror or exc}")
    except Exception as exc:  # a decoder bug must not turn into "no faces"
        return error(f"cannot decode image: {type(exc).__name__}: {exc}")
    try:
        detections = engine.detect(img.rgb)
        encodings = engine.encode(img.rgb, detections) if detections else []

        def judge(refs: ReferenceSet):
            return [classify_face(tuple(int(v) for v in det.box), enc, det.sharpness, refs, thresholds,
                                  detector_score=float(det.score))
                    for det, enc in zip(detections, encodings)]

        faces = judge(references)
        per_channel = {ch: photo_verdict(judge(refs))[0] for ch, refs in (channel_refs or {}).items()}
    except Exception as exc:
        return error(f"face detection failed: {type(exc).__name__}: {exc}",
                     sha256=img.sha256, width=img.width, height=img.height)
    verdict, reasons = photo_verdict(faces)
    return PhotoResult(path=str(path), verdict=verdict, reasons=reasons, faces=faces, sha256=img.sha256,
                       width=img.width, height=img.height, channel_verdicts=per_channel)


# --- worker processes -------------------------------------------------------------------------
# Each worker loads the face engine once; references and thresholds are sent once at start-up.
_worker: dict = {}


def _init_worker(references: ReferenceSet, thresholds, channel_refs=None) -> None:
    from photocheck.engine import FaceEngine

    _worker["engine"] = FaceEngine()
    _worker["references"] = references
    _worker["thresholds"] = thresholds
    _worker["channel_refs"] = channel_refs


def _screen_in_worker(path: str) -> PhotoResult:
    return screen_photo(Path(path), _worker["engine"], _worker["references"], _worker["thresholds"],
                        _worker.get("channel_refs"))


def face_rows(result: PhotoResult) -> list[Face]:
    return [
        Face(top=f.box[0], right=f.box[1], bottom=f.box[2], left=f.box[3], status=f.status.value,
             student_id=f.student_id, candidate_id=f.candidate_id, distance=f.distance,
             detector_score=f.detector_score, reason=f.reason)
        for f in result.faces
    ]


def _persist(db: Database, scan_id: int, result: PhotoResult, owner: str) -> None:
    from photocheck import audit

    with db.session(immediate=True) as s:
        photo = Photo(scan_id=scan_id, path=result.path, sha256=result.sha256, verdict=result.verdict.value,
                      reasons=json.dumps(result.reasons), error=result.error, width=result.width,
                      height=result.height,
                      channel_verdicts=json.dumps({k: str(v) for k, v in result.channel_verdicts.items()}))
        photo.faces = face_rows(result)
        s.add(photo)
        s.flush()
        result.photo_id = photo.id
        audit.record(s, actor=owner, action="scan.photo", photo_sha256=result.sha256, scan_id=scan_id,
                     photo_id=photo.id, verdict=result.verdict.value, faces=len(result.faces))


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def scan(
    db: Database,
    paths: Iterable[Path],
    *,
    owner: str,
    channel: str | None = None,
    jobs: int | None = None,
    thresholds=None,
    on_start: Callable[[int], None] | None = None,
    on_photo: Callable[[PhotoResult], None] | None = None,
) -> ScanOutcome:
    """Screen every photo under `paths` against the no-consent list and store the results.

    `channel`: judge only the opt-outs that apply to this publication channel; None judges every
    opt-out (strictest wins) and also records a verdict per school channel.
    `jobs` worker processes (default: one per core); 1 screens in this process.
    """
    from photocheck import audit
    from photocheck.config import ConfigError, check_channel, school_channels
    from photocheck.engine import FaceEngine, model_info
    from photocheck.students import load_channel_references, roster_fingerprint
    from photocheck.thresholds import load_thresholds

    try:
        channel = check_channel(channel) if channel is not None else None
        channels = [channel] if channel else list(school_channels())
    except ConfigError as exc:
        raise ScanSetupError(str(exc)) from None

    roots = [Path(p) for p in paths]
    missing = [str(p) for p in roots if not p.exists() and not p.is_symlink()]
    if missing:
        raise ScanSetupError("no such file or folder: " + ", ".join(missing))
    with db.session() as s:
        if not s.scalar(select(func.count()).select_from(RosterImport)):
            raise ScanSetupError("no roster imported yet: run `photocheck roster import FILE.csv` first "
                                 "(an empty list is fine, but it must be imported)")

    thresholds = thresholds or load_thresholds()
    skipped: list[Skipped] = []
    files = list(iter_image_files(roots, on_skip=lambda p, why: skipped.append(Skipped(printable_path(p), why))))
    jobs = max(1, min(jobs or default_jobs(), len(files) or 1))

    model = model_info()
    # Before loading the engine: a missing or wrong key fails at once (protect.KeyUnavailable).
    ref_sets = load_channel_references(db, model["encoder"]["name"], model["encoder"]["version"],
                                       [None, *channels])
    references = ref_sets[channel]
    channel_refs = {ch: ref_sets[ch] for ch in channels}
    local_engine = FaceEngine() if jobs == 1 else None

    with db.session(immediate=True) as s:
        row = Scan(owner=owner, roots=json.dumps([str(p) for p in roots]),
                   thresholds=json.dumps(thresholds.as_dict()), model=json.dumps(model),
                   roster_fingerprint=roster_fingerprint(references), channel=channel)
        s.add(row)
        s.flush()
        scan_id, started = row.id, row.started_at
        audit.record(s, actor=owner, action="scan.start", scan_id=scan_id, channel=channel, photos=len(files))
    summary = ScanSummary(scan_id=scan_id, started_at=started.isoformat(timespec="seconds"), finished_at=None,
                          owner=owner, roots=[str(p) for p in roots], thresholds=thresholds.as_dict(), model=model,
                          listed_students=len(set(references.student_ids)) + len(references.unprotected),
                          unprotected_students=list(references.unprotected), channel=channel)
    if on_start:
        on_start(len(files))

    def record(result: PhotoResult) -> None:
        result.path = printable_path(result.path)  # a non-UTF-8 file name must not crash the batch
        _persist(db, scan_id, result, owner)
        summary.photos.append(result)
        if on_photo:
            on_photo(result)

    status = "interrupted"
    try:
        if local_engine is not None:
            for f in files:
                record(screen_photo(f, local_engine, references, thresholds, channel_refs))
        else:
            _run_pool(files, jobs, references, thresholds, record, channel_refs)
        status = "finished"
    finally:
        with db.session(immediate=True) as s:
            row = s.get(Scan, scan_id)
            row.status = status
            row.finished_at = utcnow()
            audit.record(s, actor=owner, action="scan.finish", scan_id=scan_id, status=status,
                         photos=len(summary.photos))
            summary.finished_at = row.finished_at.isoformat(timespec="seconds")
    summary.photos.sort(key=lambda p: p.path)
    return ScanOutcome(summary=summary, skipped=skipped)


def _run_pool(files: list[Path], jobs: int, references: ReferenceSet, thresholds,
              record: Callable[[PhotoResult], None], channel_refs=None) -> None:
    # forkserver: workers start clean (no copied DB connections or threads); the engine is
    # loaded once per worker. At most 2 photos per worker in flight keeps memory bounded.
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(references, thresholds, channel_refs)) as pool:
        pending: dict[Future, Path] = {}
        queue = iter(files)
        try:
            while True:
                while len(pending) < 2 * jobs:
                    nxt = next(queue, None)
                    if nxt is None:
                        break
                    pending[pool.submit(_screen_in_worker, str(nxt))] = nxt
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    path = pending.pop(fut)
                    try:
                        result = fut.result()
                    except Exception as exc:  # a worker died (e.g. out of memory): that photo is an error
                        reason = f"screening crashed: {type(exc).__name__}: {exc}"
                        result = PhotoResult(path=str(path), verdict=Verdict.ERROR, reasons=[reason], error=reason,
                                             channel_verdicts={ch: Verdict.ERROR for ch in channel_refs or {}})
                    record(result)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
