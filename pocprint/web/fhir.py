"""FHIR entry points of the JSON API: an order arrives as a FHIR R4 ServiceRequest and becomes a
case through the same service as the order form; its progress is read back as a Task.

Same authentication and role checks as the rest of /api/v1 (CREATE_CASE to order, VIEW to
read). Every problem comes back at once as an OperationOutcome; nothing is stored on error.
"""

from __future__ import annotations

from flask import g, jsonify, request, url_for
from sqlmodel import select

from pocprint.domain.roles import Permission
from pocprint.hospital import fhir
from pocprint.reads.case_flow import case_position
from pocprint.services import cases as case_service
from pocprint.services.errors import ServiceError
from pocprint.store.db import read_session
from pocprint.store.models import BuildJob, Case, utcnow
from pocprint.web.api import bp, needs
from pocprint.web.auth import lab

FHIR_JSON = "application/fhir+json"


def _answer(body: dict, status: int, **headers):
    response = jsonify(body)
    response.status_code = status
    response.mimetype = FHIR_JSON
    response.headers.update(headers)
    return response


def _refusal(kind: str, message: str, status: int, code: str | None = None):
    """The API's sign-in and role refusals, as an OperationOutcome (web/api.py calls this)."""
    issue_code = {401: "login", 403: "forbidden"}.get(status, "security")
    return _answer(fhir.outcome([fhir.Issue("ServiceRequest", message, issue_code)]), status)


FHIR_RESOURCE = {
    "type": "object",
    "properties": {"resourceType": {"type": "string"}},
    "required": ["resourceType"],
}


def fhir_operation(*permissions: Permission, answers: dict[int, str]):
    """A FHIR operation: who may call it, its answers documented as FHIR resources (in the
    OpenAPI document, so clients and the API fuzzer know them), refusals in FHIR's shape."""

    def mark(view):
        for status, description in answers.items():
            view = bp.alt_response(
                status,
                schema=FHIR_RESOURCE,
                content_type=FHIR_JSON,
                description=description,
                success=status < 300,
            )(view)
        view = needs(*permissions)(view)
        view.refusal = _refusal
        return view

    return mark


REFUSALS = {
    401: "OperationOutcome: not signed in, or the token is invalid, expired or revoked",
    403: "OperationOutcome: the caller's roles may not do this",
}


def _problem(exc: ServiceError) -> tuple[dict, int]:
    code = {401: "login", 403: "forbidden", 404: "not-found", 409: "duplicate"}.get(
        exc.http_status, "invalid"
    )
    return fhir.outcome([fhir.Issue("ServiceRequest", str(exc), code)]), exc.http_status


def _field_issues(fields: dict[str, list[str]]) -> list[fhir.Issue]:
    return [
        fhir.Issue(fhir.FIELD_PATHS.get(name, "ServiceRequest"), message, "business-rule")
        for name, messages in fields.items()
        for message in messages
    ]


@bp.route("/fhir/ServiceRequest", methods=["POST"])
@fhir_operation(
    Permission.CREATE_CASE,
    answers={
        201: "Task: the new case",
        **REFUSALS,
        409: "OperationOutcome: this hospital order already opened a case",
        422: "OperationOutcome: every problem with the ServiceRequest; nothing stored",
    },
)
def fhir_service_request():
    """Receive an order as a FHIR R4 ServiceRequest; answers the new case as a Task."""
    links = lab().hospital
    parsed = fhir.read_service_request(
        request.get_json(silent=True, force=True),
        links.patient_code_system,
        keep_identity=bool(lab().settings.identifiers_key),
    )
    issues = list(parsed.issues)
    if parsed.order:
        covered = {i.path for i in issues if i.code == "required"}
        for issue in _field_issues(case_service.order_problems_by_field(lab(), parsed.order)):
            if issue.path not in covered:  # a missing field is said once, where it is missing
                issues.append(issue)
    if issues:
        return _answer(fhir.outcome(issues), 422)
    try:
        case_id = case_service.create_case(
            lab(),
            g.actor,
            patient_identifiers=parsed.identifiers,
            imaging=parsed.imaging,
            order_reference=parsed.reference,
            **parsed.order,
        )
    except ServiceError as exc:
        fields = getattr(exc, "fields", None)
        if fields:
            return _answer(fhir.outcome(_field_issues(fields)), 422)
        return _answer(*_problem(exc))
    with read_session(lab().engine) as session:
        code = session.get(Case, case_id).code
    body, status = _task(code)
    return _answer(body, 201, Location=url_for("api.fhir_task", case_code=code))


def _task(case_code: str) -> tuple[dict, int]:
    with read_session(lab().engine) as session:
        case = session.exec(select(Case).where(Case.code == case_code)).first()
        if case is None:
            issue = fhir.Issue("Task", f"no case {case_code}", "not-found")
            return fhir.outcome([issue]), 404
        position = case_position(session, case, lab())
        serials = session.exec(
            select(BuildJob.serial).where(BuildJob.case_id == case.id).order_by(BuildJob.id)
        ).all()
        facts = {
            "code": case.code,
            "patient_code": case.patient_code,
            "review_status": case.review_status,
            "created_at": case.created_at.isoformat(),
            "order_reference": case.order_reference,
        }
    where = {
        "status": position.status,
        "step": position.step,
        "label": position.label,
        "summary": position.summary,
    }
    body = fhir.task(
        facts,
        where,
        [{"serial": s} for s in serials],
        lab().hospital.patient_code_system,
        utcnow(),
    )
    return body, 200


@bp.route("/fhir/Task/<case_code>", methods=["GET"])
@fhir_operation(
    Permission.VIEW,
    answers={200: "Task: the case's progress", **REFUSALS, 404: "OperationOutcome: no such case"},
)
def fhir_task(case_code: str):
    """A case's progress as a FHIR Task (status, the step in words, devices built)."""
    return _answer(*_task(case_code))
