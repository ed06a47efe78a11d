"""Fidelity of a repair: how far the kept surface moved, what was invented to close holes,
and what was removed (each removed piece judged by ``removed.py``), against the lab's limits."""

from __future__ import annotations

import numpy as np
import pymeshlab
from scipy.spatial import cKDTree

from pocprint.mesh.removed import removed_pieces, removed_summary
from pocprint.mesh.settings import RepairSettings
from pocprint.mesh.topology import (
    edge_table,
    face_areas,
    face_components,
    face_keys,
    group_identical_rows,
    isin_sorted,
    weld_exact,
)

# Largest patches listed individually in the report (largest first).
_DETAIL_LIMIT = 10


def _groups(vertices: np.ndarray, faces: np.ndarray) -> list[dict]:
    """Edge-connected groups of the given faces, largest diameter first."""
    if len(faces) == 0:
        return []
    edge_id, counts = edge_table(faces, len(vertices))
    n, labels = face_components(edge_id, counts, only_manifold_edges=False)
    areas = face_areas(vertices, faces)
    tri = vertices[faces]
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0])
    lo = np.minimum.reduceat(tri.min(axis=1)[order], starts, axis=0)
    hi = np.maximum.reduceat(tri.max(axis=1)[order], starts, axis=0)
    group_area = np.bincount(labels, weights=areas, minlength=n)
    group_faces = np.bincount(labels, minlength=n)
    diameters = np.linalg.norm(hi - lo, axis=1)
    out = [
        {
            "faces": int(group_faces[g]),
            "area_mm2": float(group_area[g]),
            "diameter_mm": float(diameters[g]),
            "centre": [float(x) for x in 0.5 * (lo[g] + hi[g])],
        }
        for g in range(n)
    ]
    out.sort(key=lambda g: g["diameter_mm"], reverse=True)
    return out


