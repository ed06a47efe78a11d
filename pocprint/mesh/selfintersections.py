"""MeshLab's self-intersecting face count of a repaired mesh, on the smallest sub-mesh that
gives the same count as the whole (the count is MeshLab's costliest step)."""

from __future__ import annotations

import numpy as np

from pocprint.mesh.analyse import count_self_intersections
from pocprint.mesh.topology import isin_sorted

# Above this share of the faces, the sub-mesh would save little: count on the whole mesh.
_SUBSET_SHARE_LIMIT = 0.5


def after_self_intersections(
    v0: np.ndarray,
    f0: np.ndarray,
    flagged0: np.ndarray,
    v1: np.ndarray,
    f1: np.ndarray,
    match: dict,
) -> tuple[int, str]:
    """MeshLab's self-intersecting face count of the repaired mesh, and how it was obtained.

    MeshLab flags a face when it intersects another face; each pair whose bounding boxes
    overlap is tested once (lower index first) by a test that depends only on the two faces'
    corner positions, corner order and shared vertices. A kept face whose corners are original
    vertices that did not move, in their original order, and in the same relative face order
    ("unchanged"; a face moved to another place in the face list, or with a moved corner such
    as a copy of a split vertex, counts as changed) is tested against another unchanged face
    exactly as before the repair: repaired vertices have distinct positions (welded), so two
    unchanged faces share a vertex exactly when their original faces did. So an unchanged face that was not flagged before can
    only be flagged now by a changed face (invented, or with its corners reordered), whose
    bounding box it must then overlap. Counting on the sub-mesh of: changed faces, unchanged
    faces flagged before, and unchanged faces near a changed face's bounding box (a superset
    of those overlapping it) therefore gives the same count as the whole mesh. Otherwise, or
    when the sub-mesh would hold most faces, the whole mesh is counted.
    """
    if len(f1) == 0:
        return 0, "no faces"
    nearest, displacement, kept, origin = (
        match["nearest"],
        match["displacement"],
        match["kept"],
        match["origin"],
    )
    full = "whole repaired mesh"
    if (nearest < 0).any():
        return count_self_intersections(v1, f1), full
    unchanged = kept.copy()
    idx = np.flatnonzero(kept)
    unchanged[idx] = (nearest[f1[idx]] == f0[origin[idx]]).all(axis=1) & (
        displacement[f1[idx]] == 0
    ).all(axis=1)
    unchanged[np.flatnonzero(unchanged)[_out_of_order(origin[unchanged])]] = False
    include = ~unchanged
    include[unchanged] = flagged0[origin[unchanged]]
    changed = np.flatnonzero(~unchanged)
    if len(changed):
        include |= unchanged & _near_boxes(v1, f1, changed)
    if include.sum() > _SUBSET_SHARE_LIMIT * len(f1):
        return count_self_intersections(v1, f1), full
    sub = f1[include]
    if len(sub) == 0:
        return 0, "no changed or previously intersecting faces: none"
    used, compact = np.unique(sub, return_inverse=True)
    count = count_self_intersections(v1[used], compact.reshape(-1, 3))
    return count, (
        f"sub-mesh of {len(sub)} faces: changed by the repair, intersecting before, or near "
        "a changed face (equal to the whole-mesh count, see selfintersections.after_self_intersections)"
    )


def _out_of_order(values: np.ndarray) -> np.ndarray:
    """A small set of positions whose removal leaves ``values`` strictly increasing.

    Either the values not below every later value, or those not above every earlier value
    (whichever set is smaller); a face MeshLab moved to another place in the face list is
    then treated as changed.
    """
    if len(values) < 2:
        return np.zeros(len(values), dtype=bool)
    later_min = np.minimum.accumulate(values[::-1])[::-1]
    moved_up = np.r_[values[:-1] >= later_min[1:], False]
    earlier_max = np.maximum.accumulate(values)
    moved_down = np.r_[False, values[1:] <= earlier_max[:-1]]
    return moved_up if moved_up.sum() <= moved_down.sum() else moved_down


def _near_boxes(vertices: np.ndarray, faces: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per face: may its bounding box overlap the bounding box of a ``targets`` face?

    A superset (never misses an overlap): boxes are padded, and the few faces larger than
    the grid cell are always reported. Faces are put in a grid by the cell of their box's
    lower corner; a face of size up to one cell can only overlap a target box from a cell
    between one below the target's lower cell and its upper cell on each axis. Targets
    larger than the cell (long hole-fill triangles) use a second grid of their own size.
    """
    tri = vertices[faces]
    lo = tri.min(axis=1)
    hi = tri.max(axis=1)
    span = float(np.ptp(vertices, axis=0).max()) if len(vertices) else 0.0
    pad = 1e-9 * max(span, 1.0)
    lo -= pad
    hi += pad
    size = (hi - lo).max(axis=1)
    cell = max(float(np.quantile(size, 0.999)), pad)
    near = size > cell  # large faces: always included
    origin = lo.min(axis=0)
    big = size[targets] > cell
    for group in (targets[~big], targets[big]):
        if len(group) == 0:
            continue
        group_cell = max(cell, float(size[group].max()))
        low_cell = np.floor((lo - origin) / group_cell).astype(np.int64)
        dims = low_cell.max(axis=0) + 4
        if float(np.prod(dims.astype(float))) > 2.0**62:  # keys would overflow: every face
            return np.ones(len(faces), dtype=bool)
        t_lo = low_cell[group] - 1
        t_hi = np.floor((hi[group] - origin) / group_cell).astype(np.int64)
        # Each target covers at most 3 cells per axis (its size is at most one cell).
        offsets = np.stack(np.meshgrid([0, 1, 2], [0, 1, 2], [0, 1, 2]), -1).reshape(-1, 3)
        cand = t_lo[:, None, :] + offsets[None, :, :]
        cand = cand[(cand <= t_hi[:, None, :]).all(axis=2)] + 1  # + 1: no negative cell

        def key(c: np.ndarray, dims: np.ndarray = dims) -> np.ndarray:
            return (c[..., 0] * dims[1] + c[..., 1]) * dims[2] + c[..., 2]

        near |= isin_sorted(key(low_cell + 1), np.unique(key(cand)))
    return near
