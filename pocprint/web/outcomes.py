"""After use: the requesting clinician's outcome form, complaints and incidents against a
device, and the post-market record found by lot, printer and profile."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlmodel import select

from pocprint.domain.roles import Permission
from pocprint.reads.auditor import DeviceFilter
from pocprint.reads.outcomes import complaints_of, latest_outcomes, post_market
from pocprint.services import outcomes as outcome_service
from pocprint.services.errors import Forbidden, Invalid
from pocprint.store.db import read_session
from pocprint.store.models import BuildJob, Case, utcnow
from pocprint.web.auth import actor, lab, requires

bp = Blueprint("outcomes", __name__)


def _device(serial: str) -> tuple[BuildJob, Case]:
    with read_session(lab().engine) as session:
        job = session.exec(select(BuildJob).where(BuildJob.serial == serial[:32])).first()
        if job is None:
            abort(404)
        return job, session.get(Case, job.case_id)


def _yes_no(name: str) -> bool | None:
    return {"yes": True, "no": False}.get(request.form.get(name, ""))


def _minutes(text: str) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise Invalid(
            "time saved must be whole minutes", fields={"time_saved_min": ["whole minutes"]}
        ) from exc


@bp.route("/devices/<serial>/outcome", methods=["GET", "POST"])
@requires(Permission.RECORD_CLINICAL_OUTCOME)
def outcome(serial: str):
    """Only the clinician who requested the case; only after the procedure date."""
    job, case = _device(serial)
    if not outcome_service.may_record_outcome(actor(), case):
        raise Forbidden("only the clinician who requested the case records its outcome")
    errors, status = {}, 200
    if request.method == "POST":
        try:
            outcome_service.record_outcome(
                lab(),
                actor(),
                serial,
                used_as_intended=_yes_no("used_as_intended"),
                plan_changed=_yes_no("plan_changed"),
                fit=request.form.get("fit", ""),
                time_saved_min=_minutes(request.form.get("time_saved_min", "")),
                comment=request.form.get("comment", ""),
            )
        except Invalid as exc:
            errors, status = exc.fields or {"form": [str(exc)]}, 422
        else:
            flash("Thank you: the outcome is recorded with the device.", "ok")
            return redirect(url_for("cases.detail", case_id=case.id), 303)
    with read_session(lab().engine) as session:
        previous = latest_outcomes(session, [job.id]).get(job.id)
    return render_template(
        "outcomes/form.html",
        job=job,
        case=case,
        due=outcome_service.outcome_due(case, job, utcnow().date()),
        previous=previous,
        fits=outcome_service.FITS,
        errors=errors,
        form=request.form,
    ), status


@bp.route("/devices/<serial>/complaints", methods=["GET", "POST"])
@requires(Permission.REPORT_COMPLAINT)
def complaint(serial: str):
    job, case = _device(serial)
    errors, status = {}, 200
    if request.method == "POST":
        try:
            outcome_service.report_complaint(
                lab(),
                actor(),
                serial,
                kind=request.form.get("kind", ""),
                description=request.form.get("description", ""),
                serious=request.form.get("serious") == "yes",
            )
        except Invalid as exc:
            errors, status = exc.fields or {"form": [str(exc)]}, 422
        else:
            flash("Recorded against the device (post-market record).", "ok")
            return redirect(url_for("outcomes.complaint", serial=serial), 303)
    with read_session(lab().engine) as session:
        listed = complaints_of(session, [job.id])[job.id]
    return render_template(
        "outcomes/complaint.html",
        job=job,
        case=case,
        complaints=listed,
        errors=errors,
        form=request.form,
        kinds=outcome_service.KINDS,
    ), status


@bp.route("/audit/post-market")
@requires(Permission.VIEW_AUDIT)
def post_market_page():
    """Complaints and incidents, found by the devices' lot, printer and profile."""
    f = DeviceFilter(
        lot=request.args.get("lot", "")[:20],
        printer=request.args.get("printer", "")[:64],
        profile=request.args.get("profile", "")[:100],
    )
    with read_session(lab().engine) as session:
        rows = post_market(session, f)
    return render_template("outcomes/post_market.html", rows=rows, f=f)
