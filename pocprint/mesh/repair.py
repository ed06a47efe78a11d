"""Automatic mesh repair with a strict printability gate and a fidelity report.

The repair runs MeshLab filters (pymeshlab) on a copy while the original stays in numpy, never
handed to a filter; manifold3d then acts as the gate (it never repairs). The fidelity report
says what the repair did to the clinician's surface in three separate figures, because one
Hausdorff number hides the difference between a harmless removed speck and a 20 mm invented
cap: (1) how far the kept surface moved, (2) how much surface was invented to close holes,
(3) how much was removed. Any failed gate or exceeded threshold gives
``needs_attention`` with the reason and the number; a mesh is never passed silently.

Self-intersections (before and after), thin walls and an implausible overall size are reported
as ``warnings``: the technician must see them, but they never change the verdict.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version

import manifold3d
import numpy as np
import pymeshlab
import trimesh
from scipy.spatial import cKDTree

from pocprint.mesh.analyse import (
    MeshAnalysis,
    analyse_welded,
    boundary_loops,
    count_self_intersections,
    edge_table,
    face_areas,
    face_components,
    face_keys,
    group_identical_rows,
    isin_sorted,
    thin_walls,
    weld_exact,
)
from pocprint.mesh.errors import MeshError
from pocprint.mesh.read import save_mesh  # re-exported: the repair module owns the output
from pocprint.mesh.settings import RepairSettings  # re-exported: defined with its loader
from pocprint.mesh.units import PLAUSIBLE_MM, size_score

__all__ = ["RepairResult", "RepairSettings", "repair", "save_mesh"]

# Rounds of (non-manifold repair, hole closing); see _run_filters.
ROUNDS = 2
# Largest patches/removed regions listed individually in the report (largest first).
_DETAIL_LIMIT = 10


@dataclass
class RepairResult:
    """Repaired mesh plus everything the lab needs to record about how it was obtained."""

    mesh: trimesh.Trimesh
    before: MeshAnalysis
    after: MeshAnalysis
    verdict: str  # "repaired" | "needs_attention"
    reasons: list[str]
    steps: list[dict]
    library_versions: dict[str, str]
    fidelity: dict
    duration_s: dict[str, float]
    gate: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # shown, never change the verdict

    def report(self) -> dict:
        """JSON-ready record of the repair (everything except the mesh itself)."""
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "gate": dict(self.gate),
            "fidelity": self.fidelity,
            "steps": [dict(s) for s in self.steps],
            "settings": dict(self.settings),
            "library_versions": dict(self.library_versions),
            "duration_s": dict(self.duration_s),
        }


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shaped the result, for the device history record."""
    out = {}
    for name in ("trimesh", "pymeshlab", "manifold3d", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover - all are dependencies
            out[name] = "unknown"
    return out


def repair(mesh: trimesh.Trimesh, settings: RepairSettings | None = None) -> RepairResult:
    """Repair a mesh (in mm), gate it for printability and measure what the repair changed.

    ``settings`` None uses the built-in defaults, which equal ``[default]`` of
    ``config/repair.toml``; pass ``load_repair_settings(device_type)`` for a device type.
    """
    settings = settings or RepairSettings()
    clock = time.perf_counter
    t0 = clock()
    v0, f0 = weld_exact(mesh.vertices, mesh.faces)
    if len(f0) == 0:
        raise MeshError("no_triangles", "The mesh has no triangles, so there is nothing to repair.")
    before = analyse_welded(v0, f0)
    t1 = clock()
    before = replace(before, self_intersecting_faces=count_self_intersections(v0, f0))
    t_si0 = clock() - t1

    t1 = clock()
    steps: list[dict] = []
    ms = pymeshlab.MeshSet()
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=v0, face_matrix=f0.astype(np.int32)), "repaired")
    _run_filters(ms, settings, steps)
    current = ms.current_mesh()
    v1, f1 = weld_exact(current.vertex_matrix(), current.face_matrix())
    edges = edge_table(f1, len(v1))
    f1, edges = _orient_outwards(v1, f1, edges, steps)
    repaired = trimesh.Trimesh(vertices=v1, faces=f1, process=False, validate=False)
    t2 = clock()

    after = analyse_welded(v1, f1, edges)
    t3 = clock()
    # Non-manifold vertices only decide the gate for an otherwise closed, edge-manifold
    # mesh; MeshLab's count costs ~1.3 s per million faces, so it is skipped otherwise.
    nm_vertices = None
    if after.watertight:
        nm_vertices = int(ms.get_topological_measures()["non_two_manifold_vertices"])
    del ms, current
    gate = _gate(v1, f1, edges, after, nm_vertices)
    t4 = clock()
    fidelity = _fidelity(v0, f0, v1, f1)
    t5 = clock()
    after = replace(after, self_intersecting_faces=count_self_intersections(v1, f1))
    t6 = clock()
    walls = thin_walls(
        v1,
        f1,
        settings.min_feature_mm,
        max_samples=settings.thin_wall_samples,
        warn_share=settings.thin_wall_warn_share,
    )
    after = replace(after, thin_walls=walls)
    t7 = clock()

    reasons = _gate_reasons(gate, after, settings) + _fidelity_reasons(fidelity, settings)
    return RepairResult(
        mesh=repaired,
        before=before,
        after=after,
        verdict="needs_attention" if reasons else "repaired",
        reasons=reasons,
        steps=steps,
        library_versions=library_versions(),
        fidelity=fidelity,
        duration_s={
            "analysis": round((t1 - t0) + (t3 - t2) + (t7 - t5), 4),
            "repair": round(t2 - t1, 4),
            "gate": round(t4 - t3, 4),
            "fidelity": round(t5 - t4, 4),
            "self_intersections": round(t_si0 + (t6 - t5), 4),
            "thin_walls": round(t7 - t6, 4),
            "total": round(t7 - t0, 4),
        },
        gate=gate,
        settings=asdict(settings),
        warnings=_warnings(before, after),
    )


