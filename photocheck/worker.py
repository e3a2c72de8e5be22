"""Screening one photo, and the worker process that screens a scan's photos.

Kept apart from scan.py so the worker imports only what screening needs (numpy, PIL, onnxruntime,
dlib) — never SQLAlchemy, typer or rich (measured: ~30 MB per process).

A scan's worker process (`serve`, one per two cores) loads the face engine once and screens
photos in threads — decode, detect (onnxruntime on both cores), encode + judge — each on a
different photo, so both cores stay busy with one copy of each model and at most two photos
decoded in full.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from photocheck.groups import dhash
from photocheck.images import ImageError, load_image, os_error_text
from photocheck.results import PhotoResult, Verdict
from photocheck.screening import ReferenceSet, classify_face, photo_problem, photo_verdict


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
    brightness: float | None = None  # mean grey level of the photo (main detection pass's copy), 0..255


def error_result(path, channels, reason: str, **kw) -> PhotoResult:
    """An `error` photo (never "no faces"), with an error verdict on every channel judged."""
    return PhotoResult(path=str(path), verdict=Verdict.ERROR, reasons=[reason], error=reason,
                       channel_verdicts={ch: Verdict.ERROR for ch in channels}, **kw)


def decode_photo(path: Path, channels: list[str]):
    """(LoadedImage, None) or (None, an `error` result). Never raises."""
    try:
        return load_image(path), None
    except ImageError as exc:
        return None, error_result(path, channels, str(exc))
    except OSError as exc:
        return None, error_result(path, channels, f"cannot read file {os_error_text(path, exc)}")
    except Exception as exc:  # a decoder bug must not turn into "no faces"
        return None, error_result(path, channels, f"cannot decode image: {type(exc).__name__}: {exc}")


def detect_decoded(path: Path, img, engine, channels: list[str], inputs=None) -> Detected:
    """Detect the faces of a decoded photo and cut their crops. Never raises.
    `inputs`: engine.pass_inputs(img.view), if already made. Reads the photo only through
    img.view: its upright array is never made."""
    try:
        if inputs is None:
            inputs = engine.pass_inputs(img.view)
        detections = engine.detect(img.view, inputs)
        # Keep only what encoding reads (a padded crop per face), not the whole photo (48 MB for 12 MP).
        crops = engine.encoding_crops(img.view, detections)
    except Exception as exc:
        reason = f"face detection failed: {type(exc).__name__}: {exc}"
        return Detected(str(path), error_result(path, channels, reason, sha256=img.sha256, width=img.width,
                                                height=img.height))
    try:
        phash = dhash(inputs[0])  # the main pass's copy: plenty for a 9x8 hash
    except Exception:  # grouping is a convenience: never let it cost a verdict
        phash = None
    # A luminance-weighted mean would differ by a few levels; the plain mean is what was calibrated.
    brightness = float(inputs[0].mean(dtype="float64"))
    return Detected(str(path), None, img.sha256, img.width, img.height, phash, detections, crops, brightness)


def detect_photo(path: Path, engine, channels: list[str]) -> Detected:
    """Decode and detect one photo. Never raises: failures become an `error` result."""
    img, error = decode_photo(path, channels)
    if error is not None:
        return Detected(str(path), error)
    return detect_decoded(path, img, engine, channels)


def judge_photo(det: Detected, engine, references: ReferenceSet, thresholds,
                channel_refs: dict[str, ReferenceSet] | None = None) -> PhotoResult:
    """Encode a detected photo's faces and judge them. Never raises: failures become `error`."""
    if det.error is not None:
        return det.error
    channels = list(channel_refs or {})
    try:
        encodings = engine.encode_crops(det.crops)

        def judge(refs: ReferenceSet):
            return [classify_face(tuple(int(v) for v in d.box), enc, d.sharpness, refs, thresholds,
                                  detector_score=float(d.score), quality=d.quality)
                    for d, enc in zip(det.detections, encodings)]

        faces = judge(references)
        problem = photo_problem(det.brightness, thresholds)
        per_channel = {ch: photo_verdict(judge(refs), problem)[0] for ch, refs in (channel_refs or {}).items()}
    except Exception as exc:
        return error_result(det.path, channels, f"face detection failed: {type(exc).__name__}: {exc}",
                            sha256=det.sha256, width=det.width, height=det.height)
    verdict, reasons = photo_verdict(faces, problem)
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


# --- the worker process -----------------------------------------------------------------------

@dataclass
class WorkerSetup:
    """What a worker process needs, sent once when it starts."""
    references: ReferenceSet
    thresholds: object
    channel_refs: dict | None
    onnx_threads: int = 1  # onnxruntime threads of the detector (scan._pool_shape: the worker's cores)


# Photos decoded in full at once in a worker: the one being detected and the next one. Each 12 MP
# photo is 48 MB as decoded; more would only add memory (three at once, measured with an earlier
# layout: ~70 MB more for no clear gain in speed).
DECODED_AT_ONCE = 2


