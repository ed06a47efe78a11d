"""Topology and size figures of a triangle mesh, computed with numpy in one pass.

trimesh's cached properties (``is_watertight`` alone takes ~2 s on 1M triangles) are too slow
for the repair report, so the counts here are derived from one sorted edge table. All figures
are measured after exact vertex welding, which is what a repair tool and a slicer see.

Two figures are optional because they cost more: self-intersecting faces (MeshLab, ~1.5-2 s
per million triangles) and the thin-wall estimate (rays cast from a bounded sample of faces,
~1.5 s per million triangles). ``analyse`` computes them only when asked.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import trimesh

from pocprint.mesh.ray import RayCaster
from pocprint.mesh.topology import (  # noqa: F401 - re-exported: the analysis's primitives
    DEGENERATE_AREA_RATIO,
    boundary_loops,
    degenerate_mask,
    edge_table,
    face_areas,
    face_components,
    face_keys,
    group_identical_rows,
    isin_sorted,
    non_manifold_vertex_mask,
    signed_volume,
    unique_inverse,
    weld_exact,
    winding_consistent,
)

# Thin-wall estimate: at most this many rays (one per sampled face), seeded, so the cost is
# bounded on any mesh and the same file always gives the same figures.
THIN_WALL_SAMPLES = 20_000
THIN_WALL_SEED = 0
# Warn when more than this share of the (sampled) surface area is thinner than the minimum.
THIN_WALL_WARN_SHARE = 0.01
# Rays look this many minimum-feature sizes deep; thicker walls are reported as "thicker".
THIN_WALL_DEPTH_FACTOR = 3.0
# Grid look-ups plus candidate (ray, face) pairs per thin-wall estimate (a few seconds).
_WORK_BUDGET = 15_000_000


@dataclass(frozen=True)
class MeshAnalysis:
    """What a technician needs to judge a mesh before printing; lengths in file units (mm)."""

    triangles: int
    vertices: int
    shells: int
    boundary_edges: int
    non_manifold_edges: int
    watertight: bool
    winding_consistent: bool
    volume_mm3: float | None
    area_mm2: float
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    extents: tuple[float, float, float]
    duplicate_faces: int
    degenerate_faces: int
    # Added later; defaults keep older positional construction and stored reports valid.
    # Vertices where separate surface fans meet in one point ("bow-tie"); vertices that
    # only lie on a non-manifold edge are not counted again (MeshLab's rule).
    non_manifold_vertices: int = 0
    # Boundary loops (holes, or the rim of an open sheet) and the edge count of the largest.
    holes: int = 0
    largest_hole_edges: int = 0
    inside_out: bool = False  # closed, but the signed volume is negative
    self_intersecting_faces: int | None = None  # None: not checked (optional, costly)
    thin_walls: dict | None = None  # thin_wall_warning() result; None: not checked

    def to_dict(self) -> dict:
        """Plain JSON-ready values (lists instead of tuples, Python floats and ints)."""
        out = asdict(self)
        for key in ("bbox_min", "bbox_max", "extents"):
            out[key] = [float(x) for x in out[key]]
        return out


def analyse(
    mesh: trimesh.Trimesh,
    *,
    self_intersections: bool = False,
    min_feature_mm: float | None = None,
) -> MeshAnalysis:
    """Measure a mesh (exactly welded first); volume only when it is watertight.

    ``self_intersections`` adds MeshLab's count of self-intersecting faces; ``min_feature_mm``
    adds the thin-wall estimate (coordinates must then be in mm). Both are off by default
    because they cost seconds on large meshes.
    """
    vertices, faces = weld_exact(mesh.vertices, mesh.faces)
    return analyse_welded(
        vertices, faces, self_intersections=self_intersections, min_feature_mm=min_feature_mm
    )


def analyse_welded(
    vertices: np.ndarray,
    faces: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    self_intersections: bool = False,
    min_feature_mm: float | None = None,
) -> MeshAnalysis:
    """``analyse`` for arrays already welded by ``weld_exact``; ``edges`` from ``edge_table``
    may be passed when the caller has it (it is the costly part on large meshes)."""
    return analyse_welded_details(
        vertices, faces, edges, self_intersections=self_intersections, min_feature_mm=min_feature_mm
    )[0]


def analyse_welded_details(
    vertices: np.ndarray,
    faces: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    self_intersections: bool = False,
    min_feature_mm: float | None = None,
) -> tuple[MeshAnalysis, dict]:
    """``analyse_welded`` plus the intermediate arrays, so a caller (the repair) can reuse
    them instead of computing them again: ``edges`` (``edge_table``), ``shell_labels`` (shell
    of each face, shells joined across manifold edges only), ``shell_faces`` (face count
    per shell), ``non_manifold_vertex_mask`` and ``areas`` (``face_areas``)."""
    if len(faces) == 0:
        zero = (0.0, 0.0, 0.0)
        empty = MeshAnalysis(0, 0, 0, 0, 0, False, True, None, 0.0, zero, zero, zero, 0, 0)
        none = np.zeros(0, dtype=np.int64)
        return empty, {
            "edges": (none.reshape(0, 3), none),
            "shell_labels": none,
            "shell_faces": none,
            "areas": np.zeros(0),
        }
    areas = face_areas(vertices, faces)
    degenerate = int(degenerate_mask(vertices, faces, areas).sum())
    edge_id, counts = edges if edges is not None else edge_table(faces, len(vertices))
    boundary = int((counts == 1).sum())
    non_manifold = int((counts > 2).sum())
    watertight = boundary == 0 and non_manifold == 0
    shells, shell_labels = face_components(edge_id, counts)
    unique_faces = len(unique_inverse(face_keys(faces, len(vertices)))[1])
    loops = boundary_loops(faces, (edge_id, counts)) if boundary else []
    volume = signed_volume(vertices, faces) if watertight else None
    lo = vertices.min(axis=0)
    hi = vertices.max(axis=0)
    pinched = non_manifold_vertex_mask(faces, (edge_id, counts), len(vertices))
    details = {
        "edges": (edge_id, counts),
        "shell_labels": shell_labels,
        "shell_faces": np.bincount(shell_labels, minlength=shells),
        "non_manifold_vertex_mask": pinched,
        "areas": areas,
    }
    analysis = MeshAnalysis(
        triangles=len(faces),
        vertices=len(vertices),
        shells=int(shells),
        boundary_edges=boundary,
        non_manifold_edges=non_manifold,
        watertight=bool(watertight),
        winding_consistent=winding_consistent(faces, edge_id, len(counts)),
        volume_mm3=volume,
        area_mm2=float(areas.sum()),
        bbox_min=tuple(float(x) for x in lo),
        bbox_max=tuple(float(x) for x in hi),
        extents=tuple(float(x) for x in hi - lo),
        duplicate_faces=int(len(faces) - unique_faces),
        degenerate_faces=degenerate,
        non_manifold_vertices=int(pinched.sum()),
        holes=len(loops),
        largest_hole_edges=loops[0] if loops else 0,
        inside_out=bool(volume is not None and volume < 0),
        self_intersecting_faces=(
            count_self_intersections(vertices, faces) if self_intersections else None
        ),
        thin_walls=(
            thin_walls(vertices, faces, min_feature_mm) if min_feature_mm is not None else None
        ),
    )
    return analysis, details


def count_self_intersections(vertices: np.ndarray, faces: np.ndarray) -> int:
    """Faces that intersect another face of the mesh (MeshLab), measured on a copy.

    Self-intersections do not stop a watertight check but make slicers fill or drop regions
    unpredictably. pymeshlab is imported here so reading files (web requests) stays light.
    """
    if len(faces) == 0:
        return 0
    return int(self_intersection_mask(vertices, faces).sum())


def self_intersection_mask(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per face: does it intersect another face (MeshLab's rule, measured on a copy)?

    MeshLab tests every pair of faces whose bounding boxes overlap, once, the lower face
    index first; faces sharing vertices get its special shared-vertex/edge tests.
    """
    if len(faces) == 0:
        return np.zeros(0, dtype=bool)
    import pymeshlab

    ms = pymeshlab.MeshSet()
    ms.add_mesh(
        pymeshlab.Mesh(
            vertex_matrix=np.asarray(vertices, dtype=np.float64),
            face_matrix=np.asarray(faces, dtype=np.int32),
        )
    )
    return select_self_intersections(ms)


