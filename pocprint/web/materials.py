"""Materials page: lots received, what is loaded on each printer, and the maintenance and
calibration log."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, flash, redirect, render_template, request, url_for

from pocprint.domain.roles import Permission
from pocprint.domain.times import from_local_input
from pocprint.reads import materials as material_reads
from pocprint.services import maintenance, materials
from pocprint.services.errors import Invalid
from pocprint.store.db import read_session
from pocprint.web.auth import actor, lab, requires

bp = Blueprint("materials", __name__, url_prefix="/materials")


def _date(name: str, required: bool = False) -> date | None:
    text = (request.form.get(name) or "").strip()
    if not text:
        if required:
            raise Invalid(f"{name.replace('_', ' ')} is required")
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise Invalid(f"{name.replace('_', ' ')} is not a date (YYYY-MM-DD)") from exc


def _float(name: str) -> float | None:
    text = (request.form.get(name) or "").strip().replace(",", ".")
    try:
        return float(text) if text else None
    except ValueError as exc:
        raise Invalid(f"{name.replace('_', ' ')} must be a number") from exc


def _back():
    return redirect(url_for("materials.index"), 303)


@bp.route("/")
@requires(Permission.VIEW)
def index():
    with read_session(lab().engine) as session:
        lots = material_reads.lots(session)
        printers = material_reads.printers(session)
    return render_template("materials/index.html", lots=lots, printers=printers)


@bp.route("/lots", methods=["POST"])
@requires(Permission.MANAGE_MATERIALS)
def receive():
    f = request.form
    materials.receive_lot(
        lab(),
        actor(),
        material=f.get("material", ""),
        manufacturer=f.get("manufacturer", ""),
        lot_number=f.get("lot_number", ""),
        expiry=_date("expiry", required=True),
        quantity_g=_float("quantity_g"),
        opened_on=_date("opened_on"),
        note=f.get("note", ""),
    )
    flash("Lot recorded.", "ok")
    return _back()


@bp.route("/lots/<int:lot_id>/open", methods=["POST"])
@requires(Permission.MANAGE_MATERIALS)
def open_lot(lot_id: int):
    materials.open_lot(lab(), actor(), lot_id, _date("opened_on"))
    flash("Opened date recorded.", "ok")
    return _back()


@bp.route("/printers/<int:printer_id>/lot", methods=["POST"])
@requires(Permission.MANAGE_MATERIALS)
def load(printer_id: int):
    lot = (request.form.get("lot_id") or "").strip()
    materials.load_lot(lab(), actor(), printer_id, int(lot) if lot.isdigit() else None)
    flash("Lot loaded." if lot else "Lot taken off.", "ok")
    return _back()


@bp.route("/printers/<int:printer_id>/log", methods=["POST"])
@requires(Permission.RECORD_MAINTENANCE)
def log(printer_id: int):
    performed = (request.form.get("performed_at") or "").strip()
    try:
        # typed in the site's time zone, stored as UTC
        performed_at = from_local_input(performed, lab().settings.time_zone) if performed else None
    except ValueError as exc:
        raise Invalid("performed at is not a date and time") from exc
    kind, _, result = (request.form.get("kind_result") or "").partition("/")
    maintenance.record_entry(
        lab(),
        actor(),
        printer_id,
        kind=kind,
        description=request.form.get("description", ""),
        result=result,
        performed_at=performed_at,
        next_due=_date("next_due"),
    )
    flash("Log entry recorded.", "ok")
    return _back()
