"""Which faces a repair invented and which it removed, face by face, for the 3D viewer.

The repair report (``fidelity.fidelity``) sums the changes up as patches and regions; the viewer
needs the faces themselves, as indices into each mesh as stored. A face is "the same" in both
meshes when its three corners sit at bit-identical positions (``-0.0`` equals ``0.0``), in any
order and either orientation: a repair that only re-orients or reorders a face has not changed
the surface. Faces are compared as sets of corner positions, so a duplicated face counts as
present while one copy of it remains.

A closed candidate (``close.py``) cuts non-manifold geometry apart by giving each fan of a
vertex its own copy and moving the extra copies a recorded distance (at most a hundredth of a
millimetre or so) towards their fan. The faces around such a copy are the uploaded faces, so
``surface_changes`` takes a snap distance: a repaired vertex that is not at an original position
but lies within it of one (nearest original vertex, plus the float32 rounding of the saved
file) counts as that original position. With no snap distance the match stays exact.
The counts then agree with the repair report's fidelity figures (``fidelity.fidelity_and_match``
matches every repaired vertex to its nearest original vertex, at any distance): invented faces
= ``fidelity.invented.faces``, removed = ``removed.faces + removed.zero_area_faces_dropped``,
``moved_vertices`` = ``kept_surface.moved_vertices``. They can differ only where the report
matched a corner farther away than the snap distance (here: not the same face, so shown).

Everything is one vectorised pass (hash-sort of the corner positions of both meshes, one
integer key per face, a sorted membership test): measured on a busy 2-core machine, 0.7 s for
two meshes of 1.3 million triangles each; beyond 2**21 distinct positions (about 4 million
triangles) face keys need a further sort, ~1.5 s per million triangles. Snapping looks up
only repaired vertices at no original position: +0.3 s at 1.3 million triangles even with
100 000 moved vertices spread over the model.
"""

from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from pocprint.mesh.topology import face_areas, unique_inverse

# Below this many distinct positions a face's three corner labels pack into one int64 (n**3
# fits); above it, corner pairs are numbered first (a sort more).
PACKED_LABELS = 2**21
# Snap distances are capped here (mm): far below anything clinically relevant, so a wrong
# report cannot make the comparison call a visibly moved face "kept".
MAX_SNAP_MM = 0.05
# Slack for the float32 rounding of the saved meshes, in float32 spacings at the largest
# coordinate.
SNAP_FLOAT32_STEPS = 4


def surface_changes(
    original: trimesh.Trimesh, repaired: trimesh.Trimesh, snap_mm: float = 0.0
) -> dict:
    """Faces of ``repaired`` not in ``original`` (invented) and of ``original`` not in
    ``repaired`` (removed), matched by the positions of their three corners.

    Corners match when bit-identical; with ``snap_mm`` > 0 (the largest distance a closed
    candidate moved a split vertex copy, see module doc), a repaired vertex within that
    distance of an original vertex also takes the position of the nearest one.

    Returns ``{"invented": int64 indices of repaired faces, "removed": int64 indices of
    original faces, "counts": {...}}``, indices ascending. Meshes need not be welded.
    ``counts["removed_zero_area"]`` says how many removed faces had no area (the repair
    report counts those apart from the removed surface); ``counts["moved_vertices"]`` how
    many snapped repaired vertices are corners of kept faces (the repair report's
    ``kept_surface.moved_vertices``) and ``counts["snap_mm"]`` the distance used.
    """
    if not (0.0 <= snap_mm <= MAX_SNAP_MM):
        raise ValueError(f"snap distance {snap_mm!r} mm is outside 0 to {MAX_SNAP_MM} mm")
    v0, f0 = _arrays(original)
    v1, f1 = _arrays(repaired)
    labels, n_positions = _position_labels(np.vstack([v0, v1]))
    snapped = _snap(v0, v1, labels, n_positions, snap_mm)
    keys = _unordered_keys(np.vstack([labels[f0], labels[len(v0) + f1]]), n_positions)
    in_original, in_repaired = _mutual_membership(keys[: len(f0)], keys[len(f0) :])
    invented = np.flatnonzero(~in_original)
    removed = np.flatnonzero(~in_repaired)
    zero_area = int((face_areas(v0, f0[removed]) <= 0.0).sum()) if len(removed) else 0
    moved = 0
    if len(snapped):
        on_kept = np.zeros(len(v1), dtype=bool)
        on_kept[f1[in_original].ravel()] = True
        moved = int(on_kept[snapped].sum())
    return {
        "invented": invented,
        "removed": removed,
        "counts": {
            "original_faces": len(f0),
            "repaired_faces": len(f1),
            "kept": len(f1) - len(invented),
            "invented": len(invented),
            "removed": len(removed),
            "removed_zero_area": zero_area,
            "moved_vertices": moved,
            "snap_mm": float(snap_mm),
        },
    }