def select_self_intersections(ms) -> np.ndarray:
    """Run MeshLab's self-intersection selection on the current mesh of a MeshSet and return
    the per-face mask; the selection is cleared again, so later filters see none."""
    ms.compute_selection_by_self_intersections_per_face()
    mask = np.asarray(ms.current_mesh().face_selection_array(), dtype=bool).copy()
    ms.set_selection_none(allfaces=True, allverts=True)
    return mask


def thin_wall_warning(
    mesh: trimesh.Trimesh,
    min_feature_mm: float,
    *,
    max_samples: int = THIN_WALL_SAMPLES,
    warn_share: float = THIN_WALL_WARN_SHARE,
    seed: int = THIN_WALL_SEED,
) -> dict:
    """Estimate where walls are thinner than the printer's minimum feature size (mm).

    A warning for the technician, never a gate: the local wall thickness is measured by a
    ray cast inwards (along the negative face normal) from the centroid of each sampled face
    to the next surface. See ``thin_walls`` for the figures returned.
    """
    return thin_walls(
        np.asarray(mesh.vertices, dtype=np.float64),
        np.asarray(mesh.faces, dtype=np.int64),
        min_feature_mm,
        max_samples=max_samples,
        warn_share=warn_share,
        seed=seed,
    )


def thin_walls(
    vertices: np.ndarray,
    faces: np.ndarray,
    min_feature_mm: float,
    *,
    max_samples: int = THIN_WALL_SAMPLES,
    warn_share: float = THIN_WALL_WARN_SHARE,
    seed: int = THIN_WALL_SEED,
) -> dict:
    """``thin_wall_warning`` on arrays.

    Up to ``max_samples`` faces are drawn with probability proportional to their area
    (seeded; every face when the mesh has fewer), so ``thin_share`` estimates the share of
    surface area whose wall is thinner than ``min_feature_mm``. Rays look
    ``THIN_WALL_DEPTH_FACTOR`` x ``min_feature_mm`` deep: walls beyond that count as thick
    and ``min_thickness_mm`` is None when no ray hit anything within that depth. Overlapping
    parts and near-coincident surfaces also measure as thin.

    trimesh's ray intersector needs rtree or embree, neither of which is a dependency here,
    so the cast is done in numpy: candidate faces come from a hashed grid of face centroids
    (one per face-size class), Moller-Trumbore tests them. Rays are processed in random
    batches under a work budget (grid look-ups plus candidate pairs), so a pathological mesh
    (e.g. a part still in inches, smaller than the minimum feature) uses fewer samples
    instead of minutes; ``samples`` and ``sampling`` say how many were used.
    """
    started = time.perf_counter()
    min_feature_mm = float(min_feature_mm)
    if not np.isfinite(min_feature_mm) or min_feature_mm <= 0:
        raise ValueError(f"min_feature_mm must be a positive number of mm, got {min_feature_mm}")
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    depth = THIN_WALL_DEPTH_FACTOR * min_feature_mm
    result = {
        "min_feature_mm": min_feature_mm,
        "search_depth_mm": round(depth, 6),
        "method": "inward ray from face centroids along the negative face normal",
        "samples": 0,
        "sampling": "none",
        "thin_share": 0.0,
        "thin_area_mm2_estimate": 0.0,
        "min_thickness_mm": None,
        "warn_share": warn_share,
        "warning": None,
    }
    tri = vertices[faces]
    if len(faces):
        e1 = tri[:, 1] - tri[:, 0]
        e2 = tri[:, 2] - tri[:, 0]
        cross = np.cross(e1, e2)
        double_area = np.sqrt(np.einsum("ij,ij->i", cross, cross))
        span = float(np.ptp(vertices, axis=0).max())
        valid = double_area > 2 * DEGENERATE_AREA_RATIO * max(1.0, span) ** 2
    if len(faces) == 0 or not valid.any():
        result["duration_s"] = round(time.perf_counter() - started, 4)
        return result
    usable = np.flatnonzero(valid)
    rng = np.random.default_rng(seed)
    if len(usable) <= max_samples:
        draws = rng.permutation(usable)
        weights = double_area[draws]
        result["sampling"] = "every face, weighted by area"
    else:
        probability = double_area[usable] / double_area[usable].sum()
        draws = rng.choice(usable, size=max_samples, p=probability)
        weights = np.ones(len(draws))
        result["sampling"] = f"{max_samples} area-weighted random draws (seed {seed})"
    caster = RayCaster(tri, e1, e2, valid, depth, eps=1e-9 * max(1.0, span))
    origins = tri[draws].mean(axis=1)
    directions = -cross[draws] / double_area[draws, None]
    hit_distance = np.full(len(draws), np.inf)
    done = 0
    batch = 512  # the first batch measures the cost per ray; later ones are sized from it
    while done < len(draws) and caster.work < _WORK_BUDGET:
        stop = min(len(draws), done + batch)
        hit_distance[done:stop] = caster.first_hits(
            origins[done:stop], directions[done:stop], draws[done:stop]
        )
        done = stop
        per_ray = max(caster.work / done, 1.0)
        batch = int(np.clip((_WORK_BUDGET - caster.work) / per_ray, 256, 8192))
    if done < len(draws):
        result["sampling"] += f"; stopped after {done} rays (work budget reached)"
    hit_distance, weights = hit_distance[:done], weights[:done]
    thin = hit_distance < min_feature_mm
    share = float(weights[thin].sum() / weights.sum())
    measured = hit_distance[np.isfinite(hit_distance)]
    result.update(
        samples=done,
        thin_share=share,
        thin_area_mm2_estimate=share * float(double_area[usable].sum()) / 2.0,
        min_thickness_mm=float(measured.min()) if len(measured) else None,
    )
    if share > warn_share:
        result["warning"] = (
            f"About {share:.1%} of the surface has walls thinner than the minimum feature "
            f"size of {min_feature_mm:g} mm (thinnest measured {measured.min():.2f} mm; "
            f"estimated from {done} sampled faces). Such walls may not print or may "
            "break: thicken them in the design software or check the printer's limits. "
            "Overlapping parts also show up here."
        )
    result["duration_s"] = round(time.perf_counter() - started, 4)
    return result
