"""JSON API (v1) for the same actions as the pages, documented at /api/openapi.json.

Authentication: a bearer token (`pocprint tokens create USER --name NAME`), or the browser
session, in which case state-changing calls need the CSRF token in the `X-CSRFToken` header.
Each operation declares the permissions that may call it (`needs`); they are checked before
the body is read, and the service checks its own again.
"""

from __future__ import annotations

from flask import abort, current_app, g, request, send_file
from flask_login import current_user
from flask_smorest import Api, Blueprint
from sqlmodel import select

from pocprint.domain.roles import Permission, may
from pocprint.reads import board as board_reads
from pocprint.reads.cases import case_list
from pocprint.reads.clearance import clearance
from pocprint.reads.records import device_record
from pocprint.services import cases as case_service
from pocprint.services import catalog, dispatch, jobs, manual_printing, review
from pocprint.services import parts as part_service
from pocprint.services.tokens import actor_from_token
from pocprint.store.db import read_session
from pocprint.store.models import BuildJob, Case, JobSlice, Part
from pocprint.web import api_schemas as s
from pocprint.web.auth import lab
from pocprint.web.errors import ErrorOut, error_json, http_error
from pocprint.web.uploads import received

bp = Blueprint("api", __name__, url_prefix="/api/v1", description="Lab workflow")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class PocprintApi(Api):
    """flask-smorest with pocprint's one error shape, in the answers and in the document."""

    ERROR_SCHEMA = ErrorOut

    def handle_http_exception(self, error):
        return http_error(error)


def needs(*permissions: Permission):
    """Declare who may call an operation (any of `permissions`); `_authenticate` checks it."""

    def mark(view):
        view.required_permissions = frozenset(permissions)
        return view

    return mark


def init_api(app, csrf) -> None:
    api = PocprintApi(app, spec_kwargs={"security": [{"bearer": []}]})
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    csrf.exempt(bp)  # checked below, only for cookie sessions (a bearer token is not ambient)
    api.register_blueprint(bp)
    from pocprint.web.api_audit import bp as audit_bp

    csrf.exempt(audit_bp)
    api.register_blueprint(audit_bp)


def authenticate_request():
    """Before every API operation: who is calling, and may they call this operation."""
    view = current_app.view_functions.get(request.endpoint)
    # An operation of another standard (FHIR) answers refusals in that standard's own shape.
    refuse = getattr(view, "refusal", None) or error_json
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        actor = actor_from_token(lab(), header[7:].strip())
        if actor is None:
            return refuse("AuthFailed", "invalid, expired or revoked token", 401, "bad_token")
        g.actor = actor
    elif current_user.is_authenticated:
        if request.method not in SAFE_METHODS:
            from pocprint.web import csrf

            csrf.protect()
        g.actor = current_user.actor
    else:
        return refuse("AuthFailed", "sign in or send a bearer token", 401, "no_credentials")
    allowed = getattr(view, "required_permissions", None)
    if not allowed or not any(may(g.actor.roles, p) for p in allowed):
        what = " or ".join(sorted(p.value.replace("_", " ") for p in allowed or ()))
        return refuse("Forbidden", f"{g.actor.username} may not {what or 'call this'}", 403)
    return None


bp.before_request(authenticate_request)


def _get(session, model, row_id):
    row = session.get(model, row_id)
    if row is None:
        abort(404)
    return row


@bp.get("/cases")
@bp.response(200, s.CaseOut(many=True))
@needs(Permission.VIEW)
def list_cases():
    """Cases, most urgent first."""
    with read_session(lab().engine) as session:
        return case_list(session, lab=lab())


@bp.post("/cases")
@bp.arguments(s.CaseIn)
@bp.response(201, s.CaseOut)
@needs(Permission.CREATE_CASE)
def create_case(body):
    """Open an order for a patient model or guide (pseudonymous patient code only)."""
    case_id = case_service.create_case(lab(), g.actor, **body)
    with read_session(lab().engine) as session:
        return _get(session, Case, case_id)


@bp.get("/cases/<int:case_id>")
@bp.response(200, s.CaseDetailOut)
@needs(Permission.VIEW)
def get_case(case_id: int):
    """The order with its parts and build jobs (dumped once, by the response schema)."""
    with read_session(lab().engine) as session:
        case = _get(session, Case, case_id)
        return {
            **case.model_dump(),
            "parts": session.exec(select(Part).where(Part.case_id == case_id)).all(),
            "jobs": session.exec(select(BuildJob).where(BuildJob.case_id == case_id)).all(),
        }


@bp.patch("/cases/<int:case_id>")
@bp.arguments(s.CaseChange)
@bp.response(200, s.CaseOut)
@needs(Permission.CREATE_CASE)
def update_case(body, case_id: int):
    """Change an order (e.g. to answer the reviewer's question). A change to what was
    reviewed voids the review signature and sends the case back to review."""
    case_service.update_case(lab(), g.actor, case_id, **body)
    with read_session(lab().engine) as session:
        return _get(session, Case, case_id)


