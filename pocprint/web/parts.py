"""Repair page of one part: its figures, and a 3D viewer of the uploaded and repaired meshes.

The viewer (static/js/viewer.js) fetches both meshes as binary STL and the face indices the
repair invented or removed, and colours those faces. STL stores every triangle in order, so the
face indices of ``changes.json`` are the triangle numbers of the served files: the repaired
mesh is served as stored, the upload (any format) as the worker read it, welded, scaled to
millimetres and at STL precision. Nothing served here carries patient data: file names are
made from the part number.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import trimesh
from flask import Blueprint, Response, abort, jsonify, render_template, request, url_for

from pocprint.domain.design_warnings import design_warnings
from pocprint.domain.roles import Permission
from pocprint.mesh.diff import MAX_SNAP_MM, surface_changes
from pocprint.mesh.errors import MeshError
from pocprint.mesh.read import binary_stl_bytes, load_mesh
from pocprint.store.db import read_session
from pocprint.store.models import Case, Part
from pocprint.web.auth import lab, requires

bp = Blueprint("parts", __name__, url_prefix="/parts")

# Face changes of recent (original, repaired) pairs, keyed by both SHA-256s (content never
# changes under a hash, so entries never go stale); a few entries, as each may hold large
# index arrays.
_CHANGES_CACHE_SIZE = 8
_changes_cache: OrderedDict[tuple[str, str, str], dict] = OrderedDict()
_changes_lock = threading.Lock()


def _part(part_id: int) -> Part:
    with read_session(lab().engine) as session:
        part = session.get(Part, part_id)
    if part is None:
        abort(404)
    return part


def _blob(sha256: str | None):
    if not sha256:
        abort(404)
    path = lab().blobs.path(sha256)
    if not path.exists():
        abort(404, description="The stored mesh file is missing.")
    return path


def binary_stl(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """Binary STL of a mesh, triangles in face order (so face i is STL triangle i)."""
    return binary_stl_bytes(vertices, faces, b"pocprint viewer binary STL")


def _load(path, fmt: str):
    try:
        return load_mesh(path, fmt)
    except MeshError as exc:
        abort(422, description=str(exc))


def scale_to_mm(part: Part) -> float:
    """The factor the worker applied to the uploaded mesh before repairing it (1 for mm)."""
    units = (part.repair_report or {}).get("units") or {}
    factor = units.get("scale_to_mm") or getattr(part, "scale_to_mm", None)
    return float(factor) if factor else 1.0


def original_mesh(part: Part) -> trimesh.Trimesh:
    """The uploaded mesh as the repair saw it, at the precision the repaired mesh is stored in.

    Loaded (welded) and scaled to millimetres exactly as in the worker, then rounded to single
    precision as saving the repaired binary STL rounded its vertices: so the corners of kept
    faces are bit-identical in both meshes even when the upload had double-precision
    coordinates (OBJ, PLY, 3MF) or was scaled from inches.
    """
    mesh = _load(_blob(part.source_sha256), part.fmt)
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


def changes_of(part: Part) -> dict:
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
    repaired = _load(_blob(part.repaired_sha256), "stl")
    result = surface_changes(original_mesh(part), repaired, snap)
    with _changes_lock:
        _changes_cache[key] = result
        while len(_changes_cache) > _CHANGES_CACHE_SIZE:
            _changes_cache.popitem(last=False)
    return result


@bp.route("/<int:part_id>")
@requires(Permission.VIEW)
def repair(part_id: int):
    return repair_page(part_id)


def repair_page(part_id: int, signing_form: dict | None = None, status: int = 200):
    """The repair page: figures, warnings, 3D view and the design approval form (re-shown
    with what was typed after a refused signature)."""
    part = _part(part_id)
    with read_session(lab().engine) as session:
        case = session.get(Case, part.case_id)
    return render_template(
        "parts/repair.html",
        part=part,
        p=part,
        case=case,
        report=part.repair_report or {},
        warnings=design_warnings(part.repair_report, part.analysis_after),
        viewer=bool(part.repaired_sha256 and part.analysis_after),
        snap=snap_mm(part),
        signing_form=signing_form or {},
        anchor_by_part=False,
    ), status


@bp.route("/<int:part_id>/mesh/<any(original, repaired):which>.stl")
@requires(Permission.VIEW)
def mesh(part_id: int, which: str):
    part = _part(part_id)
    sha = part.source_sha256 if which == "original" else part.repaired_sha256
    path = _blob(sha)
    etag = f"{sha}-stl" if which == "repaired" else f"{sha}-stl-x{scale_to_mm(part)!r}"
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    elif which == "repaired":  # stored by the repair as binary STL, welded: served as is
        response = Response(path.read_bytes(), mimetype="model/stl")
    else:  # any format: converted, with the faces and scale the analysis and the diff used
        loaded = original_mesh(part)
        response = Response(binary_stl(loaded.vertices, loaded.faces), mimetype="model/stl")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"
    response.headers["Content-Disposition"] = f'inline; filename="part-{part_id}-{which}.stl"'
    return response


@bp.route("/<int:part_id>/changes.json")
@requires(Permission.VIEW)
def changes(part_id: int):
    part = _part(part_id)
    if not part.repaired_sha256:
        abort(404, description="This part has no repaired mesh yet.")
    result = changes_of(part)
    response = jsonify(
        invented=result["invented"].tolist(),
        removed=result["removed"].tolist(),
        counts=result["counts"],
        original=url_for("parts.mesh", part_id=part_id, which="original"),
        repaired=url_for("parts.mesh", part_id=part_id, which="repaired"),
    )
    response.headers["Cache-Control"] = "private, no-cache"
    return response
