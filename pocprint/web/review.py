"""The radiologist's appropriateness review and the lab's appropriateness catalog."""

from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for

from pocprint.domain.anatomy import describe
from pocprint.domain.appropriateness import COLUMNS, Band, rank_scenarios
from pocprint.domain.cases import order_warnings
from pocprint.domain.roles import Permission
from pocprint.services import catalog
from pocprint.services import review as review_service
from pocprint.services.errors import AuthFailed, Invalid
from pocprint.store.db import read_session
from pocprint.store.models import Case
from pocprint.web.auth import actor, lab, requires

bp = Blueprint("review", __name__)
MAX_CSV_BYTES = 2 * 1024 * 1024
COLUMN_LABELS = {
    "scenario_id": "Scenario code",
    "catalog_version": "Catalog version",
    "condition_group": "Condition group",
    "rating_driven_by": "Rating driven by (literature or expert)",
    "evidence_category": "Evidence category (1-4)",
    "print_complexity": "Print complexity",
    "source_doi": "Source (DOI)",
    "source_table": "Source table",
    "publication_year": "Publication year",
}


@bp.route("/cases/<int:case_id>/review", methods=["GET", "POST"])
@requires(Permission.REVIEW_APPROPRIATENESS)
def case(case_id: int):
    typed, error, status = {}, None, 200
    if request.method == "POST":
        form = request.form
        scenario = form.get("scenario", "")
        try:
            review_service.review_case(
                lab(),
                actor(),
                case_id,
                decision=form.get("decision", ""),
                scenario=None if scenario in ("", "none") else scenario,
                justification=form.get("justification", ""),
                password=form.get("password", ""),
            )
        except (AuthFailed, Invalid) as exc:  # keep scenario, decision and justification
            typed = {k: form.get(k, "") for k in ("scenario", "decision", "justification")}
            error, status = str(exc), 422
        else:
            flash("Review recorded and signed.", "ok")
            return redirect(url_for("cases.detail", case_id=case_id), 303)
    with read_session(lab().engine) as session:
        row = session.get(Case, case_id)
        if row is None:
            abort(404)
        ranked = rank_scenarios(catalog.scenarios(session), row.anatomy, row.indication)
    return render_template(
        "review/case.html",
        case=row,
        scenarios=ranked,
        bands=Band,
        warnings=order_warnings(row.__dict__),
        describe=describe,
        typed=typed,
        error=error,
    ), status


@bp.route("/catalog/")
@requires(Permission.VIEW)
def catalog_page():
    edit_key = request.args.get("edit", "")
    with read_session(lab().engine) as session:
        rows = catalog.scenarios(session, active_only=False)
    editing = next((r for r in rows if f"{r.scenario_id}@{r.catalog_version}" == edit_key), None)
    return render_template(
        "review/catalog.html",
        rows=rows,
        editing=editing,
        columns=COLUMNS,
        bands=Band,
        column_labels=COLUMN_LABELS,
    )


@bp.route("/catalog/rows", methods=["POST"])
@requires(Permission.MANAGE_CATALOG)
def save_row():
    result = catalog.save_row(lab(), actor(), {k: request.form.get(k, "") for k in COLUMNS})
    flash(f"Scenario {result}.", "ok")
    return redirect(url_for("review.catalog_page"), 303)


@bp.route("/catalog/retire", methods=["POST"])
@requires(Permission.MANAGE_CATALOG)
def retire_row():
    catalog.retire_row(
        lab(),
        actor(),
        request.form.get("scenario_id", ""),
        request.form.get("catalog_version", ""),
        request.form.get("reason", ""),
    )
    flash("Scenario retired: it is no longer offered to reviewers.", "ok")
    return redirect(url_for("review.catalog_page"), 303)


@bp.route("/catalog/export.csv")
@requires(Permission.VIEW)
def export_csv():
    return Response(
        catalog.export_csv(lab()),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="appropriateness-catalog.csv"'},
    )


@bp.route("/catalog/import", methods=["POST"])
@requires(Permission.MANAGE_CATALOG)
def import_csv():
    upload = request.files.get("csv")
    if upload is None or not upload.filename:
        raise Invalid("choose a CSV file to import")
    data = upload.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        raise Invalid("the CSV is larger than 2 MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid("the CSV must be UTF-8 text") from exc
    counts = catalog.import_csv(lab(), actor(), text)
    flash(
        f"Imported: {counts['added']} added, {counts['changed']} changed, "
        f"{counts['unchanged']} unchanged.",
        "ok",
    )
    return redirect(url_for("review.catalog_page"), 303)