def _warnings(before: MeshAnalysis, after: MeshAnalysis) -> list[str]:
    """Findings the technician must see that do not decide printability on their own."""
    out = []
    if after.self_intersecting_faces:
        out.append(
            f"{after.self_intersecting_faces} faces intersect other faces after repair "
            f"(before: {before.self_intersecting_faces}). Slicers may fill or drop these "
            "regions unpredictably: check the sliced layers, or merge overlapping parts in "
            "the design software."
        )
    if after.thin_walls and after.thin_walls.get("warning"):
        out.append(after.thin_walls["warning"])
    if after.triangles and size_score(max(after.extents)) == 0.0:
        lo, hi = PLAUSIBLE_MM
        out.append(
            f"The model is {max(after.extents):.4g} mm across, outside the plausible "
            f"{lo:g}-{hi:g} mm for a printed model: check that it was scaled to millimetres."
        )
    return out


# ----------------------------------------------------------------------------- repair steps


def _apply(ms: pymeshlab.MeshSet, steps: list[dict], name: str, **params: object) -> bool:
    """Apply one MeshLab filter and record it exactly as applied (and whether it failed).

    A failing filter (e.g. re-orienting a still non-manifold mesh) does not stop the repair:
    the failure is recorded and the gate decides on the result.
    """
    step: dict = {"filter": name, "params": dict(params)}
    steps.append(step)
    try:
        ms.apply_filter(name, **params)
    except pymeshlab.PyMeshLabException as exc:
        step["error"] = " ".join(str(exc).split())
        return False
    return True


def _largest_component_faces(faces: np.ndarray) -> int:
    """Face count of the largest edge-connected component."""
    faces = np.asarray(faces, dtype=np.int64)
    edge_id, counts = edge_table(faces, int(faces.max()) + 1)
    n, labels = face_components(edge_id, counts, only_manifold_edges=False)
    return int(np.bincount(labels, minlength=n).max())


def _has_non_manifold_edge(ms: pymeshlab.MeshSet) -> bool:
    """Whether an edge is shared by more than two faces in the current (welded) mesh."""
    faces = np.asarray(ms.current_mesh().face_matrix(), dtype=np.int64)
    if len(faces) == 0:
        return False
    pairs = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    keys = np.sort(pairs.min(axis=1) * np.int64(faces.max() + 1) + pairs.max(axis=1))
    return bool((keys[2:] == keys[:-2]).any())


