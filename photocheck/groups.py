"""Near-duplicate (burst) grouping: a 64-bit dHash per photo, groups by Hamming distance.

Grouping is for reviewers only: every photo keeps its own verdict, and a group's verdict is the
worst of its members, so a blocked photo can never hide behind a clear one.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from photocheck.results import PhotoResult, worst

if TYPE_CHECKING:
    import numpy as np

# Below this many hashed photos the pairs are compared in plain Python: importing numpy would cost
# more than the comparisons (an unchanged rescan imports no numpy).
_NUMPY_FROM = 1000


def dhash(rgb: np.ndarray) -> str:
    """64-bit difference hash of an upright RGB image: 9x8 grey, one bit per horizontal gradient."""
    import numpy as np
    from PIL import Image

    a = np.asarray(rgb)
    # Every 4th pixel of a 12 MP photo is plenty for a 9x8 hash and 16x cheaper to filter.
    step = 4 if min(a.shape[:2]) >= 512 else 1
    im = Image.fromarray(np.ascontiguousarray(a[::step, ::step]))
    f = max(1, min(im.width // 72, im.height // 64))
    if f > 1:
        im = im.reduce(f)
    g = np.asarray(im.convert("L").resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return f"{int(np.packbits(bits).view('>u8')[0]):016x}"


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def assign_groups(photos: Sequence[PhotoResult], max_hamming: int) -> None:
    """Set group / group_size / group_verdict on each photo (in place).

    Photos whose hashes are within max_hamming bits are linked; groups are the connected
    components (single-link), numbered 1.. in the photos' order. Photos without a hash
    (errors) are groups of one.
    """
    n = len(photos)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    idx = [i for i, p in enumerate(photos) if p.phash]
    if idx and max_hamming >= 0:
        for k, j in _near_pairs([int(photos[i].phash, 16) for i in idx], max_hamming):
            a, b = find(idx[k]), find(idx[j])
            if a != b:
                parent[b] = a
    number: dict[int, int] = {}
    members: dict[int, list[PhotoResult]] = {}
    for i, p in enumerate(photos):
        r = find(i)
        number.setdefault(r, len(number) + 1)
        members.setdefault(r, []).append(p)
    for i, p in enumerate(photos):
        r = find(i)
        group = members[r]
        p.group = number[r]
        p.group_size = len(group)
        p.group_verdict = worst(*(m.verdict for m in group))


def _near_pairs(hashes: list[int], max_hamming: int):
    """(k, j) with k < j for every pair of hashes within max_hamming bits, in order of k then j."""
    if len(hashes) < _NUMPY_FROM:
        for k, hk in enumerate(hashes):
            for j in range(k + 1, len(hashes)):
                if (hk ^ hashes[j]).bit_count() <= max_hamming:
                    yield k, j
        return
    import numpy as np

    h = np.array(hashes, dtype=np.uint64)
    for k in range(len(hashes) - 1):
        d = np.bitwise_count(h[k + 1:] ^ h[k])
        for j in np.nonzero(d <= max_hamming)[0]:
            yield k, k + 1 + int(j)
