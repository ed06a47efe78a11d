"""Rays against triangles: the one Moller-Trumbore test, the grid-accelerated caster of the
thin-wall estimate, and the parity count that tells a cavity from an inside-out shell."""

from __future__ import annotations

import numpy as np

# Ray-face pairs tested at once (memory of the vectorised test).
_PAIR_CHUNK = 250_000
# Skewed so a ray from a vertex does not run along axis-aligned edges.
_PARITY_DIRECTION = np.array([0.5781, 0.5749, 0.5793])


def count_ray_hits(origin: np.ndarray, tri: np.ndarray) -> int:
    """Number of triangles ``tri`` (n x 3 x 3) hit by one skewed ray from ``origin``."""
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    n = len(tri)
    t = ray_triangle_distance(
        np.broadcast_to(origin, (n, 3)),
        np.broadcast_to(_PARITY_DIRECTION, (n, 3)),
        tri[:, 0],
        e1,
        e2,
        min_det=1e-18,
    )
    return int(((t > 0) & np.isfinite(t)).sum())


class RayCaster:
    """First hit of short rays against a triangle soup, with hashed grids as broad phase.

    Faces are grouped by radius (largest centroid-to-corner distance) in powers of two, each
    group with its own grid of centroids. Along every ray, a group places points spaced at
    most twice its radius, so any face of the group crossing the ray has its centroid within
    ``search`` of a point; the 27 grid cells around the point give the candidates. The depth
    is walked in segments: after a segment, rays already hit before its end stop (no later
    face can be nearer). ``work`` counts grid look-ups and candidate pairs, for a budget.
    """

    MAX_SEGMENTS = 64
    _OFFSET = 1 << 20  # cell indices are shifted by this, keys packed in 21 bits per axis
    _NEIGHBOURS = np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1]), -1).reshape(-1, 3)
    # Key of a neighbour cell = key of the cell + this (the packed fields never carry over).
    _NEIGHBOUR_KEYS = (_NEIGHBOURS[:, 0] << 42) + (_NEIGHBOURS[:, 1] << 21) + _NEIGHBOURS[:, 2]

    def __init__(self, tri, e1, e2, valid, depth: float, eps: float) -> None:
        self.tri, self.e1, self.e2, self.depth, self.eps = tri, e1, e2, depth, eps
        self.work = 0
        centroids = tri.mean(axis=1)
        self.centroids = centroids
        offsets = tri - centroids[:, None, :]
        radius = np.sqrt(np.einsum("ijk,ijk->ij", offsets, offsets).max(axis=1))
        base = max(float(np.median(radius[valid])), 1e-9 * depth)
        level = np.zeros(len(tri), dtype=np.int64)
        larger = radius > base
        level[larger] = np.ceil(np.log2(radius[larger] / base)).astype(np.int64)
        level[~valid] = -1
        # About four points of the finest group per segment, at most MAX_SEGMENTS segments.
        self.segment = max(depth / self.MAX_SEGMENTS, min(depth, 8 * base))
        self.origin = centroids.min(axis=0) - depth
        extent = float((centroids.max(axis=0) + depth - self.origin).max())
        self.levels = []
        for k in np.unique(level[level >= 0]):
            members = np.flatnonzero(level == k)
            reach = base * 2.0**k
            n_points = max(1, int(np.ceil(depth / (2 * reach))))
            spacing = depth / n_points
            search = reach + spacing / 2
            # Cells may not be so small that indices overflow the packed key.
            cell = max(search, extent / (self._OFFSET - 4))
            keys = self._keys(np.floor((centroids[members] - self.origin) / cell).astype(np.int64))
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            # Occupied cells only (one binary search per query instead of two on all faces).
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            counts = np.diff(np.append(starts, len(keys)))
            cells = (keys[starts], starts, counts)
            self.levels.append((members[order], cells, cell, search, spacing, n_points))

    def _keys(self, cells: np.ndarray) -> np.ndarray:
        shifted = cells + self._OFFSET
        return (shifted[..., 0] << 42) | (shifted[..., 1] << 21) | shifted[..., 2]

    def first_hits(
        self, origins: np.ndarray, directions: np.ndarray, own: np.ndarray
    ) -> np.ndarray:
        """Distance to the first face hit (excluding each ray's own face), inf if none."""
        best = np.full(len(origins), np.inf)
        active = np.arange(len(origins))
        n_segments = int(np.ceil(self.depth / self.segment - 1e-9))
        for j in range(n_segments):
            if len(active) == 0:
                break
            seg_start, seg_end = j * self.segment, min((j + 1) * self.segment, self.depth)
            last = j == n_segments - 1
            for members, keys, cell, search, spacing, n_points in self.levels:
                # Points whose covered stretch [i, i+1) * spacing starts in this segment.
                first_i = int(np.ceil(seg_start / spacing - 1e-9))
                stop_i = n_points if last else int(np.ceil(seg_end / spacing - 1e-9))
                if stop_i <= first_i:
                    continue
                steps = spacing * (np.arange(first_i, min(stop_i, n_points)) + 0.5)
                self._probe(
                    origins, directions, own, active, steps, best, members, keys, cell, search
                )
            active = active[best[active] > seg_end]
        return best

    def _probe(self, origins, directions, own, active, steps, best, members, keys, cell, search):
        """Candidates of one face group near points ``steps`` along the active rays."""
        points = origins[active, None, :] + directions[active, None, :] * steps[:, None]
        points = points.reshape(-1, 3)
        ray_of_point = np.repeat(active, len(steps))
        cells = np.floor((points - self.origin) / cell).astype(np.int64)
        query = (self._keys(cells)[:, None] + self._NEIGHBOUR_KEYS[None, :]).ravel()
        cell_keys, cell_starts, cell_counts = keys
        slot = np.minimum(np.searchsorted(cell_keys, query), len(cell_keys) - 1)
        found = cell_keys[slot] == query
        first = cell_starts[slot]
        count = np.where(found, cell_counts[slot], 0)
        total = int(count.sum())
        self.work += len(query) + total
        if total == 0:
            return
        point = np.repeat(np.arange(len(query)) // len(self._NEIGHBOURS), count)
        run_start = np.repeat(np.cumsum(count) - count, count)
        face = members[np.repeat(first, count) + np.arange(total) - run_start]
        gap = self.centroids[face] - points[point]
        near = np.einsum("ij,ij->i", gap, gap) <= search * search
        ray = ray_of_point[point[near]]
        face = face[near]
        keep = face != own[ray]
        ray, face = ray[keep], face[keep]
        for lo in range(0, len(ray), _PAIR_CHUNK):
            r = ray[lo : lo + _PAIR_CHUNK]
            f = face[lo : lo + _PAIR_CHUNK]
            t = ray_triangle_distance(
                origins[r], directions[r], self.tri[f, 0], self.e1[f], self.e2[f]
            )
            hit = (t > self.eps) & (t <= self.depth)
            np.minimum.at(best, r[hit], t[hit])


def ray_triangle_distance(
    origins: np.ndarray,
    directions: np.ndarray,
    corner: np.ndarray,
    e1: np.ndarray,
    e2: np.ndarray,
    min_det: float = 1e-300,
) -> np.ndarray:
    """Distance along each ray to its triangle (Moller-Trumbore); inf where it misses.

    Triangles whose determinant is at most ``min_det`` (the ray runs in their plane, or they
    are degenerate) are missed."""
    p = np.cross(directions, e2)
    det = np.einsum("ij,ij->i", e1, p)
    ok = np.abs(det) > min_det
    inv = np.zeros_like(det)
    inv[ok] = 1.0 / det[ok]
    s = origins - corner
    u = np.einsum("ij,ij->i", s, p) * inv
    q = np.cross(s, e1)
    v = np.einsum("ij,ij->i", directions, q) * inv
    t = np.einsum("ij,ij->i", e2, q) * inv
    inside = ok & (u >= 0) & (v >= 0) & (u + v <= 1)
    return np.where(inside, t, np.inf)