def _run_filters(ms: pymeshlab.MeshSet, settings: RepairSettings, steps: list[dict]) -> None:
    _apply(ms, steps, "meshing_remove_duplicate_vertices")
    _apply(ms, steps, "meshing_remove_duplicate_faces")
    _apply(ms, steps, "meshing_remove_null_faces")
    _apply(ms, steps, "meshing_remove_unreferenced_vertices")
    # Small loose shells are scan noise, but a model that is itself small (a 12-triangle
    # cube) must not vanish: if every component is below the limit, the step is undone and
    # repeated with the largest component's size, so that component survives.
    current = ms.current_mesh()
    snapshot = (current.vertex_matrix(), current.face_matrix())
    _apply(
        ms,
        steps,
        "meshing_remove_connected_component_by_face_number",
        mincomponentsize=settings.min_component_faces,
        removeunref=True,
    )
    if ms.current_mesh().face_number() == 0 and len(snapshot[1]):
        steps[-1]["undone"] = "it removed every face: all components are below the limit"
        ms.add_mesh(pymeshlab.Mesh(vertex_matrix=snapshot[0], face_matrix=snapshot[1]), "kept")
        _apply(
            ms,
            steps,
            "meshing_remove_connected_component_by_face_number",
            mincomponentsize=_largest_component_faces(snapshot[1]),
            removeunref=True,
        )
    del snapshot
    # MeshLab splits non-manifold vertices into coincident copies, which every STL reader
    # welds again, and filling a hole can create a non-manifold edge while removing one
    # opens a hole. So each round ends by re-welding (the result is gated and saved welded,
    # as a slicer sees it) and a second round repairs what welding brought back.
    for _ in range(ROUNDS):
        # "Split Vertices" is not used: in pymeshlab 2025.7 it leaves thousands of
        # unreferenced vertices, some later NaN, on the corpus's non-manifold meshes.
        _apply(ms, steps, "meshing_repair_non_manifold_edges", method="Remove Faces")
        _apply(ms, steps, "meshing_repair_non_manifold_vertices", vertdispratio=0.0)
        if ms.current_mesh().face_number() == 0:
            return
        _apply(
            ms,
            steps,
            "meshing_close_holes",
            maxholesize=settings.max_hole_edges,
            selected=False,
            newfaceselected=False,
            selfintersection=True,
            refinehole=False,
        )
        _apply(ms, steps, "meshing_remove_duplicate_vertices")
        if not _has_non_manifold_edge(ms):
            break
    _apply(ms, steps, "meshing_re_orient_faces_coherently")
    _apply(ms, steps, "meshing_remove_unreferenced_vertices")


