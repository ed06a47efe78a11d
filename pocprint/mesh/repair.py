"""Automatic mesh repair with a strict printability gate and a fidelity report: the pipeline's
orchestration. Its steps live beside it: analyse.py (figures), close.py (the closed
candidate), gate.py, fidelity.py and removed.py (what changed), selfintersections.py,
overlaps.py (the search's bound), with topology.py and ray.py the shared primitives.

The repair runs MeshLab filters (pymeshlab) on a copy while the original stays in numpy, never
handed to a filter; manifold3d then acts as the gate (it never repairs). The fidelity report
says what the repair did to the clinician's surface in three separate figures, because one
Hausdorff number hides the difference between a harmless removed speck and a 20 mm invented
cap: (1) how far the kept surface moved, (2) how much surface was invented to close holes,
(3) how much was removed. Any failed gate or exceeded threshold gives
``needs_attention`` with the reason and the number; a mesh is never passed silently.

Self-intersections (before and after), thin walls and an implausible overall size are reported
as ``warnings``: the technician must see them, but they never change the verdict.

Over 400 lines for a reason: the orchestration with the MeshLab filter sequence, the
orientation of inside-out shells and the candidate hand-off; the steps are their own modules.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pymeshlab
import trimesh

from pocprint.mesh.analyse import (
    MeshAnalysis,
    analyse_welded_details,
    select_self_intersections,
    thin_walls,
)
from pocprint.mesh.close import close_candidate
from pocprint.mesh.errors import MeshError, TooComplex
from pocprint.mesh.fidelity import fidelity_and_match, fidelity_reasons
from pocprint.mesh.gate import gate_mesh, gate_reasons
from pocprint.mesh.overlaps import overlapping_pairs_per_face, search_too_costly
from pocprint.mesh.ray import count_ray_hits
from pocprint.mesh.read import save_mesh  # re-exported: the repair module owns the output
from pocprint.mesh.selfintersections import after_self_intersections
from pocprint.mesh.settings import RepairSettings  # re-exported: defined with its loader
from pocprint.mesh.stopwatch import Stopwatch
from pocprint.mesh.topology import (
    edge_table,
    face_components,
    flip_faces,
    group_identical_rows,
    signed_volume,
    weld_exact,
    winding_consistent,
)
from pocprint.mesh.units import PLAUSIBLE_MM, size_score

__all__ = ["RepairResult", "RepairSettings", "repair", "save_mesh"]


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
    also the gate, fidelity and thin walls. No other pymeshlab call overlaps it. The same
    thread then estimates the thin walls of the delivered mesh while the fidelity report
    and the count after repair run. ``duration_s["self_intersections"]`` and
    ``duration_s["thin_walls"]`` are the times of that work itself, so the parts may add up
    to more than ``total``.
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
            v1, f1, edges, shells = _standard_repair(
                ms, si_job, v0, f0, details, clean, settings, steps
            )
            # What the filters made is analysed in the background thread while its
            # inside-out shells are turned here (the count of the input is done by now).
            analysed = None if f1 is f0 else pool.submit(analyse_welded_details, v1, f1, edges)
            oriented, edges = _orient_outwards(v1, f1, edges, steps, shells)

        with watch.phase("analysis"):
            # Nothing changed: the figures of the input hold for the output.
            after, after_details = (before, details) if analysed is None else analysed.result()
            del analysed  # the future would keep the first edge table alive (memory)
            if oriented is not f1:
                after = _turned_over(after, v1, oriented, edges)
                after_details = {**after_details, "edges": edges}
            f1 = oriented
            repaired = trimesh.Trimesh(vertices=v1, faces=f1, process=False, validate=False)
        with watch.phase("gate"):
            gate = gate_mesh(v1, f1, edges, after)
        standard_reasons = gate_reasons(gate, after, settings)
        candidate: dict = {"used": False}
        if not gate["passed"] and len(f1):
            with watch.phase("candidate"):
                made = _closed_candidate(
                    v1,
                    f1,
                    after_details["edges"],
                    after_details["non_manifold_vertex_mask"],
                    steps,
                    pool,
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
        # The thin-wall estimate needs only the delivered mesh and no MeshLab: it runs in the
        # pool (after the count of the input, if that still runs) while the fidelity report
        # and the count after repair run here.
        del after_details, edges  # only the candidate needed them (memory)
        walls_job = pool.submit(_timed, _thin_walls, settings, v1, f1)
        with watch.phase("fidelity"):
            fidelity, match = fidelity_and_match(v0, f0, v1, f1, settings, details)
        del details
        t1 = clock()
        flagged0, t_si0 = si_job.result()
        waited = clock() - t1
        ms.clear()
        t1 = clock()
        si_after, si_method = after_self_intersections(v0, f0, flagged0, v1, f1, match)
        t_si1 = clock() - t1
        t2 = clock()
        walls, t_walls = walls_job.result()
        watch.add("thin_walls", t_walls)
        waited += clock() - t2
    del ms
    before = replace(before, self_intersecting_faces=int(flagged0.sum()))
    after = replace(after, self_intersecting_faces=si_after, thin_walls=walls)
    t7 = clock()

    if candidate["used"]:
        reasons = _candidate_reasons(candidate, settings) + gate_reasons(gate, after, settings)
    else:
        reasons = standard_reasons
    reasons += fidelity_reasons(fidelity, settings)
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
    """The MeshLab filters (unless there is nothing for them to change): (vertices, faces,
    edge table) of the result, and its shells when known (else None) for turning inside-out
    shells outwards (``_orient_outwards``), which the caller does."""
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
    return v1, f1, edges, shells


def _timed(function, *args):
    """(result, seconds) of one call; used for the work in the background thread."""
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def _thin_walls(settings: RepairSettings, vertices: np.ndarray, faces: np.ndarray) -> dict:
    """The thin-wall estimate of the delivered mesh with the settings' sampling."""
    return thin_walls(
        vertices,
        faces,
        settings.min_feature_mm,
        max_samples=settings.thin_wall_samples,
        warn_share=settings.thin_wall_warn_share,
    )


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
    # The parity ray runs towards +x, +y, +z, so only faces reaching beyond the point on
    # every axis can be hit (a margin far above rounding keeps the count exact).
    reach = tri.max(axis=1)
    # Bounding box of each shell (every label has faces, so no group is empty).
    lo = np.minimum.reduceat(tri.min(axis=1)[order], bounds[:-1], axis=0) + centre
    hi = np.maximum.reduceat(reach[order], bounds[:-1], axis=0) + centre
    margin = 1e-6 * (float(np.abs(tri).max()) + 1.0)
    inverted = []
    for s in candidates:
        point = vertices[faces[shell_faces[s][0], 0]]
        around = np.flatnonzero(closed & np.all(lo <= point, axis=1) & np.all(hi >= point, axis=1))
        beyond = (point - centre) - margin
        nested = any(
            count_ray_hits(point, vertices[faces[_reaching(shell_faces[o], reach, beyond)]]) % 2
            == 1
            for o in around
            if o != s
        )
        if not nested:
            inverted.append(s)
    if not inverted:
        return faces, edges
    flip = np.isin(labels, inverted)
    faces, (edge_id, counts) = flip_faces(faces, (edge_id, counts), flip)
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


