"""The printability gate of a repaired mesh: finite coordinates, closed and two-manifold,
consistent winding, and manifold3d accepting it as a solid. The gate never repairs."""

from __future__ import annotations

import manifold3d
import numpy as np

from pocprint.mesh.analyse import MeshAnalysis
from pocprint.mesh.settings import RepairSettings
from pocprint.mesh.topology import boundary_loops


def gate_mesh(
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


def gate_reasons(gate: dict, after: MeshAnalysis, settings: RepairSettings) -> list[str]:
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
