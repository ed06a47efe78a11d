"""JSON API (v1) for the same actions as the pages, documented at /api/openapi.json.

Authentication: a bearer token (`pocprint users token NAME`), or the browser session, in
which case state-changing calls need the CSRF token in the `X-CSRFToken` header.
"""

from __future__ import annotations

from flask import abort, g, jsonify, request
from flask_login import current_user
from flask_smorest import Api, Blueprint
from sqlmodel import select

from pocprint.domain.roles import Permission
from pocprint.reads import board as board_reads
from pocprint.reads.cases import case_list
from pocprint.reads.records import device_record
from pocprint.services import cases as case_service
from pocprint.services import dispatch, jobs
from pocprint.services import parts as part_service
from pocprint.services.users import actor_from_token
from pocprint.store.db import read_session
from pocprint.store.models import BuildJob, Case, Part
from pocprint.web import api_schemas as s
from pocprint.web.auth import lab
from pocprint.web.uploads import received

bp = Blueprint("api", __name__, url_prefix="/api/v1", description="Lab workflow")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def init_api(app, csrf) -> None:
    api = Api(app, spec_kwargs={"security": [{"bearer": []}]})
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    csrf.exempt(bp)  # checked below, only for cookie sessions (a bearer token is not ambient)
    api.register_blueprint(bp)


@bp.before_request
def _authenticate():
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        actor = actor_from_token(lab(), header[7:].strip())
        if actor is None:
            return jsonify({"error": "AuthFailed", "message": "invalid or revoked token"}), 401
        g.actor = actor
    elif current_user.is_authenticated:
        if request.method not in SAFE_METHODS:
            from pocprint.web import csrf

            csrf.protect()
        g.actor = current_user.actor
    else:
        return jsonify({"error": "AuthFailed", "message": "sign in or send a bearer token"}), 401
    if request.method in SAFE_METHODS:
        g.actor.require(Permission.VIEW)
    return None


def _get(session, model, row_id):
    row = session.get(model, row_id)
    if row is None:
        abort(404)
    return row


@bp.get("/cases")
@bp.response(200, s.CaseOut(many=True))
def list_cases():
    """Cases, most urgent first."""
    with read_session(lab().engine) as session:
        return case_list(session)


@bp.post("/cases")
@bp.arguments(s.CaseIn)
@bp.response(201, s.CaseOut)
def create_case(body):
    """Open an order for a patient model or guide (pseudonymous patient code only)."""
    case_id = case_service.create_case(lab(), g.actor, **body)
    with read_session(lab().engine) as session:
        return _get(session, Case, case_id)


@bp.get("/cases/<int:case_id>")
@bp.response(200, s.CaseDetailOut)
def get_case(case_id: int):
    with read_session(lab().engine) as session:
        case = _get(session, Case, case_id)
        out = s.CaseOut().dump(case)
        out["parts"] = session.exec(select(Part).where(Part.case_id == case_id)).all()
        out["jobs"] = session.exec(select(BuildJob).where(BuildJob.case_id == case_id)).all()
        return out


@bp.post("/cases/<int:case_id>/parts")
@bp.arguments(s.MeshUpload, location="files")
@bp.response(201, s.PartOut)
def upload_part(files, case_id: int):
    """Upload a mesh (STL, OBJ, PLY or 3MF); it is validated, stored and queued for repair.

    One upload per anatomical part (e.g. "bone", "tumour"); `label` names it.
    """
    mesh = request.files.get("mesh")
    with received(mesh, lab().settings.work_dir) as path:
        part_id = case_service.upload_part(
            lab(), g.actor, case_id, mesh.filename, path, request.form.get("label", "")
        )
    with read_session(lab().engine) as session:
        return _get(session, Part, part_id)


@bp.get("/parts/<int:part_id>")
@bp.response(200, s.PartOut)
def get_part(part_id: int):
    with read_session(lab().engine) as session:
        return _get(session, Part, part_id)


@bp.post("/parts/<int:part_id>/approval")
@bp.arguments(s.ApprovalIn)
@bp.response(201, s.ApprovalOut)
def approve_part(body, part_id: int):
    """Sign the repaired mesh as the design to print (the signer re-enters the password)."""
    job_id = case_service.approve_design(lab(), g.actor, part_id, body["password"], body["comment"])
    with read_session(lab().engine) as session:
        job = _get(session, BuildJob, job_id)
        return {"job_id": job.id, "serial": job.serial}


@bp.post("/parts/<int:part_id>/units")
@bp.arguments(s.UnitsIn)
@bp.response(204)
def confirm_units(body, part_id: int):
    """State the unit of a file whose unit was not clear-cut; analysis and repair resume."""
    part_service.confirm_units(lab(), g.actor, part_id, body["units"])


@bp.post("/parts/<int:part_id>/acceptance")
@bp.arguments(s.ReasonIn)
@bp.response(204)
def accept_repair(body, part_id: int):
    """Accept a repair that needs attention, with the reason (recorded and attributed)."""
    part_service.accept_repair(lab(), g.actor, part_id, body["reason"])


@bp.get("/queue")
@bp.response(200, s.QueueItemOut(many=True))
def get_queue():
    """Jobs waiting for slicing or a printer, earliest needed-by date first."""
    with read_session(lab().engine) as session:
        return board_reads.queue(session)


@bp.get("/printers")
@bp.response(200, s.PrinterOut(many=True))
def list_printers():
    with read_session(lab().engine) as session:
        return board_reads.printers(session)


@bp.post("/printers/<int:printer_id>/plate-clear")
@bp.response(204)
def plate_clear(printer_id: int):
    """A technician confirms the build plate is empty; the next matching job may start."""
    dispatch.confirm_plate_clear(lab(), g.actor, printer_id)


@bp.get("/jobs/<int:job_id>")
@bp.response(200, s.JobOut)
def get_job(job_id: int):
    with read_session(lab().engine) as session:
        return _get(session, BuildJob, job_id)


@bp.post("/jobs/<int:job_id>/cancel")
@bp.arguments(s.ReasonIn)
@bp.response(204)
def cancel_job(body, job_id: int):
    jobs.cancel_job(lab(), g.actor, job_id, body["reason"])


@bp.post("/jobs/<int:job_id>/resolve")
@bp.arguments(s.ResolveIn)
@bp.response(204)
def resolve_job(body, job_id: int):
    """Decide what happened to an interrupted print."""
    jobs.resolve_interrupted(lab(), g.actor, job_id, body["resolution"], body["reason"])


@bp.post("/jobs/<int:job_id>/outcome")
@bp.arguments(s.OutcomeIn)
@bp.response(204)
def record_outcome(body, job_id: int):
    """Record the build outcome (accepted, or rejected with a note)."""
    jobs.record_outcome(lab(), g.actor, job_id, body["outcome"], body["note"])


@bp.get("/devices/<serial>")
@bp.response(200)
def get_device(serial: str):
    """The device record: files and hashes, approval, slicing, printer, print and every event."""
    with read_session(lab().engine) as session:
        record = device_record(session, serial)
    if record is None:
        abort(404)
    return record