def _snap(
    v0: np.ndarray, v1: np.ndarray, labels: np.ndarray, n_positions: int, snap_mm: float
) -> np.ndarray:
    """Give repaired vertices near (not at) an original position that position's label, in
    place; returns their indices into ``v1``.

    Only repaired vertices at no original position are looked up (a handful on a candidate),
    against a k-d tree of the original vertices near them.
    """
    if snap_mm <= 0.0 or len(v0) == 0 or len(v1) == 0:
        return np.zeros(0, dtype=np.int64)
    at_original = np.zeros(n_positions, dtype=bool)
    at_original[labels[: len(v0)]] = True
    loose = np.flatnonzero(~at_original[labels[len(v0) :]])
    if len(loose) == 0:
        return loose
    largest = float(np.abs(np.vstack([v0, v1])).max())
    reach = snap_mm + SNAP_FLOAT32_STEPS * float(np.spacing(np.float32(largest)))
    # Only original vertices within reach of the loose ones' box can be their nearest.
    low, high = v1[loose].min(axis=0) - reach, v1[loose].max(axis=0) + reach
    near = np.flatnonzero(((v0 >= low) & (v0 <= high)).all(axis=1))
    if len(near) == 0:
        return np.zeros(0, dtype=np.int64)
    distance, nearest = cKDTree(v0[near]).query(v1[loose], k=1, distance_upper_bound=reach)
    hit = np.isfinite(distance)
    labels[len(v0) + loose[hit]] = labels[near[nearest[hit]]]
    return loose[hit]


def _position_labels(points: np.ndarray) -> tuple[np.ndarray, int]:
    """(label per row, number of labels): rows with bit-identical coordinates share a label.

    ``-0.0`` equals ``0.0``. ``analyse.group_identical_rows`` does the same but also numbers
    labels in order of first occurrence, which the comparison does not need and which costs
    about twice as much.
    """
    bits = np.ascontiguousarray(np.asarray(points, dtype=np.float64) + 0.0).view(np.uint64)
    return _row_labels(bits.reshape(-1, 3))


def _row_labels(rows: np.ndarray) -> tuple[np.ndarray, int]:
    """(label per row, number of labels) for an (n, 3) uint64 array: equal rows, equal labels.

    Rows are hashed and sorted once and every group of equal hashes is verified against the
    rows themselves, with an exact (slower) lexsort if two different rows share a hash.
    """
    n = len(rows)
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    h = _row_hash(rows)
    order = np.argsort(h)
    differs = _row_changes(np.take(rows, order, axis=0))  # np.take: ~4x faster than rows[order]
    sorted_h = h[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = sorted_h[1:] != sorted_h[:-1]
    if (differs & ~starts[1:]).any():  # a hash collision: fall back to an exact sort
        order = np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))
        starts[1:] = _row_changes(np.take(rows, order, axis=0))
    else:
        starts[1:] = differs  # equal hashes of different rows are ruled out above
    labels = np.empty(n, dtype=np.int64)
    labels[order] = np.cumsum(starts) - 1
    return labels, int(starts.sum())


def _row_hash(bits: np.ndarray) -> np.ndarray:
    """A 64-bit hash of the three coordinate bit patterns of each row (collisions possible).

    Each coordinate is folded in through a full avalanche (the splitmix64 finaliser), so
    positions that differ only in signs, e.g. (x, y, z) and (-x, -y, z) on a centred model,
    do not collide: a hash that only multiplies and XORs the coordinates cancels such pairs.
    """
    with np.errstate(over="ignore"):
        h = _avalanche(bits[:, 0])
        h = _avalanche(h ^ bits[:, 1])
        return _avalanche(h ^ bits[:, 2])


def _avalanche(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _row_changes(rows: np.ndarray) -> np.ndarray:
    """Whether each row after the first differs from the row before it."""
    change = rows[1:, 0] != rows[:-1, 0]
    for column in range(1, rows.shape[1]):
        change |= rows[1:, column] != rows[:-1, column]
    return change


def _mutual_membership(keys0: np.ndarray, keys1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(whether each of keys1 is in keys0, whether each of keys0 is in keys1).

    Both sides are sorted once and searched with sorted needles, which keeps the binary
    searches cache-friendly (unsorted needles are ~10x slower on millions of keys).
    """
    order0, order1 = np.argsort(keys0), np.argsort(keys1)
    s0, s1 = keys0[order0], keys1[order1]
    return _scatter(order1, _found(s0, s1)), _scatter(order0, _found(s1, s0))


def _found(reference: np.ndarray, needles: np.ndarray) -> np.ndarray:
    if len(reference) == 0:
        return np.zeros(len(needles), dtype=bool)
    pos = np.minimum(np.searchsorted(reference, needles), len(reference) - 1)
    return reference[pos] == needles


def _scatter(order: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.empty(len(order), dtype=bool)
    out[order] = values
    return out


def _unordered_keys(corners: np.ndarray, n: int) -> np.ndarray:
    """One int64 per row of three labels in [0, n), equal for the same labels in any order.

    Like ``analyse.face_keys`` but ordering the corners with min/max (several times faster
    than ``np.sort(axis=1)``). Beyond 2**21 labels three do not fit in one int64: corner pairs
    are numbered first, in one call for both meshes so the numbers are shared.
    """
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    lo = np.minimum(np.minimum(a, b), c)
    hi = np.maximum(np.maximum(a, b), c)
    mid = a + b + c - lo - hi
    n = np.int64(n)
    if n < PACKED_LABELS:
        return (lo * n + mid) * n + hi
    pair_id = unique_inverse(lo * n + mid)[0]  # exact in int64 for n < 2**31
    return pair_id * n + hi


def _arrays(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(mesh.vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError("a face refers to a vertex that does not exist")
    return vertices, faces
