"""The 3D viewer's meshes of one part: the upload as the worker read it and the faces the
repair invented or removed (pages only look; nothing here changes state).

STL stores every triangle in order, so the face indices of the changes are the triangle
numbers of the served files: the repaired mesh is served as stored, the upload (any format)
as the worker read it, welded, scaled to millimetres and at STL precision. File names made
from here carry the part number only, never patient data.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import trimesh

from pocprint.mesh.diff import MAX_SNAP_MM, surface_changes
from pocprint.mesh.read import binary_stl_bytes, load_mesh
from pocprint.store.models import Part

# Face changes of recent (original, repaired) pairs, keyed by both SHA-256s (content never
# changes under a hash, so entries never go stale); a few entries, as each may hold large
# index arrays.
_CHANGES_CACHE_SIZE = 8
_changes_cache: OrderedDict[tuple[str, str, str], dict] = OrderedDict()
_changes_lock = threading.Lock()


def binary_stl(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """Binary STL of a mesh, triangles in face order (so face i is STL triangle i)."""
    return binary_stl_bytes(vertices, faces, b"pocprint viewer binary STL")


def scale_to_mm(part: Part) -> float:
    """The factor the worker applied to the uploaded mesh before repairing it (1 for mm)."""
    units = (part.repair_report or {}).get("units") or {}
    factor = units.get("scale_to_mm") or getattr(part, "scale_to_mm", None)
    return float(factor) if factor else 1.0


def original_mesh(part: Part, source: Path) -> trimesh.Trimesh:
    """The uploaded mesh as the repair saw it, at the precision the repaired mesh is stored in.

    Loaded (welded) and scaled to millimetres exactly as in the worker, then rounded to single
    precision as saving the repaired binary STL rounded its vertices: so the corners of kept
    faces are bit-identical in both meshes even when the upload had double-precision
    coordinates (OBJ, PLY, 3MF) or was scaled from inches. Raises MeshError for a bad file.
    """
    mesh = load_mesh(source, part.fmt)
    factor = scale_to_mm(part)
    if factor != 1.0:
        mesh.apply_scale(factor)
    vertices = np.asarray(mesh.vertices).astype(np.float32).astype(np.float64)
    return trimesh.Trimesh(vertices=vertices, faces=mesh.faces, process=False, validate=False)


def candidate_of(part: Part) -> dict | None:
    """The closed candidate delivered as the repaired mesh (repair report), or None."""
    candidate = (part.repair_report or {}).get("candidate") or {}
    return candidate if candidate.get("used") else None


def snap_mm(part: Part) -> float:
    """How far the repaired mesh may have moved a vertex the diff still counts as kept: the
    largest offset of a split vertex copy of a delivered candidate (0: exact matching).
    A recorded offset beyond the diff's cap is not trusted: exact matching then."""
    candidate = candidate_of(part)
    offset = float((candidate or {}).get("max_split_offset_mm") or 0.0)
    return offset if 0.0 < offset <= MAX_SNAP_MM else 0.0


def changes_of(part: Part, source: Path, repaired: Path) -> dict:
    """Invented and removed faces of a processed part (computed once per pair of files)."""
    snap = snap_mm(part)
    key = (
        part.source_sha256,
        part.repaired_sha256 or "",
        f"{part.fmt}-{scale_to_mm(part)!r}-{snap!r}",
    )
    with _changes_lock:
        if key in _changes_cache:
            _changes_cache.move_to_end(key)
            return _changes_cache[key]
    result = surface_changes(original_mesh(part, source), load_mesh(repaired, "stl"), snap)
    with _changes_lock:
        _changes_cache[key] = result
        while len(_changes_cache) > _CHANGES_CACHE_SIZE:
            _changes_cache.popitem(last=False)
    return result
