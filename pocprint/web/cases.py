"""Case pages: list, new order, case detail with uploads, sign-offs and design approval."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from pocprint.domain.anatomy import LATERALITY, SIDE_LABELS, describe
from pocprint.domain.appropriateness import Band
from pocprint.domain.case_flow import STEPS
from pocprint.domain.cases import (
    FIELD_LABELS,
    MODALITIES,
    DeviceType,
    IntendedUse,
    RegulatoryRoute,
    order_warnings,
)
from pocprint.domain.roles import Permission, permissions_of
from pocprint.reads.cases import NEEDED_BY, case_detail, case_list
from pocprint.reads.clearance import clearance, reviews, signature_history
from pocprint.reads.history import case_forecast, order_forecasts
from pocprint.reads.outcomes import devices_awaiting_outcome
from pocprint.services import cases as case_service
from pocprint.services import outcomes as outcome_service
from pocprint.services import pacs
from pocprint.services import parts as part_service
from pocprint.services import review as review_service
from pocprint.services.anatomy import taxonomy
from pocprint.services.errors import AuthFailed, Invalid
from pocprint.store.db import read_session
from pocprint.store.models import Case, Part
from pocprint.web.auth import actor, lab, requires
from pocprint.web.order_form import (
    form_of,
    identifiers_from,
    imaging_from,
    lookup_form,
    order_and_problems,
)
from pocprint.web.parts import repair_page
from pocprint.web.uploads import received

bp = Blueprint("cases", __name__, url_prefix="/cases")


@bp.route("/")
@requires(Permission.VIEW)
def index():
    """Every case with where it really is; filters and search by case code or device serial."""
    args = request.args
    mine = args.get("mine") == "1"
    filters = {
        "step": args.get("step", ""),
        "needed_by": args.get("needed_by", ""),
        "device_type": args.get("device_type", ""),
        "query": args.get("q", "")[:64],
    }
    permissions = frozenset(p.value for p in permissions_of(actor().roles)) if mine else None
    with read_session(lab().engine) as session:
        rows = case_list(session, lab=lab(), permissions=permissions, **filters)
    return render_template(
        "cases/list.html",
        cases=rows,
        device_types=DeviceType,
        steps=STEPS,
        needed_by_choices=NEEDED_BY,
        filters=filters,
        mine=mine,
    )


def _form_context(form=None, errors=None) -> dict:
    from pocprint.domain.combinations import materials_for

    combos = lab().combinations
    return {
        "materials": {t.value: materials_for(combos, t.value) for t in DeviceType},
        "errors": errors or {},
        "device_types": DeviceType,
        "intended_uses": IntendedUse,
        "routes": RegulatoryRoute,
        "modalities": MODALITIES,
        "lateralities": LATERALITY,
        "side_labels": SIDE_LABELS,
        "taxonomy": taxonomy(lab().settings.anatomy_file),
        "stores_identifiers": bool(lab().settings.identifiers_key),
        "pacs": lab().hospital.pacs,
        "code_hint": lab().settings.patient_code_hint,
        "form": form or {},
        "lead_times": _lead_times(),
    }


def _lead_times() -> list[dict]:
    """The ready time each device type would have if ordered now (before the order is placed)."""
    with read_session(lab().engine) as session:
        found = order_forecasts(session, [t.value for t in DeviceType], lab())
    return [{"type": t, **found[t.value]} for t in DeviceType]


def _save_order(save, editing: int | None = None):
    """Read the order form and save it; on any problem the form comes back with everything
    typed kept and every problem beside its field, all at once (nothing is written)."""
    order, problems = order_and_problems(request.form)
    if not problems:
        try:
            return save(order), None
        except Invalid as exc:
            problems = exc.fields or {"form": [str(exc)]}
    else:  # unreadable fields: still report the problems of all the others
        problems = {**case_service.order_problems_by_field(lab(), order), **problems}
    context = _form_context(request.form, problems)
    return None, (render_template("cases/new.html", **context, editing=editing), 422)


def _lookup():
    """Look the study up in the PACS and show the form again, filled, with the source; a
    failure is said beside the accession number and everything typed is kept."""
    try:
        found = pacs.lookup_study(
            lab(),
            actor(),
            accession=request.form.get("accession_number", ""),
            study_uid=request.form.get("study_instance_uid_lookup", ""),
        )
    except (pacs.PacsUnavailable, Invalid) as exc:
        errors = {"accession_number": [str(exc)]}
        return render_template("cases/new.html", **_form_context(request.form, errors)), 422
    return render_template("cases/new.html", **_form_context(lookup_form(request.form, found)))


@bp.route("/new", methods=["GET", "POST"])
@requires(Permission.CREATE_CASE)
def new():
    if request.method == "POST" and request.form.get("action") == "lookup":
        return _lookup()
    if request.method == "POST":
        case_id, failed = _save_order(
            lambda order: case_service.create_case(
                lab(),
                actor(),
                patient_identifiers=identifiers_from(request.form),
                imaging=imaging_from(request.form),
                **order,
            )
        )
        if failed:
            return failed
        flash("Case created. It now waits for the radiologist's review; upload the mesh.", "ok")
        return redirect(url_for("cases.detail", case_id=case_id), 303)
    return render_template("cases/new.html", **_form_context())


@bp.route("/<int:case_id>/edit", methods=["GET", "POST"])
@requires(Permission.CREATE_CASE)
def edit(case_id: int):
    """Answer a request for more information, or correct the order. A change to what the
    radiologist reviewed sends the case back to review."""
    if request.method == "POST":

        def save(order: dict):
            # The accession number is kept encrypted and never shown in the form: left
            # empty it stays as it is; a new one replaces it.
            if not order.get("accession_number"):
                order.pop("accession_number", None)
            return case_service.update_case(lab(), actor(), case_id, **order)

        changed, failed = _save_order(save, case_id)
        if failed:
            return failed
        names = ", ".join(FIELD_LABELS.get(c, c) for c in changed) or "no change"
        flash(f"Order updated ({names}).", "ok")
        return redirect(url_for("cases.detail", case_id=case_id), 303)
    with read_session(lab().engine) as session:
        case = session.get(Case, case_id)
        if case is None:
            abort(404)
        form = form_of(case)
        has_accession = bool(case.accession_hmac)
    return render_template(
        "cases/new.html", **_form_context(form), editing=case_id, has_accession=has_accession
    )


@bp.route("/<int:case_id>")
@requires(Permission.VIEW)
def detail(case_id: int):
    return _detail_page(case_id)


def _detail_page(case_id: int, signing_form: dict | None = None, status: int = 200):
    """The case page; `signing_form` re-shows a signature form after a refusal (wrong
    password) with what was typed and the reason, instead of losing it in a redirect."""
    with read_session(lab().engine) as session:
        data = case_detail(session, case_id, lab())
        if data is None:
            abort(404)
        steps = clearance(session, case_id)
        history = {
            p["part"].id: signature_history(session, "part", p["part"].id) for p in data["parts"]
        }
        case_signatures = signature_history(session, "case", case_id)
        past_reviews = reviews(session, case_id)
        lead = case_forecast(session, data["case"], lab())
        mine = outcome_service.may_record_outcome(actor(), data["case"])
        outcomes_due = devices_awaiting_outcome(session, data["case"]) if mine else []
    return render_template(
        "cases/detail.html",
        **data,
        device_types=DeviceType,
        bands=Band,
        steps=steps,
        history=history,
        case_signatures=case_signatures,
        reviews=past_reviews,
        warnings=order_warnings(data["case"].__dict__),
        describe=describe,
        signing_form=signing_form or {},
        lead=lead,
        outcomes_due=outcomes_due,
    ), status


def _case_of(part_id: int) -> int:
    with read_session(lab().engine) as session:
        part = session.get(Part, part_id)
        if part is None:
            abort(404)
        return part.case_id


@bp.route("/<int:case_id>/identifiers", methods=["POST"])
@requires(Permission.VIEW_IDENTIFIERS)
def identifiers(case_id: int):
    """Shown once per request, never in a URL; each reading is audited."""
    values = case_service.read_identifiers(lab(), actor(), case_id)
    return render_template("cases/identifiers.html", case_id=case_id, identifiers=values)


@bp.route("/parts/<int:part_id>/segmentation", methods=["POST"])
@requires(Permission.SIGN_SEGMENTATION)
def sign_segmentation(part_id: int):
    overlay = request.files.get("overlay")
    password, comment = request.form.get("password", ""), request.form.get("comment", "")
    try:
        if overlay is not None and overlay.filename:
            with received(overlay, lab().settings.work_dir) as path:
                review_service.sign_segmentation(lab(), actor(), part_id, password, path, comment)
        else:
            review_service.sign_segmentation(lab(), actor(), part_id, password, None, comment)
    except (AuthFailed, Invalid) as exc:
        typed = {"part_id": str(part_id), "form": "signoff", "comment": comment, "error": str(exc)}
        return _detail_page(_case_of(part_id), typed, 422)
    flash("Segmentation signed: the model matches the images.", "ok")
    return redirect(url_for("cases.detail", case_id=_case_of(part_id), _anchor="flow"), 303)


@bp.route("/signatures/<int:signature_id>/withdraw", methods=["POST"])
@requires(  # the service narrows it to the permission matching the signature's meaning
    Permission.REVIEW_APPROPRIATENESS, Permission.SIGN_SEGMENTATION, Permission.APPROVE_DESIGN
)
def withdraw(signature_id: int):
    review_service.withdraw_signoff(
        lab(),
        actor(),
        signature_id,
        request.form.get("password", ""),
        request.form.get("reason", ""),
    )
    flash("Signature withdrawn. The case is back at that step.", "ok")
    return redirect(request.referrer or url_for("cases.index"), 303)


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
    comment = request.form.get("comment", "")
    try:
        case_service.approve_design(
            lab(), actor(), part_id, request.form.get("password", ""), comment
        )
    except AuthFailed as exc:  # the comment is kept; the form says why
        typed = {"part_id": str(part_id), "form": "approve", "comment": comment, "error": str(exc)}
        if request.form.get("page") == "repair":
            return repair_page(part_id, typed, 422)
        return _detail_page(_case_of(part_id), typed, 422)
    flash("Design approved and signed. The job is queued for slicing.", "ok")
    case_id = _case_of(part_id)
    return redirect(url_for("cases.detail", case_id=case_id, _anchor="flow"), 303)


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
