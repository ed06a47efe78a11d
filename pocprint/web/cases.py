"""Case pages: list, new order, case detail with uploads and design approval."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from pocprint.domain.cases import DeviceType
from pocprint.domain.roles import Permission
from pocprint.reads.cases import case_detail, case_list
from pocprint.services import cases as case_service
from pocprint.services import parts as part_service
from pocprint.services.errors import Invalid
from pocprint.store.db import read_session
from pocprint.web.auth import actor, lab, requires
from pocprint.web.uploads import received

bp = Blueprint("cases", __name__, url_prefix="/cases")


def parse_date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise Invalid(f"not a date: {text!r} (use YYYY-MM-DD)") from exc


@bp.route("/")
@requires(Permission.VIEW)
def index():
    with read_session(lab().engine) as session:
        rows = case_list(session)
    return render_template("cases/list.html", cases=rows, device_types=DeviceType)


@bp.route("/new", methods=["GET", "POST"])
@requires(Permission.CREATE_CASE)
def new():
    if request.method == "POST":
        form = request.form
        case_id = case_service.create_case(
            lab(),
            actor(),
            patient_code=form.get("patient_code", ""),
            indication=form.get("indication", ""),
            device_type=form.get("device_type", ""),
            needed_by=parse_date(form.get("needed_by")),
        )
        flash("Case created. Upload the mesh next.", "ok")
        return redirect(url_for("cases.detail", case_id=case_id), 303)
    return render_template("cases/new.html", device_types=DeviceType)


@bp.route("/<int:case_id>")
@requires(Permission.VIEW)
def detail(case_id: int):
    with read_session(lab().engine) as session:
        data = case_detail(session, case_id)
    if data is None:
        abort(404)
    return render_template("cases/detail.html", **data, device_types=DeviceType)


@bp.route("/<int:case_id>/parts", methods=["POST"])
@requires(Permission.UPLOAD_MESH)
def upload(case_id: int):
    with received(request.files.get("mesh"), lab().settings.work_dir) as path:
        case_service.upload_part(
            lab(),
            actor(),
            case_id,
            request.files["mesh"].filename,
            path,
            request.form.get("label", ""),
        )
    flash("Mesh stored. Analysis and repair are running.", "ok")
    return redirect(url_for("cases.detail", case_id=case_id), 303)


@bp.route("/parts/<int:part_id>/approve", methods=["POST"])
@requires(Permission.APPROVE_DESIGN)
def approve(part_id: int):
    case_service.approve_design(
        lab(), actor(), part_id, request.form.get("password", ""), request.form.get("comment", "")
    )
    flash("Design approved and signed. The job is queued for slicing.", "ok")
    return redirect(request.referrer or url_for("board.index"), 303)


@bp.route("/parts/<int:part_id>/units", methods=["POST"])
@requires(Permission.CONFIRM_UNITS)
def confirm_units(part_id: int):
    part_service.confirm_units(lab(), actor(), part_id, request.form.get("units", ""))
    flash("Unit confirmed. Analysis and repair are running.", "ok")
    return redirect(request.referrer or url_for("board.index"), 303)


@bp.route("/parts/<int:part_id>/accept", methods=["POST"])
@requires(Permission.ACCEPT_REPAIR)
def accept_repair(part_id: int):
    part_service.accept_repair(lab(), actor(), part_id, request.form.get("reason", ""))
    flash("Repair accepted with your reason. It can now be approved.", "ok")
    return redirect(request.referrer or url_for("board.index"), 303)
