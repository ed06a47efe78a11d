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
from concurrent.futures import ThreadPoolExecutor
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
    analyse_welded_details,
    boundary_loops,
    count_self_intersections,
    edge_table,
    face_areas,
    face_components,
    face_keys,
    group_identical_rows,
    isin_sorted,
    select_self_intersections,
    thin_walls,
    weld_exact,
)
from pocprint.mesh.close import close_candidate
from pocprint.mesh.errors import MeshError, TooComplex
from pocprint.mesh.overlaps import overlapping_pairs_per_face, search_too_costly
from pocprint.mesh.ray import count_ray_hits
from pocprint.mesh.read import save_mesh  # re-exported: the repair module owns the output
from pocprint.mesh.removed import removed_pieces, removed_summary
from pocprint.mesh.settings import RepairSettings  # re-exported: defined with its loader
from pocprint.mesh.stopwatch import Stopwatch
from pocprint.mesh.units import PLAUSIBLE_MM, size_score

__all__ = ["RepairResult", "RepairSettings", "repair", "save_mesh"]

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
    # How figures with more than one way of computing them were obtained.
    methods: dict[str, str] = field(default_factory=dict)
    # The closed candidate made when the standard repair fails the gate (close.py): whether
    # it is the delivered mesh, what it did, and the standard repair's own figures.
    candidate: dict = field(default_factory=lambda: {"used": False})

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
            "methods": dict(self.methods),
            "candidate": dict(self.candidate),
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

    MeshLab's self-intersection count of the input runs in a background thread (pymeshlab
    releases the GIL) while numpy works: the analysis, and for a mesh with nothing to repair
    also the gate, fidelity and thin walls. No other pymeshlab call overlaps it.
    ``duration_s["self_intersections"]`` is the time of the counts themselves, so the parts
    may add up to more than ``total``.
    """
    settings = settings or RepairSettings()
    clock = time.perf_counter
    t0 = clock()
    watch = Stopwatch(("analysis", "repair", "gate", "fidelity", "thin_walls"))
    with watch.phase("analysis"):
        v0, f0 = weld_exact(mesh.vertices, mesh.faces)
        if len(f0) == 0:
            raise MeshError(
                "no_triangles", "The mesh has no triangles, so there is nothing to repair."
            )
        _bound_self_intersection_search(v0, f0, settings)
    # One MeshSet serves the self-intersection count of the input and then the filters.
    ms = pymeshlab.MeshSet()
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=v0, face_matrix=f0.astype(np.int32)), "repaired")
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The count runs while numpy works below; it must end before any other pymeshlab
        # call (the filters, or the count after repair), which waits for it.
        si_job = pool.submit(_timed, select_self_intersections, ms)
        with watch.phase("analysis"):
            before, details = analyse_welded_details(v0, f0)
            clean = _nothing_to_repair(v0, before, details, settings)

        steps: list[dict] = []
        with watch.phase("repair"):
            v1, f1, edges = _standard_repair(ms, si_job, v0, f0, details, clean, settings, steps)
            repaired = trimesh.Trimesh(vertices=v1, faces=f1, process=False, validate=False)

        with watch.phase("analysis"):
            # Nothing changed: the figures of the input hold for the output.
            after_details = details
            if f1 is not f0:
                after, after_details = analyse_welded_details(v1, f1, edges)
            else:
                after = before
        with watch.phase("gate"):
            gate = _gate(v1, f1, edges, after)
        standard_reasons = _gate_reasons(gate, after, settings)
        candidate: dict = {"used": False}
        if not gate["passed"] and len(f1):
            with watch.phase("candidate"):
                made = _closed_candidate(
                    v1, f1, after_details["edges"], after_details["non_manifold_vertex_mask"], steps
                )
            candidate = made["record"]
            if made["mesh"] is not None:
                candidate["standard_repair"] = {
                    "after": after.to_dict(),
                    "gate": gate,
                    "reasons": standard_reasons,
                }
                v1, f1, edges, after, gate = made["mesh"]
                repaired = trimesh.Trimesh(vertices=v1, faces=f1, process=False, validate=False)
        with watch.phase("fidelity"):
            fidelity, match = _fidelity_and_match(v0, f0, v1, f1, settings)
        with watch.phase("thin_walls"):
            walls = thin_walls(
                v1,
                f1,
                settings.min_feature_mm,
                max_samples=settings.thin_wall_samples,
                warn_share=settings.thin_wall_warn_share,
            )
        t1 = clock()
        flagged0, t_si0 = si_job.result()
        waited = clock() - t1
    del ms
    t1 = clock()
    si_after, si_method = _after_self_intersections(v0, f0, flagged0, v1, f1, match)
    t_si1 = clock() - t1
    before = replace(before, self_intersecting_faces=int(flagged0.sum()))
    after = replace(after, self_intersecting_faces=si_after, thin_walls=walls)
    t7 = clock()

    if candidate["used"]:
        reasons = _candidate_reasons(candidate, settings) + _gate_reasons(gate, after, settings)
    else:
        reasons = standard_reasons
    reasons += _fidelity_reasons(fidelity, settings)
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
            **watch.rounded(),
            # Its own duration (it runs alongside the rest, see above) and the wait for it.
            "self_intersections": round(t_si0 + t_si1, 4),
            "self_intersections_wait": round(waited, 4),
            "total": round(t7 - t0, 4),
        },
        gate=gate,
        settings=asdict(settings),
        warnings=_warnings(before, after),
        methods={"self_intersections_after": si_method},
        candidate=candidate,
    )


def _bound_self_intersection_search(
    vertices: np.ndarray, faces: np.ndarray, settings: RepairSettings
) -> None:
    """Stop before MeshLab's pair search when it would test most pairs of faces."""
    per_face = overlapping_pairs_per_face(vertices, faces)
    if search_too_costly(per_face, len(faces), settings.max_box_overlaps_per_face):
        raise TooComplex(
            "too complex to repair automatically: on average each triangle's bounding box "
            f"overlaps about {per_face:,.0f} others (limit "
            f"{settings.max_box_overlaps_per_face:g}), as in a soup of random triangles; "
            "the self-intersection search was not run",
            {
                "box_overlaps_per_face": round(per_face, 1),
                "max_box_overlaps_per_face": settings.max_box_overlaps_per_face,
                "triangles": len(faces),
            },
        )


