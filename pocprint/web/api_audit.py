"""Auditor queries of the JSON API (traceability, issue 6): read-only, VIEW_AUDIT."""

from __future__ import annotations

from flask import abort, jsonify, request
from flask_smorest import Blueprint
from sqlmodel import select

from pocprint.domain.roles import Permission
from pocprint.store.db import read_session
from pocprint.store.models import Case
from pocprint.web.api import authenticate_request, needs
from pocprint.web.auth import lab

bp = Blueprint("api_audit", __name__, url_prefix="/api/v1/audit", description="Audit queries")
bp.before_request(authenticate_request)


def _audit_args():
    from datetime import date

    from pocprint.reads.auditor import DeviceFilter, EventFilter

    def day(name):
        text = (request.args.get(name) or "").strip()
        try:
            return date.fromisoformat(text) if text else None
        except ValueError:
            abort(400, description=f"{name} must be a date (YYYY-MM-DD)")

    a = request.args
    devices = DeviceFilter(
        date_from=day("date_from"),
        date_to=day("date_to"),
        **{k: a.get(k, "") for k in ("case", "device", "printer", "lot", "operator", "profile")},
    )
    events = EventFilter(
        date_from=day("date_from"),
        date_to=day("date_to"),
        **{k: a.get(k, "") for k in ("actor", "action", "entity", "entity_id")},
    )
    return devices, events


@bp.get("/chain-head")
@bp.response(200)
@needs(Permission.VIEW_AUDIT)
def audit_chain_head():
    """The audit chain head (hash and event count) to copy to an outside record."""
    from pocprint.reads.audit import chain_head

    with read_session(lab().engine) as session:
        head = chain_head(session)
    return {"hash": head.hash, "events": head.events}


@bp.get("/devices")
@bp.response(200)
@needs(Permission.VIEW_AUDIT)
def audit_devices():
    """Device search and recall: date_from, date_to, case, device, printer, lot, operator,
    profile (id or SHA-256 prefix)."""
    from pocprint.reads.auditor import search_devices

    devices, _events = _audit_args()
    with read_session(lab().engine) as session:
        return jsonify(search_devices(session, devices))


@bp.get("/events")
@bp.response(200)
@needs(Permission.VIEW_AUDIT)
def audit_events():
    """Audit events, newest first: date_from, date_to, actor, action (prefix), entity, entity_id."""
    from pocprint.reads.auditor import search_events

    _devices, events = _audit_args()
    with read_session(lab().engine) as session:
        return jsonify(search_events(session, events, limit=10_000))


@bp.get("/registry/<case_code>")
@bp.response(200)
@needs(Permission.VIEW_AUDIT)
def audit_registry(case_code: str):
    """The ACR-RSNA 3D Printing Registry fields of one case (anonymised)."""
    from pocprint.reads.registry import registry_export

    with read_session(lab().engine) as session:
        case_id = session.exec(select(Case.id).where(Case.code == case_code)).first()
        export = registry_export(session, case_id) if case_id else None
    if export is None:
        abort(404)
    return export
