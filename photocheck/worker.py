"""Screening one photo, and the worker process that screens a scan's photos.

Kept apart from scan.py so the worker imports only what screening needs (numpy, PIL, onnxruntime,
dlib) — never SQLAlchemy, typer or rich (measured: ~30 MB per process).

A scan screens each photo in two stages, each in its own worker process: a detect worker
(decode + CenterFace on onnxruntime, no dlib) and an encode worker (dlib landmarks + descriptors
on the faces' crops, then the verdict; no onnxruntime). The two run side by side on different
photos, so two cores stay busy while each model is loaded once and only one photo at a time is
decoded in full (a 12 MP photo costs ~200 MB while it is decoded and detected; the encode stage
gets only its face crops). Threads could not do this: dlib holds the GIL for the whole ~90 ms
of each face's encoding.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from photocheck.groups import dhash
from photocheck.images import ImageError, load_image
from photocheck.results import PhotoResult, Verdict
from photocheck.screening import ReferenceSet, classify_face, photo_verdict


@dataclass
class Detected:
    """A photo after decoding and detection: all that encoding and judging need (small: the
    faces' padded crops, not the photo). `error` set = the photo is already an error result."""
    path: str
    error: PhotoResult | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    phash: str | None = None
    detections: list = field(default_factory=list)
    crops: list = field(default_factory=list)  # one (padded crop, detection in crop pixels) per face


def error_result(path, channels, reason: str, **kw) -> PhotoResult:
    """An `error` photo (never "no faces"), with an error verdict on every channel judged."""
    return PhotoResult(path=str(path), verdict=Verdict.ERROR, reasons=[reason], error=reason,
                       channel_verdicts={ch: Verdict.ERROR for ch in channels}, **kw)


def detect_photo(path: Path, engine, channels: list[str]) -> Detected:
    """Decode and detect one photo. Never raises: failures become an `error` result."""
    try:
        img = load_image(path)
    except ImageError as exc:
        return Detected(str(path), error_result(path, channels, str(exc)))
    except OSError as exc:
        return Detected(str(path), error_result(path, channels, f"cannot read file: {exc.strerror or exc}"))
    except Exception as exc:  # a decoder bug must not turn into "no faces"
        return Detected(str(path), error_result(path, channels, f"cannot decode image: {type(exc).__name__}: {exc}"))
    try:
        detections = engine.detect(img.rgb)
        # Keep only what encoding reads (a padded crop per face), not the whole photo (36 MB for 12 MP).
        crops = engine.encoding_crops(img.rgb, detections)
    except Exception as exc:
        reason = f"face detection failed: {type(exc).__name__}: {exc}"
        return Detected(str(path), error_result(path, channels, reason, sha256=img.sha256, width=img.width,
                                                height=img.height))
    try:
        phash = dhash(img.rgb)
    except Exception:  # grouping is a convenience: never let it cost a verdict
        phash = None
    return Detected(str(path), None, img.sha256, img.width, img.height, phash, detections, crops)


def judge_photo(det: Detected, engine, references: ReferenceSet, thresholds,
                channel_refs: dict[str, ReferenceSet] | None = None) -> PhotoResult:
    """Encode a detected photo's faces and judge them. Never raises: failures become `error`."""
    if det.error is not None:
        return det.error
    channels = list(channel_refs or {})
    try:
        encodings = [engine.encode(crop, [d])[0] for crop, d in det.crops]

        def judge(refs: ReferenceSet):
            return [classify_face(tuple(int(v) for v in d.box), enc, d.sharpness, refs, thresholds,
                                  detector_score=float(d.score))
                    for d, enc in zip(det.detections, encodings)]

        faces = judge(references)
        per_channel = {ch: photo_verdict(judge(refs))[0] for ch, refs in (channel_refs or {}).items()}
    except Exception as exc:
        return error_result(det.path, channels, f"face detection failed: {type(exc).__name__}: {exc}",
                            sha256=det.sha256, width=det.width, height=det.height)
    verdict, reasons = photo_verdict(faces)
    return PhotoResult(path=det.path, verdict=verdict, reasons=reasons, faces=faces, sha256=det.sha256,
                       width=det.width, height=det.height, channel_verdicts=per_channel, phash=det.phash)


def screen_photo(path: Path, engine, references: ReferenceSet, thresholds,
                 channel_refs: dict[str, ReferenceSet] | None = None) -> PhotoResult:
    """Load, detect, encode and judge one photo. Never raises: failures become `error`.

    The verdict and faces are judged against `references`; each of `channel_refs` (the students
    listed for that channel) gives a per-channel verdict from the same encodings.
    """
    det = detect_photo(path, engine, list(channel_refs or {}))
    release_memory()  # hand the decoder's and detector's buffers back before encoding
    return judge_photo(det, engine, references, thresholds, channel_refs)


# --- worker processes -------------------------------------------------------------------------
# Each worker loads the face engine once; references and thresholds are sent once at start-up.
_worker: dict = {}


def init_detect_worker(thresholds, channels: list[str], scan_pid: int | None, threads: int) -> None:
    """A detect worker: decodes photos and runs CenterFace (no dlib loaded)."""
    _common_init(scan_pid)
    from photocheck.engine import FaceEngine

    _worker["engine"] = FaceEngine(thresholds.detector, threads=threads, encoder=False)
    _worker["channels"] = channels


def init_encode_worker(references: ReferenceSet, thresholds, channel_refs, scan_pid: int | None) -> None:
    """An encode worker: dlib landmarks + descriptors on the detect worker's face crops, and the
    verdict (no onnxruntime loaded)."""
    _common_init(scan_pid)
    from photocheck.engine import FaceEngine

    _worker["engine"] = FaceEngine(thresholds.detector, detector=False)
    _worker["references"] = references
    _worker["thresholds"] = thresholds
    _worker["channel_refs"] = channel_refs


def _common_init(scan_pid: int | None) -> None:
    # Ctrl-C is handled by the main process alone (it marks the scan interrupted and stops the
    # pool); a worker dying mid-photo would otherwise turn its photo into a spurious `error`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if scan_pid:
        _start_orphan_watchdog(scan_pid)


def detect_in_worker(path: str) -> Detected:
    try:
        return detect_photo(Path(path), _worker["engine"], _worker["channels"])
    finally:
        release_memory()


def judge_in_worker(det: Detected) -> PhotoResult:
    try:
        return judge_photo(det, _worker["engine"], _worker["references"], _worker["thresholds"],
                           _worker.get("channel_refs"))
    finally:
        release_memory()


def _process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")  # a killed, unreaped parent is a zombie
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): fall back to signal 0
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except OSError:
            return True


def _start_orphan_watchdog(scan_pid: int) -> None:
    """Exit when the scan process is gone (e.g. kill -9): forkserver workers are not its
    children, and would otherwise wait forever on their queue, each holding a loaded engine."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if not _process_alive(scan_pid):
                os._exit(1)

    threading.Thread(target=watch, name="orphan-watchdog", daemon=True).start()


def release_memory() -> None:
    """Give freed decode/detection buffers back to the OS after each photo (glibc keeps them
    otherwise: measured 300-380 MB vs a flat 147 MB per worker on 4000x3000 photos)."""
    if _libc is not None:
        try:
            _libc.malloc_trim(0)
        except Exception:  # pragma: no cover - not glibc
            pass


try:
    import ctypes
    import ctypes.util

    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _libc.malloc_trim  # noqa: B018  (AttributeError off glibc)
except Exception:  # pragma: no cover - musl, macOS, Windows
    _libc = None