@bp.post("/cases/<int:case_id>/parts")
@bp.arguments(s.MeshUpload, location="files")
@bp.response(201, s.PartOut)
@needs(Permission.UPLOAD_MESH)
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
@needs(Permission.VIEW)
def get_part(part_id: int):
    with read_session(lab().engine) as session:
        return _get(session, Part, part_id)


@bp.post("/parts/<int:part_id>/approval")
@bp.arguments(s.ApprovalIn)
@bp.response(201, s.ApprovalOut)
@needs(Permission.APPROVE_DESIGN)
def approve_part(body, part_id: int):
    """Sign the repaired mesh as the design to print (the signer re-enters the password)."""
    job_id = case_service.approve_design(lab(), g.actor, part_id, body["password"], body["comment"])
    with read_session(lab().engine) as session:
        job = _get(session, BuildJob, job_id)
        return {"job_id": job.id, "serial": job.serial}


@bp.get("/catalog")
@bp.response(200, s.ScenarioOut(many=True))
@needs(Permission.VIEW)
def list_scenarios():
    """Active appropriateness scenarios; `key` is what a review names."""
    with read_session(lab().engine) as session:
        return [
            {**catalog.row_dict(r), "key": f"{r.scenario_id}@{r.catalog_version}"}
            for r in catalog.scenarios(session)
        ]


@bp.post("/cases/<int:case_id>/review")
@bp.arguments(s.ReviewIn)
@bp.response(201, s.IdOut)
@needs(Permission.REVIEW_APPROPRIATENESS)
def review_case(body, case_id: int):
    """Appropriateness review: approve or reject (signed: password), or ask for more
    information. Approving a scenario rated 6 or lower, or no catalog match, needs a
    justification."""
    return {"id": review.review_case(lab(), g.actor, case_id, **body)}


@bp.post("/parts/<int:part_id>/segmentation")
@bp.arguments(s.SignIn)
@bp.response(201, s.IdOut)
@needs(Permission.SIGN_SEGMENTATION)
def sign_segmentation(body, part_id: int):
    """Segmentation sign-off: the mesh matches the images (signed: password)."""
    signature_id = review.sign_segmentation(
        lab(), g.actor, part_id, body["password"], comment=body["comment"]
    )
    return {"id": signature_id}


@bp.post("/signatures/<int:signature_id>/withdrawal")
@bp.arguments(s.WithdrawIn)
@bp.response(201, s.IdOut)
@needs(Permission.REVIEW_APPROPRIATENESS, Permission.SIGN_SEGMENTATION, Permission.APPROVE_DESIGN)
def withdraw_signature(body, signature_id: int):
    """Withdraw a gate signature with a new signed record; the case returns to that step."""
    withdrawal = review.withdraw_signoff(
        lab(), g.actor, signature_id, body["password"], body["reason"]
    )
    return {"id": withdrawal}


@bp.get("/cases/<int:case_id>/clearance")
@bp.response(200, s.StepOut(many=True))
@needs(Permission.VIEW)
def case_clearance(case_id: int):
    """Each gate step of the case and its parts: valid, missing, void, withdrawn..."""
    with read_session(lab().engine) as session:
        steps = clearance(session, case_id)
    if steps is None:
        abort(404)
    return steps


@bp.post("/parts/<int:part_id>/units")
@bp.arguments(s.UnitsIn)
@bp.response(204)
@needs(Permission.CONFIRM_UNITS)
def confirm_units(body, part_id: int):
    """State the unit of a file whose unit was not clear-cut; analysis and repair resume."""
    part_service.confirm_units(lab(), g.actor, part_id, body["units"])


@bp.post("/parts/<int:part_id>/acceptance")
@bp.arguments(s.ReasonIn)
@bp.response(204)
@needs(Permission.ACCEPT_REPAIR)
def accept_repair(body, part_id: int):
    """Accept a repair that needs attention, with the reason (recorded and attributed)."""
    part_service.accept_repair(lab(), g.actor, part_id, body["reason"])


@bp.get("/queue")
@bp.response(200, s.QueueItemOut(many=True))
@needs(Permission.VIEW)
def get_queue():
    """Jobs waiting for slicing or a printer, earliest needed-by date first."""
    with read_session(lab().engine) as session:
        return board_reads.queue(session, lab=lab())


@bp.get("/printers")
@bp.response(200, s.PrinterOut(many=True))
@needs(Permission.VIEW)
def list_printers():
    with read_session(lab().engine) as session:
        return board_reads.printers(session, lab())


@bp.post("/printers/<int:printer_id>/plate-clear")
@bp.response(204)
@needs(Permission.OPERATE_PRINTERS)
def plate_clear(printer_id: int):
    """A technician confirms the build plate is empty; the next matching job may start."""
    dispatch.confirm_plate_clear(lab(), g.actor, printer_id)


