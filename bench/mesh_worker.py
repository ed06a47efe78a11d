"""One tool on one mesh file, run in a fresh child process by ``bench.mesh``.

Usage (from the repository root)::

    PYTHON -m bench.mesh_worker TOOL INPUT OUTPUT_STL RESULT_JSON

TOOL is ``pocprint`` (the service's own pipeline), ``pymeshlab`` (the bare MeshLab repair
sequence, the speed baseline) or ``pymeshfix``. Each tool reads INPUT, repairs it and saves
OUTPUT_STL; the timed span runs from the start of reading to the end of saving (imports and
interpreter start-up are outside it, for every tool alike). RESULT_JSON receives the timings
and what the tool itself says. Nothing is checked here: the parent checks every output the
same way, whatever tool made it.

Imports are made per tool: the ``pymeshfix`` tool runs with the interpreter of its own venv
(bench/work/venv-pymeshfix, which has only pymeshfix, trimesh and numpy), because pymeshfix is
AGPL and must never be imported by the service or its environment.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

# Mirrors pocprint.mesh.repair.RepairSettings defaults (max_hole_edges, min_component_faces).
MAX_HOLE_EDGES = 100
MIN_COMPONENT_FACES = 25


def _fmt(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


# ----------------------------------------------------------------------------- pocprint


def _units_step(mesh, path: Path, fmt: str) -> dict:
    """Unit handling as the service does it, if pocprint.mesh.units exists.

    Scales to mm when the guess is clear-cut; otherwise keeps file units (the service would
    wait for a technician; the benchmark goes on and records it).
    """
    try:
        from pocprint.mesh import units
    except ImportError as exc:
        return {"available": False, "note": f"pocprint.mesh.units not importable: {exc}"}
    info: dict = {"available": True}
    declared = None
    if fmt == "3mf":
        declared = "mm"  # the 3MF reader applies the file's own unit attribute
    elif hasattr(units, "declared_unit_from_header"):
        declared = units.declared_unit_from_header(path, fmt)
    info["declared"] = declared
    volume = float(mesh.volume) if mesh.is_volume else None
    guess = units.guess_units(tuple(float(x) for x in mesh.extents), volume, declared)
    proposed = getattr(guess, "proposed", None)
    clear = bool(getattr(guess, "clear", False))
    scale = getattr(guess, "scale_to_mm", None)
    table = getattr(units, "UNIT_TO_MM", {})
    if proposed in table:
        scale = table[proposed]
    info.update(
        proposed=proposed,
        clear=clear,
        reasons=[str(r) for r in getattr(guess, "reasons", [])],
        guess_scale_to_mm=None if scale is None else float(scale),
    )
    if clear and scale is not None:
        if float(scale) != 1.0:
            mesh.apply_scale(float(scale))
        info["applied_scale"] = float(scale)
        info["unit_used"] = proposed
    else:
        info["applied_scale"] = 1.0
        info["unit_used"] = "file units (guess not clear-cut)"
    return info


def _fidelity_summary(fidelity: dict) -> dict:
    kept = fidelity.get("kept_surface", {})
    inv = fidelity.get("invented", {})
    rem = fidelity.get("removed", {})
    return {
        "kept_max_mm": kept.get("max_mm"),
        "kept_mean_mm": kept.get("mean_mm"),
        "kept_method": kept.get("method"),
        "kept_faces": kept.get("faces"),
        "moved_vertices": kept.get("moved_vertices"),
        "invented_patches": inv.get("patches"),
        "invented_faces": inv.get("faces"),
        "invented_area_mm2": inv.get("area_mm2"),
        "invented_largest_diameter_mm": inv.get("largest_patch_diameter_mm"),
        "removed_components": rem.get("components"),
        "removed_faces": rem.get("faces"),
        "removed_area_mm2": rem.get("area_mm2"),
        "removed_largest_diameter_mm": rem.get("largest_diameter_mm"),
        "zero_area_faces_dropped": rem.get("zero_area_faces_dropped"),
    }


def run_pocprint(src: Path, out: Path) -> dict:
    from pocprint.mesh.errors import MeshError
    from pocprint.mesh.read import load_mesh
    from pocprint.mesh.repair import repair, save_mesh

    fmt = _fmt(src)
    clock = time.perf_counter
    t0 = clock()
    try:
        mesh = load_mesh(src, fmt)
    except MeshError as exc:
        return {"ok": False, "stage": "read", "error": f"MeshError: {exc}", "time_s": clock() - t0}
    t1 = clock()
    units = _units_step(mesh, src, fmt)
    t2 = clock()
    try:
        result = repair(mesh)
    except MeshError as exc:
        return {
            "ok": False,
            "stage": "repair",
            "error": f"MeshError: {exc}",
            "time_s": clock() - t0,
        }
    t3 = clock()
    save_mesh(result.mesh, out)
    t4 = clock()
    report = result.report()
    return {
        "ok": True,
        "time_s": t4 - t0,
        "timings_s": {
            "read": t1 - t0,
            "units": t2 - t1,
            "repair_call": t3 - t2,
            "save": t4 - t3,
            "repair_breakdown": report.get("duration_s", {}),
        },
        "input_triangles": len(mesh.faces),
        "units": units,
        "verdict": result.verdict,
        "reasons": list(result.reasons),
        "fidelity": _fidelity_summary(result.fidelity),
        "gate": report.get("gate", {}),
        "before": report.get("before", {}),
        "after": report.get("after", {}),
        "filters": [
            {k: s[k] for k in ("filter", "error", "undone", "skipped") if k in s}
            for s in report["steps"]
        ],
        "candidate": _candidate_summary(report.get("candidate") or {"used": False}),
    }


def _candidate_summary(candidate: dict) -> dict:
    """The closed candidate's record without the standard repair's full analysis."""
    out = {k: v for k, v in candidate.items() if k != "standard_repair"}
    standard = candidate.get("standard_repair")
    if standard:
        out["standard_repair_reasons"] = standard.get("reasons", [])
        out["standard_repair_gate_passed"] = standard.get("gate", {}).get("passed")
    return out


# ----------------------------------------------------------------------------- bare pymeshlab


def run_pymeshlab(src: Path, out: Path) -> dict:
    """Load into a MeshSet, the same kind of filters in the same order as pocprint, save.

    One pass (pocprint runs one too), no pocprint additions (no small-model fallback, no outward
    orientation, no gate, no fidelity): the bare MeshLab sequence.
    """
    import pymeshlab

    clock = time.perf_counter
    filters = [
        ("meshing_remove_duplicate_vertices", {}),
        ("meshing_remove_duplicate_faces", {}),
        ("meshing_remove_null_faces", {}),
        ("meshing_remove_unreferenced_vertices", {}),
        (
            "meshing_remove_connected_component_by_face_number",
            {"mincomponentsize": MIN_COMPONENT_FACES, "removeunref": True},
        ),
        ("meshing_repair_non_manifold_edges", {"method": "Remove Faces"}),
        ("meshing_repair_non_manifold_vertices", {"vertdispratio": 0.0}),
        (
            "meshing_close_holes",
            {
                "maxholesize": MAX_HOLE_EDGES,
                "selected": False,
                "newfaceselected": False,
                "selfintersection": True,
                "refinehole": False,
            },
        ),
        ("meshing_re_orient_faces_coherently", {}),
    ]
    t0 = clock()
    ms = pymeshlab.MeshSet()
    try:
        ms.load_new_mesh(str(src))
    except pymeshlab.PyMeshLabException as exc:
        return {"ok": False, "stage": "read", "error": " ".join(str(exc).split())}
    meshes_loaded = ms.mesh_number()
    if meshes_loaded > 1:  # 3MF with several objects: one mesh, like the other tools
        ms.generate_by_merging_visible_meshes()
    t1 = clock()
    loaded_faces = ms.current_mesh().face_number()
    steps = []
    for name, params in filters:
        s0 = clock()
        step = {"filter": name}
        try:
            ms.apply_filter(name, **params)
        except pymeshlab.PyMeshLabException as exc:
            step["error"] = " ".join(str(exc).split())
        step["s"] = clock() - s0
        steps.append(step)
    t2 = clock()
    ms.save_current_mesh(str(out), binary=True, save_textures=False)
    t3 = clock()
    return {
        "ok": True,
        "time_s": t3 - t0,
        "timings_s": {"read": t1 - t0, "filters": t2 - t1, "save": t3 - t2},
        "meshes_loaded": meshes_loaded,
        "loaded_faces": loaded_faces,
        "output_faces": ms.current_mesh().face_number(),
        "filters": steps,
    }


# ----------------------------------------------------------------------------- pymeshfix


def run_pymeshfix(src: Path, out: Path) -> dict:
    import numpy as np
    import pymeshfix
    import trimesh

    clock = time.perf_counter
    t0 = clock()
    mesh = trimesh.load(str(src), force="mesh")  # default process=True: merged vertices
    t1 = clock()
    fix = pymeshfix.MeshFix(
        np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int32)
    )
    fix.repair()
    t2 = clock()
    points = np.asarray(fix.points, dtype=np.float64)
    faces = np.asarray(fix.faces, dtype=np.int64).reshape(-1, 3)
    result = trimesh.Trimesh(vertices=points, faces=faces, process=False, validate=False)
    result.export(str(out), file_type="stl")  # binary STL
    t3 = clock()
    return {
        "ok": True,
        "time_s": t3 - t0,
        "timings_s": {"read": t1 - t0, "repair": t2 - t1, "save": t3 - t2},
        "loaded_faces": len(mesh.faces),
        "output_faces": len(faces),
        "pymeshfix_version": getattr(pymeshfix, "__version__", "unknown"),
    }


def _vm_hwm_mb() -> float | None:
    """This process's peak resident memory (Linux VmHWM), as a cross-check of GNU time."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except (OSError, ValueError):
        pass
    return None


TOOLS = {"pocprint": run_pocprint, "pymeshlab": run_pymeshlab, "pymeshfix": run_pymeshfix}


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in TOOLS:
        print(__doc__, file=sys.stderr)
        return 2
    tool, src, out, result_path = argv[0], Path(argv[1]), Path(argv[2]), Path(argv[3])
    try:
        result = TOOLS[tool](src, out)
    except Exception as exc:  # recorded as a failure of this tool on this file
        result = {
            "ok": False,
            "stage": "exception",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=8),
        }
    result["tool"] = tool
    result["vm_hwm_mb"] = _vm_hwm_mb()
    result_path.write_text(json.dumps(result, default=float))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