def _standard_repair(ms, si_job, v0, f0, details, clean, settings, steps):
    """The MeshLab filters (unless there is nothing for them to change), then inside-out
    shells turned outwards: (vertices, faces, edge table) of the repaired mesh."""
    if clean is None:
        si_job.result()
        _run_filters(ms, settings, steps)
        current = ms.current_mesh()
        v1, f1 = weld_exact(current.vertex_matrix(), current.face_matrix())
        del current
        ms.clear()  # MeshLab's copies are not needed any more (memory)
        edges = edge_table(f1, len(v1))
    else:
        # The filters would leave the mesh exactly as it is (see _nothing_to_repair).
        steps.append({"filter": "meshlab_repair_filters", "params": {}, "skipped": clean})
        v1, f1, edges = v0, f0, details["edges"]
    # With every edge manifold (clean), the analysis' shells are the orientation's shells.
    shells = None if clean is None else (len(details["shell_faces"]), details["shell_labels"])
    f1, edges = _orient_outwards(v1, f1, edges, steps, shells)
    return v1, f1, edges


def _timed(function, *args):
    """(result, seconds) of one call; used for the background self-intersection count."""
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def _nothing_to_repair(
    vertices: np.ndarray, before: MeshAnalysis, details: dict, settings: RepairSettings
) -> str | None:
    """Why the MeshLab filters would leave this (welded) mesh unchanged, or None.

    Filter by filter: duplicate vertices and unreferenced vertices cannot exist after the
    exact weld (with finite coordinates); duplicate faces and null faces are absent (our
    degenerate rule includes MeshLab's zero-area rule); every shell has more faces than the
    small-component limit, so none is removed; without boundary edges, non-manifold edges
    and non-manifold vertices (our count equals MeshLab's) the non-manifold repairs and hole
    closing have nothing to act on; with consistent winding re-orienting flips nothing.
    ``tests/test_repair_speed_paths.py`` checks on the corpus that the filters indeed
    return such meshes unchanged. Inside-out shells are still inverted afterwards.
    """
    shell_faces = details["shell_faces"]
    if not (
        before.watertight
        and before.winding_consistent
        and before.non_manifold_vertices == 0
        and before.duplicate_faces == 0
        and before.degenerate_faces == 0
        and len(shell_faces)
        and int(shell_faces.min()) > settings.min_component_faces
        and bool(np.isfinite(vertices).all())
    ):
        return None
    return (
        "the analysis before repair found nothing for the MeshLab filters to change (closed, "
        "edge- and vertex-manifold, consistent winding, no duplicate or zero-area faces, "
        f"every shell above {settings.min_component_faces} faces), so they were not run; "
        "the mesh is gated as it is"
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
    # One round of non-manifold repair and hole closing. MeshLab splits non-manifold vertices
    # into coincident copies, which every STL reader welds again, and filling a hole can
    # create a non-manifold edge while removing one opens a hole. The result is re-welded
    # (it is gated and saved welded, as a slicer sees it); what welding brings back fails the
    # gate and goes to the closed candidate (close.py), which cuts such geometry apart instead
    # of removing it. A second round used to run here: on the corpus it never turned a part
    # into "repaired" (all 9 files that ran it still needed attention) and it cost ~5 s on
    # the defective 2M-triangle mesh.
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
    _apply(ms, steps, "meshing_re_orient_faces_coherently")
    _apply(ms, steps, "meshing_remove_unreferenced_vertices")


def _orient_outwards(
    vertices: np.ndarray,
    faces: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray],
    steps: list[dict],
    shells: tuple[int, np.ndarray] | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Invert closed shells with negative signed volume (inside-out), except cavities.

    A closed shell lying inside another shell is an internal cavity, whose normals rightly
    point inwards, so only shells with negative volume that are not nested are inverted.
    """
    if len(faces) == 0:
        return faces, edges
    edge_id, counts = edges
    if shells is None:  # shells joined across any shared edge; may be given when known
        shells = face_components(edge_id, counts, only_manifold_edges=False)
    n_shells, labels = shells
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
            count_ray_hits(point, vertices[faces[shell_faces[o]]]) % 2 == 1
            for o in around
            if o != s
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


# ----------------------------------------------------------------------------- candidate


def _closed_candidate(
    vertices: np.ndarray,
    faces: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray],
    pinched: np.ndarray,
    steps: list[dict],
) -> dict:
    """Closed candidate of a mesh that failed the gate (see ``close.close_candidate``).

    Returns ``{"record": ..., "mesh": (v, f, edges, after, gate) or None}``: the mesh only
    when the candidate passes the same gate (it is gated as saved: float32 coordinates).
    """
    v, f, edges, done = close_candidate(vertices, faces, edges, pinched)
    record: dict = {"used": False, **done}
    step = {"filter": "closed_candidate", "params": {"module": "pocprint.mesh.close"}, **done}
    steps.append(step)
    if len(f) == 0:
        record["not_used"] = step["not_used"] = "nothing closed could be made"
        return {"record": record, "mesh": None}
    as_saved = np.asarray(v, dtype=np.float32).astype(np.float64)
    if len(group_identical_rows(as_saved)[1]) != len(v):
        # The saved (float32) file would merge vertices: gate what would be saved.
        v, f = weld_exact(as_saved, f)
        edges = edge_table(f, len(v))
        record["rounded_to_float32"] = True
    f, edges = _orient_outwards(v, f, edges, steps)
    after = analyse_welded(v, f, edges)
    gate = _gate(v, f, edges, after)
    if not gate["passed"]:
        record["not_used"] = step["not_used"] = f"the candidate failed the gate too: {gate}"
        return {"record": record, "mesh": None}
    record["used"] = True
    return {"record": record, "mesh": (v, f, edges, after, gate)}


def _candidate_reasons(candidate: dict, settings: RepairSettings) -> list[str]:
    """Why a delivered candidate is never "repaired": what the standard repair could not do
    within the limits, and what the candidate did beyond them."""
    reasons = [
        "Within the configured limits the automatic repair could not make this part "
        "printable: " + " ".join(candidate["standard_repair"]["reasons"])
    ]
    done = []
    if candidate["split_vertices"]:
        done.append(
            f"cut {candidate['cut_non_manifold_edges']} non-manifold and "
            f"{candidate['cut_incoherent_edges']} wrongly wound edge(s) apart at "
            f"{candidate['split_vertices']} vertices (copies moved by up to "
            f"{candidate['max_split_offset_mm']:.4f} mm)"
        )
    if candidate["open_borders"]:
        done.append(
            f"closed {candidate['open_borders']} open border(s) of any size, the largest of "
            f"{candidate['largest_border_closed_edges']} edges (limit for automatic closing: "
            f"{settings.max_hole_edges})"
        )
    if candidate["shells_dropped"]:
        done.append(
            f"dropped {candidate['shells_dropped']} shell(s) ({candidate['faces_dropped']} "
            "faces) that enclose no volume"
        )
    reasons.append(
        "pocprint made a closed, two-manifold candidate for a technician to review: "
        + ("; ".join(done) or "no further change")
        + ". It is printable, but it is not called repaired: check the invented and removed "
        "surface below and accept it only with a reason."
    )
    return reasons


# ----------------------------------------------------------------------------- gate


def _gate(
    vertices: np.ndarray,
    faces: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray],
    after: MeshAnalysis,
) -> dict:
    """Independent printability checks; all must hold for the verdict "repaired".

    Non-manifold vertices are pocprint's own count (``after.non_manifold_vertices``), which
    equals MeshLab's ``non_two_manifold_vertices`` on every corpus file (tested); MeshLab's
    count cost ~1.3 s per million faces and is no longer run here.
    """
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
        "two_manifold": after.watertight and after.non_manifold_vertices == 0,
        "non_manifold_vertices": after.non_manifold_vertices,
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
    pinched = after.non_manifold_vertices
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
    """Compare the repaired mesh with the original: kept, invented and removed surface."""
    return _fidelity_and_match(v0, f0, v1, f1)[0]


def _fidelity_and_match(
    v0: np.ndarray,
    f0: np.ndarray,
    v1: np.ndarray,
    f1: np.ndarray,
    settings: RepairSettings | None = None,
) -> tuple[dict, dict]:
    """Compare the repaired mesh with the original: kept, invented and removed surface.

    Each repaired vertex is matched to its nearest original vertex. A repaired face whose
    matched corners form an original face is "kept"; the others are "invented" (hole fills).
    Original faces without a kept counterpart are "removed" (zero-area faces excluded).
    Also returns the matching (``nearest``, ``displacement``, ``kept``, ``origin``: index of
    an original face with the same corners per kept face, -1 otherwise) for reuse.
    """
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
    areas0 = face_areas(v0, f0)
    zero_area = areas0 <= 0.0
    invented_groups = _groups(v1, f1[~kept])
    settings = settings or RepairSettings()
    pieces = removed_pieces(
        v0,
        f0,
        removed & ~zero_area,
        settings.min_component_faces,
        settings.noise_volume_mm3,
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


# ----------------------------------------------------------------------------- self-intersections

# Above this share of the faces, the sub-mesh would save little: count on the whole mesh.
_SUBSET_SHARE_LIMIT = 0.5


def _after_self_intersections(
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
        "a changed face (equal to the whole-mesh count, see repair._after_self_intersections)"
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
