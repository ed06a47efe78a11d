"""What the repair removed, piece by piece, and whether each piece was noise or anatomy.

Judging removed surface by a region's diameter alone called 20 zero-area slivers "34.9 mm
across" and thin non-manifold fins "lost anatomy". A removed piece is judged by what it was:

* ``degenerate``: no surface to speak of (its area is below its length x 1 micrometre);
* ``duplicate``: every face a second copy of another face (a double layer, no thickness);
* ``fin``: hangs off the kept surface only by non-manifold edges and encloses nothing;
* ``noise shell``: a loose shell below the small-component limit that encloses no volume
  above the noise volume;
* ``shell``: a loose shell above those limits (or enclosing volume) - anatomy;
* ``surface``: cut out of the two-manifold surface itself (it shared an ordinary edge with
  the kept surface) - anatomy.

Only anatomy pieces count against ``max_removed_diameter_mm``; every piece is listed.
"""

from __future__ import annotations

import numpy as np

from pocprint.mesh.topology import edge_table, face_areas, face_components, face_keys, signed_volume

NOISE_KINDS = ("degenerate", "duplicate", "fin", "noise shell")
ANATOMY_KINDS = ("shell", "surface")
# A piece whose area is below its diameter times this width (mm) has no surface.
DEGENERATE_WIDTH_MM = 1e-3
# Pieces listed one by one in the report (the rest are counted by kind).
LISTED_PIECES = 500


def removed_pieces(
    v0: np.ndarray,
    f0: np.ndarray,
    removed: np.ndarray,
    min_component_faces: int,
    noise_volume_mm3: float,
    edges0: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[dict]:
    """Every edge-connected piece of the removed faces of (v0, f0), with its kind, largest
    diameter first. ``removed`` is a mask over f0; ``edges0``, the edge table of (v0, f0),
    may be given when the caller has it (the analysis before repair made it)."""
    idx = np.flatnonzero(removed)
    if len(idx) == 0:
        return []
    all_edges, totals = edges0 if edges0 is not None else edge_table(f0, len(v0))
    removed_uses = np.bincount(all_edges[idx].ravel(), minlength=len(totals))
    kept_uses = totals - removed_uses
    faces = f0[idx]
    edges = all_edges[idx]
    _, local_edge = np.unique(edges.ravel(), return_inverse=True)
    local_counts = np.bincount(local_edge)
    n, labels = face_components(local_edge.reshape(-1, 3), local_counts, only_manifold_edges=False)
    keys = face_keys(f0, len(v0))
    _, key_inverse, key_counts = np.unique(keys, return_inverse=True, return_counts=True)
    twin = key_counts[key_inverse[idx]] > 1
    areas = face_areas(v0, faces)
    tri = v0[faces]
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0])
    lo = np.minimum.reduceat(tri.min(axis=1)[order], starts, axis=0)
    hi = np.maximum.reduceat(tri.max(axis=1)[order], starts, axis=0)
    diameters = np.linalg.norm(hi - lo, axis=1)
    group_area = np.bincount(labels, weights=areas, minlength=n)
    group_faces = np.bincount(labels, minlength=n)
    group_twins = np.bincount(labels, weights=twin, minlength=n)
    # Per piece: does it touch kept faces over an ordinary edge, or only non-manifold ones?
    touches = kept_uses[edges] > 0
    ordinary = touches & (totals[edges] == 2)
    touch_any = np.bincount(labels, weights=touches.any(axis=1), minlength=n) > 0
    touch_ordinary = np.bincount(labels, weights=ordinary.any(axis=1), minlength=n) > 0
    # Open edges of each piece on its own: a piece without any encloses something.
    open_edge = local_counts[local_edge.reshape(-1, 3)] == 1
    group_open = np.bincount(labels, weights=open_edge.any(axis=1), minlength=n) > 0
    pieces = []
    for g in range(n):
        members = order[starts[g] : starts[g + 1] if g + 1 < n else len(order)]
        volume = 0.0
        if not group_open[g]:
            volume = abs(signed_volume(v0, faces[members]))
        kind = _kind(
            area=float(group_area[g]),
            diameter=float(diameters[g]),
            faces=int(group_faces[g]),
            twins=int(group_twins[g]),
            volume=volume,
            touches=bool(touch_any[g]),
            ordinary=bool(touch_ordinary[g]),
            min_component_faces=min_component_faces,
            noise_volume_mm3=noise_volume_mm3,
        )
        pieces.append(
            {
                "kind": kind,
                "noise": kind in NOISE_KINDS,
                "faces": int(group_faces[g]),
                "area_mm2": float(group_area[g]),
                "diameter_mm": float(diameters[g]),
                "volume_mm3": volume,
                "centre": [float(x) for x in 0.5 * (lo[g] + hi[g])],
            }
        )
    pieces.sort(key=lambda p: p["diameter_mm"], reverse=True)
    return pieces


def _kind(
    *,
    area: float,
    diameter: float,
    faces: int,
    twins: int,
    volume: float,
    touches: bool,
    ordinary: bool,
    min_component_faces: int,
    noise_volume_mm3: float,
) -> str:
    if area <= diameter * DEGENERATE_WIDTH_MM:
        return "degenerate"
    if twins == faces:
        return "duplicate"
    if touches and not ordinary:
        return "fin" if volume < noise_volume_mm3 else "shell"
    if touches:
        return "surface"
    if faces < min_component_faces and volume < noise_volume_mm3:
        return "noise shell"
    return "shell"


def removed_summary(pieces: list[dict], zero_area_faces: int) -> dict:
    """The fidelity report's ``removed`` section."""
    anatomy = [p for p in pieces if not p["noise"]]
    kinds = {}
    for p in pieces:
        entry = kinds.setdefault(p["kind"], {"pieces": 0, "faces": 0, "area_mm2": 0.0})
        entry["pieces"] += 1
        entry["faces"] += p["faces"]
        entry["area_mm2"] += p["area_mm2"]
    return {
        "components": len(pieces),
        "faces": int(sum(p["faces"] for p in pieces)),
        "area_mm2": float(sum(p["area_mm2"] for p in pieces)),
        "largest_diameter_mm": max((p["diameter_mm"] for p in pieces), default=0.0),
        "zero_area_faces_dropped": int(zero_area_faces),
        "anatomy_pieces": len(anatomy),
        "anatomy_area_mm2": float(sum(p["area_mm2"] for p in anatomy)),
        "largest_anatomy_diameter_mm": max((p["diameter_mm"] for p in anatomy), default=0.0),
        "by_kind": kinds,
        "largest_components": pieces[:10],
        "pieces": pieces[:LISTED_PIECES],
        "pieces_not_listed": max(0, len(pieces) - LISTED_PIECES),
    }
