"""The scan's worker pool, both ends of the pipe: the scan side (run_pool, starting and feeding
worker processes, replacing one that dies) and the worker side (main, serve: one process per two
cores screening photos with photocheck.pipeline in threads), and the glibc memory tuning they use.

Kept apart from scan.py so a worker imports only what screening needs (numpy, PIL, onnxruntime,
dlib) — never SQLAlchemy, typer or rich (memory: docs/benchmarks.md).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import Callable, Iterable

from photocheck.pipeline import Detected, decode_photo, detect_decoded, error_result, judge_photo
from photocheck.results import PhotoResult
from photocheck.screening import ReferenceSet


@dataclass
class WorkerSetup:
    """What a worker process needs, sent once when it starts."""
    references: ReferenceSet
    thresholds: object
    channel_refs: dict | None
    onnx_threads: int = 1  # onnxruntime threads of the detector (pool_shape: the worker's cores)


# --- the scan's side ------------------------------------------------------------------------------


def pool_shape(jobs: int) -> tuple[int, int]:
    """(worker processes, onnxruntime threads of each one's detector) for `jobs` cores: one worker
    per two cores.

    A worker's threads (decode, detect, encode) keep two cores busy with one copy of each model;
    its one detect thread runs CenterFace on both cores: a lower peak than two detect threads on
    one core each, for a little speed (docs/benchmarks.md, "Scan process layout")."""
    workers = max(1, jobs // 2)
    return workers, max(1, jobs // workers)


# Photos sent ahead to a worker: one being decoded, one decoded and waiting, one being detected,
# one being encoded. More would only wait in its queues (and be re-tried if it crashed).
IN_FLIGHT_PER_WORKER = 4


class _Worker:
    """A worker process (main, then serve) and the photos sent to it whose results
    are not back yet.

    Started with subprocess, not multiprocessing: no forkserver or resource-tracker process beside
    it, it starts clean (no copied database connections or threads), and it is in its
    own session, so Ctrl-C reaches only the scan, which stops it. It ends by itself when the
    scan is gone (kill -9): its task pipe then reads as closed."""

    def __init__(self, setup: WorkerSetup):
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from photocheck.worker import main; main()", str(task_r), str(result_w)],
                pass_fds=(task_r, result_w), stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(task_r)  # the child's ends: a dead child then reads as EOF here
            os.close(result_w)
        self.tasks = Connection(task_w, readable=False)
        self.results = Connection(result_r, writable=False)
        self.tasks.send(setup)
        self.in_flight: list[str] = []
        self.ready = False

    def send(self, path: str) -> None:
        self.tasks.send(path)
        self.in_flight.append(path)

    def stop(self, now: bool) -> None:
        if not now:
            try:
                self.tasks.send(None)
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.tasks.close()
        self.results.close()


def run_pool(files: list[Path], jobs: int, references: ReferenceSet, thresholds,
              record: Callable[[PhotoResult], Iterable[Path]], channel_refs=None) -> None:
    """Screen `files` in worker processes (serve), recording each result as it arrives;
    the files `record` returns are screened too.

    A worker that dies (out of memory, a decoder crash) is replaced, and the photos it had in
    flight are screened again one at a time: the photo that kills a worker alone becomes an
    `error`, the others are screened normally."""
    n_workers, onnx_threads = pool_shape(jobs)
    setup = WorkerSetup(references, thresholds, channel_refs, onnx_threads)
    channels = list(channel_refs or {})
    pending = deque(str(f) for f in files)
    retry: deque[str] = deque()     # in flight in a worker that died: screened again, alone
    retried: set[str] = set()
    workers = [_Worker(setup) for _ in range(min(n_workers, len(files)))]

    def feed(w: _Worker) -> None:
        if not w.ready or (w.in_flight and w.in_flight[0] in retried):
            return
        if retry:
            if not w.in_flight:
                path = retry.popleft()
                retried.add(path)
                w.send(path)
            return
        while pending and len(w.in_flight) < IN_FLIGHT_PER_WORKER:
            w.send(pending.popleft())

    def died(w: _Worker) -> _Worker:
        w.stop(now=True)
        if not w.ready:
            raise RuntimeError(f"a screening worker died while loading the face models (exit code {w.proc.returncode})")
        for path in w.in_flight:
            if path in retried:  # it crashed a worker on its own: that photo is the cause
                pending.extend(str(f) for f in record(error_result(
                    path, channels, f"screening crashed the worker (exit code {w.proc.returncode}); "
                                    "the photo may be corrupt or too large to decode")))
            else:
                retry.append(path)
        return _Worker(setup)

    try:
        while pending or retry or any(w.in_flight for w in workers):
            for w in workers:
                feed(w)
            for conn in mp_wait([w.results for w in workers]):
                i = next(i for i, w in enumerate(workers) if w.results is conn)
                w = workers[i]
                try:
                    kind, *message = conn.recv()
                except (EOFError, OSError):
                    workers[i] = died(w)
                    continue
                if kind == "setup-failed":
                    raise RuntimeError(f"the screening worker could not load the face models: {message[0]}")
                if kind == "ready":
                    w.ready = True
                    continue
                path, result = message
                w.in_flight.remove(path)
                pending.extend(str(f) for f in record(result))
    except BaseException:
        for w in workers:
            w.stop(now=True)
        raise
    for w in workers:
        w.stop(now=False)


# --- the worker process ---------------------------------------------------------------------------

# Photos decoded in full at once in a worker: the one being detected and the next one. More would
# only add memory (docs/benchmarks.md).
DECODED_AT_ONCE = 2


def serve(tasks, results, setup: WorkerSetup) -> None:
    """A scan's worker process: screen each path received on `tasks`, send ("photo", path,
    PhotoResult) on `results`; None ends it. ("ready",) or ("setup-failed", why) come first.
    Run by main() in a process started by _Worker.

    Three threads share one loaded engine, so that two cores stay busy with one copy of each
    model: decode (PIL: the photo and its working-size copies for the detector), detect
    (CenterFace on onnxruntime with `onnx_threads` threads) and encode + judge (dlib landmarks,
    the ResNet on onnxruntime). Each works on a different photo; all three spend their time in C
    code that releases the GIL. One detect thread (see pool_shape) keeps one set of detector
    activations alive, not two. Bounded queues keep at most DECODED_AT_ONCE photos decoded in full; what reaches the encode
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
    """Entry point of a worker process started by _Worker: `python -c ... TASK_FD RESULT_FD`."""
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
    otherwise, and a worker's memory grows: docs/benchmarks.md)."""
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
    heap and are reused. A lower threshold page-faults those in afresh every time, a higher one
    lets the heap fragment over a long scan (docs/benchmarks.md, "Scan process layout")."""
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