def _orient_outwards(
    vertices: np.ndarray,
    faces: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray],
    steps: list[dict],
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Invert closed shells with negative signed volume (inside-out), except cavities.

    A closed shell lying inside another shell is an internal cavity, whose normals rightly
    point inwards, so only shells with negative volume that are not nested are inverted.
    """
    if len(faces) == 0:
        return faces, edges
    edge_id, counts = edges
    n_shells, labels = face_components(edge_id, counts, only_manifold_edges=False)
    closed = np.ones(n_shells, dtype=bool)
    closed[np.unique(labels[(counts[edge_id] != 2).any(axis=1)])] = False
    centre = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    tri = vertices[faces] - centre
    det = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))
    volumes = np.bincount(labels, weights=det, minlength=n_shells) / 6.0
    candidates = np.flatnonzero(closed & (volumes < 0))
    if len(candidates) == 0:
        return faces, edges
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_shells + 1))
    shell_faces = [order[bounds[s] : bounds[s + 1]] for s in range(n_shells)]
    lo = np.array([tri[idx].min(axis=(0, 1)) for idx in shell_faces]) + centre
    hi = np.array([tri[idx].max(axis=(0, 1)) for idx in shell_faces]) + centre
    inverted = []
    for s in candidates:
        point = vertices[faces[shell_faces[s][0], 0]]
        around = np.flatnonzero(closed & np.all(lo <= point, axis=1) & np.all(hi >= point, axis=1))
        nested = any(
            _ray_hits(point, vertices[faces[shell_faces[o]]]) % 2 == 1 for o in around if o != s
        )
        if not nested:
            inverted.append(s)
    if not inverted:
        return faces, edges
    flip = np.isin(labels, inverted)
    faces = faces.copy()
    faces[flip] = faces[flip][:, ::-1]
    edge_id = edge_id.copy()  # (a,b,c) -> (c,b,a): edges (c,b),(b,a),(a,c) = old 1, 0, 2
    edge_id[flip] = edge_id[flip][:, [1, 0, 2]]
    steps.append(
        {
            "filter": "invert_inside_out_shells",
            "params": {
                "rule": "closed shell with negative signed volume, not inside another shell",
                "shells_inverted": len(inverted),
                "faces_inverted": int(flip.sum()),
            },
        }
    )
    return faces, (edge_id, counts)


def _ray_hits(origin: np.ndarray, tri: np.ndarray) -> int:
    """Number of triangles hit by a ray from ``origin`` (Moller-Trumbore, vectorised).

    The direction is deliberately skewed so the ray does not run along axis-aligned edges.
    """
    direction = np.array([0.5781, 0.5749, 0.5793])
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    p = np.cross(direction, e2)
    det = np.einsum("ij,ij->i", e1, p)
    ok = np.abs(det) > 1e-18
    inv = np.zeros_like(det)
    inv[ok] = 1.0 / det[ok]
    s = origin - tri[:, 0]
    u = np.einsum("ij,ij->i", s, p) * inv
    q = np.cross(s, e1)
    v = (q @ direction) * inv
    t = np.einsum("ij,ij->i", e2, q) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    return int(hit.sum())


# ----------------------------------------------------------------------------- gate


def _gate(
    vertices: np.ndarray,
    faces: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray],
    after: MeshAnalysis,
    nm_vertices: int | None,
) -> dict:
    """Independent printability checks; all must hold for the verdict "repaired"."""
    finite = bool(np.isfinite(vertices).all())
    if len(faces) and finite:
        solid = manifold3d.Manifold(
            manifold3d.Mesh64(
                vert_properties=np.ascontiguousarray(vertices, dtype=np.float64),
                tri_verts=np.ascontiguousarray(faces, dtype=np.uint64),
            )
        )
        status = solid.status().name
        empty = bool(solid.is_empty())
        manifold_volume = None if empty else float(solid.volume())
    else:
        status, empty, manifold_volume = ("NoFaces" if finite else "NonFiniteVertex"), True, None
    borders = boundary_loops(faces, edges) if len(faces) else []
    gate = {
        "finite_coordinates": finite,
        "manifold3d_status": status,
        "manifold3d_empty": empty,
        "manifold3d_volume_mm3": manifold_volume,
        "watertight": after.watertight,
        "winding_consistent": after.winding_consistent,
        "open_borders": len(borders),
        "largest_open_border_edges": borders[0] if borders else 0,
        # Both counts must be 0: MeshLab's and pocprint's own (they agree on the corpus).
        "two_manifold": after.watertight and nm_vertices == 0 and after.non_manifold_vertices == 0,
        "non_manifold_vertices": nm_vertices,  # None: not counted (already not watertight)
        "volume_positive": after.volume_mm3 is not None and after.volume_mm3 > 0,
    }
    gate["passed"] = bool(
        finite
        and status == "NoError"
        and not empty
        and gate["watertight"]
        and gate["winding_consistent"]
        and gate["two_manifold"]
        and gate["volume_positive"]
    )
    return gate


def _gate_reasons(gate: dict, after: MeshAnalysis, settings: RepairSettings) -> list[str]:
    reasons = []
    if after.triangles == 0:
        return ["The repair left no triangles: every part was noise or could not be kept."]
    if not gate["finite_coordinates"]:
        reasons.append("The repair produced NaN or infinite coordinates; the result is unusable.")
    if after.boundary_edges:
        reasons.append(
            f"{after.boundary_edges} boundary edges remain open in {gate['open_borders']} "
            f"hole(s) or open rim(s), the largest bounded by {gate['largest_open_border_edges']} "
            f"edges. Holes of up to {settings.max_hole_edges} edges are closed automatically "
            "unless the fill would intersect the surface; close these in the design software."
        )
    if after.non_manifold_edges:
        reasons.append(f"{after.non_manifold_edges} non-manifold edges remain after repair.")
    pinched = max(gate["non_manifold_vertices"] or 0, after.non_manifold_vertices)
    if pinched:
        reasons.append(
            f"{pinched} non-manifold vertices remain (separate surfaces touch in one point)."
        )
    if after.watertight and not after.winding_consistent:
        reasons.append("Neighbouring faces still point in opposite directions (winding).")
    if gate["manifold3d_status"] != "NoError" or gate["manifold3d_empty"]:
        reasons.append(
            f"manifold3d rejects the repaired mesh as a solid (status "
            f"{gate['manifold3d_status']}); it is not a closed, oriented 2-manifold."
        )
    if after.watertight and not gate["volume_positive"]:
        reasons.append(
            f"The enclosed volume is not positive ({after.volume_mm3:.3f} mm3): the surface "
            "is inside out or encloses nothing."
        )
    if not reasons and not gate["passed"]:  # defensive: never pass a failed gate silently
        reasons.append(f"The printability gate failed: {gate}.")
    return reasons


# ----------------------------------------------------------------------------- fidelity


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


def _fidelity(v0: np.ndarray, f0: np.ndarray, v1: np.ndarray, f1: np.ndarray) -> dict:
    """Compare the repaired mesh with the original: kept, invented and removed surface.

    Each repaired vertex is matched to its nearest original vertex. A repaired face whose
    matched corners form an original face is "kept"; the others are "invented" (hole fills).
    Original faces without a kept counterpart are "removed" (zero-area faces excluded).
    """
    nearest, displacement = _match_vertices(v0, v1)
    keys1 = face_keys(nearest[f1], len(v0)) if len(f1) else np.zeros(0, dtype=np.int64)
    keys0 = face_keys(f0, len(v0))
    kept = isin_sorted(keys1, keys0)
    areas0 = face_areas(v0, f0)
    removed = ~isin_sorted(keys0, keys1)
    zero_area = areas0 <= 0.0
    invented_groups = _groups(v1, f1[~kept])
    removed_groups = _groups(v0, f0[removed & ~zero_area])
    kept_faces = f1[kept]
    kept_area = float(face_areas(v1, kept_faces).sum()) if len(kept_faces) else 0.0
    on_kept = np.zeros(len(v1), dtype=bool)
    on_kept[kept_faces.ravel()] = True
    deviation = _kept_deviation(v0, f0, v1, kept_faces, displacement, kept_area)
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
        "removed": {
            "components": len(removed_groups),
            "faces": int((removed & ~zero_area).sum()),
            "area_mm2": float(sum(g["area_mm2"] for g in removed_groups)),
            "largest_diameter_mm": max((g["diameter_mm"] for g in removed_groups), default=0.0),
            "zero_area_faces_dropped": int((removed & zero_area).sum()),
            "largest_components": removed_groups[:_DETAIL_LIMIT],
        },
    }


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
    and measured against the original surface with MeshLab's Hausdorff filter.
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
    ms = pymeshlab.MeshSet()
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=sub_v, face_matrix=sub_f.astype(np.int32)))
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=v0, face_matrix=f0.astype(np.int32)))
    diag = float(np.linalg.norm(np.ptp(np.vstack([v0, sub_v]), axis=0))) or 1.0
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


def _fidelity_reasons(fidelity: dict, settings: RepairSettings) -> list[str]:
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
    if removed["largest_diameter_mm"] > settings.max_removed_diameter_mm:
        reasons.append(
            f"The repair removed {removed['components']} region(s), {removed['area_mm2']:.1f} "
            f"mm2 in total; the largest is {removed['largest_diameter_mm']:.1f} mm across "
            f"(limit {settings.max_removed_diameter_mm} mm). Check that no anatomy was lost."
        )
    return reasons