def _match_vertices(v0: np.ndarray, v1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest original vertex of each repaired vertex, and the distance to it.

    ``v0`` holds unique positions. Exact matches are found by hashing (the usual case: the
    filters used here never move a vertex); only the rest go through a k-d tree.
    """
    if v0.shape == v1.shape and np.array_equal(v0, v1):  # nothing moved, nothing added
        return np.arange(len(v1)), np.zeros(len(v1))
    labels, first = group_identical_rows(np.vstack([v0, v1]))
    owner = first[labels[len(v0) :]]  # first row with the same position
    nearest = np.where(owner < len(v0), owner, -1)
    displacement = np.zeros(len(v1))
    unmatched = np.flatnonzero(nearest < 0)
    if len(unmatched) and len(v0):
        displacement[unmatched], nearest[unmatched] = cKDTree(v0).query(v1[unmatched], k=1)
    return nearest, displacement


def fidelity(v0: np.ndarray, f0: np.ndarray, v1: np.ndarray, f1: np.ndarray) -> dict:
    """Compare the repaired mesh with the original: kept, invented and removed surface."""
    return fidelity_and_match(v0, f0, v1, f1)[0]


def fidelity_and_match(
    v0: np.ndarray,
    f0: np.ndarray,
    v1: np.ndarray,
    f1: np.ndarray,
    settings: RepairSettings | None = None,
    original: dict | None = None,
) -> tuple[dict, dict]:
    """Compare the repaired mesh with the original: kept, invented and removed surface.

    Each repaired vertex is matched to its nearest original vertex. A repaired face whose
    matched corners form an original face is "kept"; the others are "invented" (hole fills).
    Original faces without a kept counterpart are "removed" (zero-area faces excluded).
    Also returns the matching (``nearest``, ``displacement``, ``kept``, ``origin``: index of
    an original face with the same corners per kept face, -1 otherwise) for reuse.
    ``original`` may hold the ``edges`` (``edge_table``) and ``areas`` (``face_areas``) of
    (v0, f0) when the caller has them (the analysis before repair made both).
    """
    original = original or {}
    nearest, displacement = _match_vertices(v0, v1)
    same = f1 is f0 or (
        len(f1) == len(f0) and np.array_equal(np.sort(f1, axis=1), np.sort(f0, axis=1))
    )
    if v1 is v0 and same:
        # Same vertices, each face an original face in the same place: all kept, none removed.
        kept = np.ones(len(f1), dtype=bool)
        removed = np.zeros(len(f0), dtype=bool)
        origin = np.arange(len(f1))
    else:
        keys1 = face_keys(nearest[f1], len(v0)) if len(f1) else np.zeros(0, dtype=np.int64)
        keys0 = face_keys(f0, len(v0))
        order0 = np.argsort(keys0, kind="stable")
        sorted0 = keys0[order0]
        slot = np.minimum(np.searchsorted(sorted0, keys1), max(len(sorted0) - 1, 0))
        kept = sorted0[slot] == keys1 if len(sorted0) else np.zeros(len(f1), dtype=bool)
        origin = np.where(kept, order0[slot], -1) if len(sorted0) else -np.ones(len(f1), int)
        removed = ~isin_sorted(keys0, keys1)
    areas0 = original["areas"] if "areas" in original else face_areas(v0, f0)
    zero_area = areas0 <= 0.0
    invented_groups = _groups(v1, f1[~kept])
    settings = settings or RepairSettings()
    pieces = removed_pieces(
        v0,
        f0,
        removed & ~zero_area,
        settings.min_component_faces,
        settings.noise_volume_mm3,
        original.get("edges"),
    )
    kept_faces = f1[kept]
    if f1 is f0 and v1 is v0:  # the same faces: the same areas
        kept_area = float(areas0.sum())
    else:
        kept_area = float(face_areas(v1, kept_faces).sum()) if len(kept_faces) else 0.0
    on_kept = np.zeros(len(v1), dtype=bool)
    on_kept[kept_faces.ravel()] = True
    deviation = _kept_deviation(v0, f0, v1, kept_faces, displacement, kept_area)
    match = {"nearest": nearest, "displacement": displacement, "kept": kept, "origin": origin}
    return {
        "kept_surface": {
            "faces": int(len(kept_faces)),
            "area_mm2": kept_area,
            "moved_vertices": int((on_kept & (displacement > 0)).sum()),
            **deviation,
        },
        "invented": {
            "patches": len(invented_groups),
            "faces": int((~kept).sum()),
            "area_mm2": float(sum(g["area_mm2"] for g in invented_groups)),
            "largest_patch_diameter_mm": max(
                (g["diameter_mm"] for g in invented_groups), default=0.0
            ),
            "largest_patches": invented_groups[:_DETAIL_LIMIT],
            "patch_diameters_mm": [g["diameter_mm"] for g in invented_groups],
        },
        "removed": removed_summary(pieces, int((removed & zero_area).sum())),
    }, match


def _kept_deviation(
    v0: np.ndarray,
    f0: np.ndarray,
    v1: np.ndarray,
    kept_faces: np.ndarray,
    displacement: np.ndarray,
    kept_area: float,
) -> dict:
    """Distance from the kept repaired surface to the original surface (max, area mean).

    Kept faces whose corners did not move coincide with original faces: distance exactly 0,
    no sampling needed. Faces with a moved corner are sampled (vertices and face interiors)
    and measured against the original surface with MeshLab's Hausdorff filter; only the
    original faces that can hold a sample's closest point are handed to MeshLab
    (``_original_near``), so the distances are those to the whole original surface.
    """
    if len(kept_faces) == 0:
        return {"max_mm": 0.0, "mean_mm": 0.0, "method": "no kept faces", "samples": 0}
    moved_faces = kept_faces[(displacement[kept_faces] > 0).any(axis=1)]
    if len(moved_faces) == 0:
        return {
            "max_mm": 0.0,
            "mean_mm": 0.0,
            "method": "exact: no kept vertex moved",
            "samples": 0,
        }
    sub_v, sub_f = weld_exact(v1, moved_faces)
    near_v, near_f = _original_near(v0, f0, v1[moved_faces], displacement[moved_faces])
    ms = pymeshlab.MeshSet()
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=sub_v, face_matrix=sub_f.astype(np.int32)))
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=near_v, face_matrix=near_f.astype(np.int32)))
    span = np.maximum(v0.max(axis=0), sub_v.max(axis=0)) - np.minimum(
        v0.min(axis=0), sub_v.min(axis=0)
    )
    diag = float(np.linalg.norm(span)) or 1.0
    samples = int(min(max(10 * len(sub_f), 1000), 1_000_000))
    result = ms.get_hausdorff_distance(
        sampledmesh=0,
        targetmesh=1,
        samplevert=True,
        sampleface=True,
        samplenum=samples,
        maxdist=pymeshlab.PureValue(2 * diag),
    )
    moved_area = float(face_areas(sub_v, sub_f).sum())
    mean = float(result["mean"]) * moved_area / kept_area if kept_area > 0 else 0.0
    return {
        "max_mm": float(result["max"]),
        "mean_mm": mean,
        "method": "hausdorff samples on faces with moved vertices",
        "samples": int(result["n_samples"]),
    }


def _original_near(
    v0: np.ndarray, f0: np.ndarray, moved: np.ndarray, corner_shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The original faces (compacted) among which lies the closest original point of every
    point of the ``moved`` triangles (corner coordinates, (m, 3, 3)); a superset.

    Each corner lies ``corner_shift`` from an original vertex, so a point of a moved face is
    within (its box diagonal + its largest corner shift) of the original surface: the
    closest point lies in the face's box grown by that. An original face holding it meets
    that box, so its corners lie within its own largest per-axis extent of the box, on
    every axis. Faces with a corner in a grid cell touched by a box grown by both are kept.
    """
    extent0 = 0.0
    for axis in range(3):  # one axis at a time: the corner table of millions of faces is big
        corner = v0[:, axis][f0]
        extent0 = max(extent0, float((corner.max(axis=1) - corner.min(axis=1)).max()))
        del corner
    lo = moved.min(axis=1)
    hi = moved.max(axis=1)
    scale = max(float(np.abs(v0).max()), 1.0)
    grow = np.linalg.norm(hi - lo, axis=1) + corner_shift.max(axis=1) + extent0
    grow += 1e-9 * scale  # far above rounding
    lo -= grow[:, None]
    hi += grow[:, None]
    cell = max(float((hi - lo).max()), 1e-9 * scale)
    origin = np.minimum(lo.min(axis=0), v0.min(axis=0))
    v_cell = np.floor((v0 - origin) / cell).astype(np.int64)
    dims = np.maximum(v_cell.max(axis=0), np.floor((hi.max(axis=0) - origin) / cell)) + 2
    if float(np.prod(dims.astype(float))) > 2.0**62:  # keys would overflow: every face
        return v0, f0
    dims = dims.astype(np.int64)

    def key(c: np.ndarray) -> np.ndarray:
        return (c[..., 0] * dims[1] + c[..., 1]) * dims[2] + c[..., 2]

    # Each grown box spans at most two cells per axis (its size is at most one cell).
    b_lo = np.floor((lo - origin) / cell).astype(np.int64)
    b_hi = np.floor((hi - origin) / cell).astype(np.int64)
    offsets = np.stack(np.meshgrid([0, 1], [0, 1], [0, 1]), -1).reshape(-1, 3)
    cells = np.minimum(b_lo[:, None, :] + offsets[None, :, :], b_hi[:, None, :])
    near_vertex = isin_sorted(key(v_cell), np.unique(key(cells)))
    keep = near_vertex[f0].any(axis=1)
    used, compact = np.unique(f0[keep], return_inverse=True)
    return v0[used], compact.reshape(-1, 3)


def fidelity_reasons(fidelity: dict, settings: RepairSettings) -> list[str]:
    reasons = []
    kept = fidelity["kept_surface"]
    if kept["max_mm"] > settings.max_kept_surface_deviation_mm:
        reasons.append(
            f"The repair moved the kept surface by up to {kept['max_mm']:.3f} mm (limit "
            f"{settings.max_kept_surface_deviation_mm} mm)."
        )
    invented = fidelity["invented"]
    if invented["largest_patch_diameter_mm"] > settings.max_invented_patch_diameter_mm:
        limit = settings.max_invented_patch_diameter_mm
        big = sum(1 for d in invented["patch_diameters_mm"] if d > limit)
        reasons.append(
            f"Hole filling invented {invented['patches']} patch(es), {invented['area_mm2']:.1f} "
            f"mm2 in total; the largest is {invented['largest_patch_diameter_mm']:.1f} mm across "
            f"(limit {settings.max_invented_patch_diameter_mm} mm; {big} over the limit). Check "
            "that the closed surface is anatomically plausible."
        )
    removed = fidelity["removed"]
    if removed["largest_anatomy_diameter_mm"] > settings.max_removed_diameter_mm:
        noise = removed["components"] - removed["anatomy_pieces"]
        reasons.append(
            f"The repair removed {removed['anatomy_pieces']} piece(s) of real surface, "
            f"{removed['anatomy_area_mm2']:.1f} mm2 in total; the largest is "
            f"{removed['largest_anatomy_diameter_mm']:.1f} mm across (limit "
            f"{settings.max_removed_diameter_mm} mm). Check that no anatomy was lost."
            + (f" ({noise} noise piece(s) removed too: see the list.)" if noise else "")
        )
    return reasons