def _reaching(idx: np.ndarray, reach: np.ndarray, beyond: np.ndarray) -> np.ndarray:
    """The faces ``idx`` whose largest coordinates all reach ``beyond``."""
    return idx[(reach[idx] >= beyond).all(axis=1)]


# ----------------------------------------------------------------------------- candidate


def _closed_candidate(
    vertices: np.ndarray,
    faces: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray],
    pinched: np.ndarray,
    steps: list[dict],
    pool: ThreadPoolExecutor,
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
    # Analysed in the background thread while the shells are oriented here; when shells
    # are turned over, only the winding and the volume are measured again.
    analysed = pool.submit(analyse_welded_details, v, f, edges)
    oriented, edges = _orient_outwards(v, f, edges, steps)
    after = analysed.result()[0]
    if oriented is not f:
        after = _turned_over(after, v, oriented, edges)
    f = oriented
    gate = gate_mesh(v, f, edges, after)
    if not gate["passed"]:
        record["not_used"] = step["not_used"] = f"the candidate failed the gate too: {gate}"
        return {"record": record, "mesh": None}
    record["used"] = True
    return {"record": record, "mesh": (v, f, edges, after, gate)}


def _turned_over(
    analysis: MeshAnalysis, vertices: np.ndarray, faces: np.ndarray, edges: tuple
) -> MeshAnalysis:
    """The analysis after whole shells were turned over: only the winding and the volume
    can change (edges, shells, fans, areas and counts are those of the unturned faces)."""
    edge_id, counts = edges
    volume = signed_volume(vertices, faces) if analysis.watertight else None
    return replace(
        analysis,
        winding_consistent=winding_consistent(faces, edge_id, len(counts)),
        volume_mm3=volume,
        inside_out=bool(volume is not None and volume < 0),
    )


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
