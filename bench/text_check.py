"""Time of the scan's text check per photo (read the bytes again, sha256, parse the tags, match a
2,000-name roster) on real photos; the first pass (plugin imports) is not timed.

Usage: .venv/bin/python bench/text_check.py ../shared/faces
"""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from photocheck.images import file_sha256
from photocheck.names import NameIndex, Person
from photocheck.results import PhotoResult, Verdict
from photocheck.textcheck import TextChecker


def main(root: str) -> None:
    files = [p for p in Path(root).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".heic", ".webp")]
    rng = random.Random(0)
    given = ["Xiomara", "Kalinda", "Zoë", "Aoife", "Tobias", "Priya", "Noah", "Maya"]
    people = [Person(f"S{i:04d}", rng.choice(given), f"Family{i}") for i in range(2000)]
    checker = TextChecker(index=NameIndex.build(people, 4),
                          listing={p.student_id: ("all", None, False) for p in people})
    results = [PhotoResult(path=str(f), verdict=Verdict.CLEAR, sha256=file_sha256(f)) for f in files]
    for r in results:  # warm-up: Pillow's plugins are imported on first use
        checker.apply(r)
    t = time.perf_counter()
    for r in results:
        checker.apply(r)
    dt = time.perf_counter() - t
    size = sum(f.stat().st_size for f in files)
    print(f"{len(files)} photos, {size / 1e6:.1f} MB, roster of {len(people)}: {dt:.2f} s, "
          f"{1000 * dt / len(files):.1f} ms/photo")


if __name__ == "__main__":
    main(sys.argv[1])
