"""Repair page of one part: its figures, and a 3D viewer of the uploaded and repaired meshes.

The viewer (static/js/viewer.js) fetches both meshes as binary STL and the face indices the
repair invented or removed, and colours those faces; the meshes and the changes come from
``reads/mesh_view.py``. Nothing served here carries patient data: file names are made from
the part number.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, render_template, request, url_for

from pocprint.domain.design_warnings import design_warnings
from pocprint.domain.roles import Permission
from pocprint.mesh.errors import MeshError
from pocprint.reads import mesh_view
from pocprint.store.db import read_session
from pocprint.store.models import Case, Part
from pocprint.web.auth import lab, requires

bp = Blueprint("parts", __name__, url_prefix="/parts")


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


def _viewed(function, *args):
    """A reads/mesh_view call; a stored file that no longer reads is a 422 with the reason."""
    try:
        return function(*args)
    except MeshError as exc:
        abort(422, description=str(exc))


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
        snap=mesh_view.snap_mm(part),
        signing_form=signing_form or {},
        anchor_by_part=False,
    ), status


@bp.route("/<int:part_id>/mesh/<any(original, repaired):which>.stl")
@requires(Permission.VIEW)
def mesh(part_id: int, which: str):
    part = _part(part_id)
    sha = part.source_sha256 if which == "original" else part.repaired_sha256
    path = _blob(sha)
    etag = f"{sha}-stl" if which == "repaired" else f"{sha}-stl-x{mesh_view.scale_to_mm(part)!r}"
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    elif which == "repaired":  # stored by the repair as binary STL, welded: served as is
        response = Response(path.read_bytes(), mimetype="model/stl")
    else:  # any format: converted, with the faces and scale the analysis and the diff used
        loaded = _viewed(mesh_view.original_mesh, part, path)
        stl = mesh_view.binary_stl(loaded.vertices, loaded.faces)
        response = Response(stl, mimetype="model/stl")
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
    source, repaired = _blob(part.source_sha256), _blob(part.repaired_sha256)
    result = _viewed(mesh_view.changes_of, part, source, repaired)
    response = jsonify(
        invented=result["invented"].tolist(),
        removed=result["removed"].tolist(),
        counts=result["counts"],
        original=url_for("parts.mesh", part_id=part_id, which="original"),
        repaired=url_for("parts.mesh", part_id=part_id, which="repaired"),
    )
    response.headers["Cache-Control"] = "private, no-cache"
    return response