def serve(tasks, results, setup: WorkerSetup) -> None:
    """A scan's worker process: screen each path received on `tasks`, send ("photo", path,
    PhotoResult) on `results`; None ends it. ("ready",) or ("setup-failed", why) come first.
    Run by main() in a process started by scan._Worker.

    Three threads share one loaded engine, so that two cores stay busy with one copy of each
    model: decode (PIL: the photo and its working-size copies for the detector), detect
    (CenterFace on onnxruntime with `onnx_threads` threads) and encode + judge (dlib landmarks,
    the ResNet on onnxruntime). Each works on a different photo; all three spend their time in C
    code that releases the GIL. One photo detected on two onnxruntime threads is ~5%
    slower than two photos side by side on one thread each, but its peak is ~55 MB lower (one set
    of detector activations instead of two, and fewer big buffers alive at the same moment;
    measured: models/README.md, "Scan process layout"), which keeps a 2,000-photo scan under 500 MB.
    Bounded queues keep at most DECODED_AT_ONCE photos decoded in full; what reaches the encode
    thread is only each face's padded crop.

    Any unexpected exception ends the process (exit 70): the scan then retries the photos that
    were in flight here, one at a time, to find and error out the one that crashes."""
    import queue
    import sys
    import traceback

    _return_big_buffers_at_once()
    try:
        from photocheck.engine import FaceEngine

        engine = FaceEngine(setup.thresholds.detector, threads=setup.onnx_threads)
    except BaseException as exc:  # the scan reports it and stops: nothing can be screened
        results.send(("setup-failed", f"{type(exc).__name__}: {exc}"))
        return
    release_memory()  # what loading the models left behind
    results.send(("ready",))
    channels = list(setup.channel_refs or {})
    stop = object()
    decoded_slots = threading.Semaphore(DECODED_AT_ONCE)
    decoded: queue.Queue = queue.Queue(maxsize=1)
    detected: queue.Queue = queue.Queue(maxsize=2)

    def fatal(target):
        def run() -> None:
            try:
                target()
            except BaseException:  # pragma: no cover - a bug: never leave a half-working worker
                traceback.print_exc(file=sys.stderr)
                sys.stderr.flush()
                os._exit(70)
        return run

    def decode_loop() -> None:
        while (path := _receive(tasks)) is not None:
            decoded_slots.acquire()
            img, error = decode_photo(Path(path), channels)
            inputs = None
            if img is not None:
                try:
                    inputs = engine.pass_inputs(img.view)
                except Exception:  # detect_decoded makes them again and reports the failure
                    pass
            decoded.put((path, img, error, inputs))
        decoded.put(stop)

    def detect_loop() -> None:
        while (item := decoded.get()) is not stop:
            path, img, error, inputs = item
            del item
            det = (Detected(path, error) if error is not None
                   else detect_decoded(Path(path), img, engine, channels, inputs))
            del img, inputs
            decoded_slots.release()
            release_memory()  # hand the decoded photo's and the detector's buffers back
            detected.put(det)
        detected.put(stop)

    def encode_loop() -> None:
        while (det := detected.get()) is not stop:
            result = judge_photo(det, engine, setup.references, setup.thresholds, setup.channel_refs)
            try:
                results.send(("photo", det.path, result))
            except OSError:  # the scan is gone (kill -9): nobody to tell
                os._exit(0)

    threads = [threading.Thread(target=fatal(f), name=f.__name__, daemon=True) for f in (decode_loop, detect_loop)]
    for t in threads:
        t.start()
    fatal(encode_loop)()
    for t in threads:
        t.join()


def main() -> None:
    """Entry point of a worker process started by scan._Worker: `python -c ... TASK_FD RESULT_FD`."""
    import sys
    from multiprocessing.connection import Connection

    # Ctrl-C is handled by the scan alone (it marks the scan interrupted and stops its workers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tasks = Connection(int(sys.argv[1]), writable=False)
    results = Connection(int(sys.argv[2]), readable=False)
    setup = _receive(tasks)
    if setup is not None:
        serve(tasks, results, setup)


def _receive(tasks):
    """The next message from the scan; None at the end, or when the scan is gone (kill -9)."""
    try:
        return tasks.recv()
    except (EOFError, OSError):
        return None


def release_memory() -> None:
    """Give freed decode/detection buffers back to the OS after each photo (glibc keeps them
    otherwise: measured 300-380 MB vs a flat 147 MB per worker on 4000x3000 photos)."""
    if _libc is not None:
        try:
            _libc.malloc_trim(0)
        except Exception:  # pragma: no cover - not glibc
            pass


# Buffers from this size up get their own mmap in a worker (_return_big_buffers_at_once).
MMAP_THRESHOLD = 4 << 20


def _return_big_buffers_at_once() -> None:
    """glibc: serve every buffer of MMAP_THRESHOLD or more (decoded photos, the detector's
    working copies) with its own mmap, so freeing it returns it to the OS at once, and use one
    malloc arena for all threads. By default glibc raises that threshold to the largest buffer
    freed so far and gives each thread its own arena, so each of a worker's threads kept freed
    photo-sized buffers. Smaller buffers (resize bands, the detector's band buffers) come from the
    heap and are reused. Measured (models/README.md, "Scan process layout"): 1 MB page-faulted
    those in afresh each time (~0.1 CPU s of system time a photo); 16 MB let the heap fragment
    over a long scan (2,000 photos: 506 MB against 478 MB with 4 MB, in the same time)."""
    if _libc is None:
        return
    try:
        _libc.mallopt(-8, 1)               # M_ARENA_MAX
        _libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (fixed: no dynamic raise)
    except Exception:  # pragma: no cover - not glibc
        pass


_libc = None
if sys.platform.startswith("linux"):  # glibc tuning only; elsewhere the allocator is left as it is
    try:
        import ctypes
        import ctypes.util

        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.malloc_trim  # noqa: B018  (AttributeError off glibc)
        _libc.mallopt  # noqa: B018
    except Exception:  # pragma: no cover - musl
        _libc = None