@bp.get("/jobs/<int:job_id>")
@bp.response(200, s.JobOut)
@needs(Permission.VIEW)
def get_job(job_id: int):
    with read_session(lab().engine) as session:
        return _get(session, BuildJob, job_id)


@bp.post("/jobs/<int:job_id>/cancel")
@bp.arguments(s.ReasonIn)
@bp.response(204)
@needs(Permission.OPERATE_PRINTERS)
def cancel_job(body, job_id: int):
    jobs.cancel_job(lab(), g.actor, job_id, body["reason"])


@bp.get("/jobs/<int:job_id>/slices")
@bp.response(200, s.SliceOut(many=True))
@needs(Permission.VIEW)
def job_slices(job_id: int):
    """The job's G-code for each validated profile it fits (the dispatcher sends one)."""
    with read_session(lab().engine) as session:
        _get(session, BuildJob, job_id)
        return session.exec(
            select(JobSlice).where(JobSlice.job_id == job_id).order_by(JobSlice.id)
        ).all()


@bp.post("/jobs/<int:job_id>/pause")
@bp.arguments(s.ReasonIn)
@bp.response(204)
@needs(Permission.OPERATE_PRINTERS)
def pause_job(body, job_id: int):
    """Pause a running print (OctoPrint job command, or recorded for a manual printer)."""
    jobs.pause_job(lab(), g.actor, job_id, body["reason"])


@bp.post("/jobs/<int:job_id>/resume")
@bp.arguments(s.ReasonIn)
@bp.response(204)
@needs(Permission.OPERATE_PRINTERS)
def resume_job(body, job_id: int):
    jobs.resume_job(lab(), g.actor, job_id, body["reason"])


@bp.post("/jobs/<int:job_id>/urgent")
@bp.arguments(s.UrgentIn)
@bp.response(204)
@needs(Permission.PRIORITISE_JOBS)
def set_urgent(body, job_id: int):
    """Urgent override of the needed-by order (or its removal), with the reason."""
    jobs.set_urgent(lab(), g.actor, job_id, body["urgent"], body["reason"])


@bp.post("/jobs/<int:job_id>/orientation")
@bp.arguments(s.OrientationIn)
@bp.response(204)
@needs(Permission.OPERATE_PRINTERS)
def set_orientation(body, job_id: int):
    """Lay the part on a stable face, or keep it as designed; the job is sliced again."""
    jobs.set_orientation(lab(), g.actor, job_id, body["orientation"], body["reason"])


@bp.post("/jobs/<int:job_id>/gcode")
@bp.response(200, content_type="text/x-gcode")
@needs(Permission.OPERATE_PRINTERS)
def manual_gcode(job_id: int):
    """The verified G-code of a job reserved for a manual printer. A POST: the download is
    recorded (who, when, the SHA-256 checked), so it is a change, never a GET."""
    path, name = manual_printing.gcode_for_download(lab(), g.actor, job_id)
    return send_file(path, mimetype="text/x-gcode", as_attachment=True, download_name=name)


@bp.post("/jobs/<int:job_id>/manual-start")
@bp.arguments(s.ManualStartIn)
@bp.response(204)
@needs(Permission.OPERATE_PRINTERS)
def manual_start(body, job_id: int):
    """The technician started the downloaded, hash-checked G-code at a manual printer and
    confirms it (`confirm_file`): the record says so, not that the printer verified it."""
    manual_printing.confirm_start(
        lab(), g.actor, job_id, body["note"], confirmed_file=body["confirm_file"]
    )


@bp.post("/jobs/<int:job_id>/manual-end")
@bp.arguments(s.ManualEndIn)
@bp.response(204)
@needs(Permission.OPERATE_PRINTERS)
def manual_end(body, job_id: int):
    """The print on a manual printer ended: printed, or failed with a note."""
    manual_printing.confirm_end(lab(), g.actor, job_id, body["result"], body["note"])


@bp.post("/jobs/<int:job_id>/resolve")
@bp.arguments(s.ResolveIn)
@bp.response(204)
@needs(Permission.OPERATE_PRINTERS)
def resolve_job(body, job_id: int):
    """Decide what happened to an interrupted print."""
    jobs.resolve_interrupted(lab(), g.actor, job_id, body["resolution"], body["reason"])


@bp.post("/jobs/<int:job_id>/outcome")
@bp.arguments(s.OutcomeIn)
@bp.response(204)
@needs(Permission.RECORD_OUTCOME)
def record_outcome(body, job_id: int):
    """Record the build outcome (accepted, or rejected with a note)."""
    jobs.record_outcome(lab(), g.actor, job_id, body["outcome"], body["note"])


@bp.get("/devices/<serial>")
@bp.response(200)
@needs(Permission.VIEW)
def get_device(serial: str):
    """The device record: files and hashes, approval, slicing, printer, print and every event."""
    with read_session(lab().engine) as session:
        record = device_record(session, serial)
    if record is None:
        abort(404)
    return record
