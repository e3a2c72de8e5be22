"""Screening one photo, and the worker process that screens a scan's photos.

Kept apart from scan.py so the worker imports only what screening needs (numpy, PIL, onnxruntime,
dlib) — never SQLAlchemy, typer or rich (measured: ~30 MB per process).

One worker process screens `threads` photos at once, one per thread, with one shared FaceEngine:
onnxruntime, PIL decoding/resizing release the GIL, so two threads keep both cores busy while
the models and libraries are loaded once (a second worker process would cost ~140 MB more).
dlib's encoder holds the GIL, so encodings of the two photos take turns.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from photocheck.groups import dhash
from photocheck.images import ImageError, load_image
from photocheck.results import PhotoResult, Verdict
from photocheck.screening import ReferenceSet, classify_face, photo_verdict


def screen_photo(path: Path, engine, references: ReferenceSet, thresholds,
                 channel_refs: dict[str, ReferenceSet] | None = None,
                 heavy: AbstractContextManager = nullcontext()) -> PhotoResult:
    """Load, detect, encode and judge one photo. Never raises: failures become `error`.

    The verdict and faces are judged against `references`; each of `channel_refs` (the students
    listed for that channel) gives a per-channel verdict from the same encodings.
    Decoding and detection (the memory-hungry part: ~200 MB transient for a 12 MP photo) run
    inside `heavy`; a worker's photo threads share one lock there, see screen_batch_in_worker.
    """
    channels = list(channel_refs or {})

    def error(reason: str, **kw) -> PhotoResult:
        return PhotoResult(path=str(path), verdict=Verdict.ERROR, reasons=[reason], error=reason,
                           channel_verdicts={ch: Verdict.ERROR for ch in channels}, **kw)

    with heavy:
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
            # Keep only what encoding reads (a padded crop per face), not the whole photo (36 MB
            # for 12 MP) while this photo's faces wait for the encoder.
            crops = engine.encoding_crops(img.rgb, detections)
        except Exception as exc:
            return error(f"face detection failed: {type(exc).__name__}: {exc}",
                         sha256=img.sha256, width=img.width, height=img.height)
        finally:
            try:
                phash = dhash(img.rgb)
            except Exception:  # grouping is a convenience: never let it cost a verdict
                phash = None
            sha256, width, height = img.sha256, img.width, img.height
            del img
            release_memory()  # hand the decoder's and detector's buffers back before the next photo
    try:
        encodings = [engine.encode(crop, [det])[0] for crop, det in crops]

        def judge(refs: ReferenceSet):
            return [classify_face(tuple(int(v) for v in det.box), enc, det.sharpness, refs, thresholds,
                                  detector_score=float(det.score))
                    for det, enc in zip(detections, encodings)]

        faces = judge(references)
        per_channel = {ch: photo_verdict(judge(refs))[0] for ch, refs in (channel_refs or {}).items()}
    except Exception as exc:
        return error(f"face detection failed: {type(exc).__name__}: {exc}",
                     sha256=sha256, width=width, height=height)
    verdict, reasons = photo_verdict(faces)
    return PhotoResult(path=str(path), verdict=verdict, reasons=reasons, faces=faces, sha256=sha256,
                       width=width, height=height, channel_verdicts=per_channel, phash=phash)


# --- worker processes -------------------------------------------------------------------------
# Each worker loads the face engine once; references and thresholds are sent once at start-up.
_worker: dict = {}


def init_worker(references: ReferenceSet, thresholds, channel_refs=None, scan_pid: int | None = None,
                threads: int = 1) -> None:
    # Ctrl-C is handled by the main process alone (it marks the scan interrupted and stops the
    # pool); a worker dying mid-photo would otherwise turn its photo into a spurious `error`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if scan_pid:
        _start_orphan_watchdog(scan_pid)
    from photocheck.engine import FaceEngine

    # The photo threads take turns decoding + detecting (_worker["heavy"]); the detector gets the
    # cores meanwhile, so one photo's detection overlaps the other's (GIL-bound) dlib encoding.
    _worker["engine"] = FaceEngine(thresholds.detector, threads=threads)
    _worker["heavy"] = threading.Lock()
    _worker["threads"] = ThreadPoolExecutor(max(1, threads), thread_name_prefix="photo")
    _worker["references"] = references
    _worker["thresholds"] = thresholds
    _worker["channel_refs"] = channel_refs


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


def _screen_one(path: str) -> PhotoResult:
    try:
        return screen_photo(Path(path), _worker["engine"], _worker["references"], _worker["thresholds"],
                            _worker.get("channel_refs"), heavy=_worker["heavy"])
    finally:
        release_memory()


def screen_batch_in_worker(paths: list[str]) -> list[PhotoResult]:
    """Screen `paths` on the worker's photo threads; results in the same order."""
    return list(_worker["threads"].map(_screen_one, paths))
