"""A bound of its own for MeshLab's self-intersection search.

MeshLab tests every pair of faces whose bounding boxes overlap. On a surface that pair count
is a small multiple of the face count (neighbours); on a soup of random triangles almost every
pair overlaps, and the search needs hours and gigabytes for 30,000 triangles. The count is
estimated from a fixed random sample of faces before the search runs, so such a file is
stopped at once with the figure instead of by the process limits minutes later.
"""

from __future__ import annotations

import numpy as np

SAMPLE_FACES = 1500
# Below this many estimated pairs the search is cheap whatever their share.
CHEAP_PAIRS = 5_000_000


def overlapping_pairs_per_face(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Estimated number of other faces whose bounding box overlaps a face's, on average.

    Exact for meshes of at most ``SAMPLE_FACES`` faces; otherwise from the overlap share of
    ``SAMPLE_FACES``² pairs of two fixed random samples (seeded: the same file always gives
    the same figure).
    """
    n = len(faces)
    if n < 2:
        return 0.0
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
    lo, hi = tri.min(axis=1), tri.max(axis=1)
    if n <= SAMPLE_FACES:
        a = b = np.arange(n)
    else:
        rng = np.random.default_rng(0)
        a = rng.integers(0, n, SAMPLE_FACES)
        b = rng.integers(0, n, SAMPLE_FACES)
    overlap = np.ones((len(a), len(b)), dtype=bool)
    for axis in range(3):
        overlap &= lo[a, axis][:, None] <= hi[b, axis][None, :]
        overlap &= lo[b, axis][None, :] <= hi[a, axis][:, None]
    overlap &= a[:, None] != b[None, :]
    pairs = len(a) * len(b) - int((a[:, None] == b[None, :]).sum())
    return float(overlap.sum()) / max(pairs, 1) * (n - 1)


def search_too_costly(per_face: float, faces: int, bound: float) -> bool:
    """Is the estimated pair count both above the per-face bound and not cheap anyway?"""
    return per_face > bound and per_face * faces / 2 > CHEAP_PAIRS
