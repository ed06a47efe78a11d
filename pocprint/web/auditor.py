"""Auditor pages (read-only, VIEW_AUDIT): chain head, device search and recall, event search,
CSV and JSON exports, and the per-case registry export."""

from __future__ import annotations

import json
from datetime import date

from flask import Blueprint, Response, abort, render_template, request
from sqlmodel import select

from pocprint.domain.roles import Permission
from pocprint.reads.audit import chain_head
from pocprint.reads.auditor import (
    DeviceFilter,
    EventFilter,
    search_devices,
    search_events,
    to_csv,
)
from pocprint.reads.registry import registry_export, registry_rows
from pocprint.store.db import read_session
from pocprint.store.models import Case
from pocprint.web.auth import lab, requires

bp = Blueprint("auditor", __name__, url_prefix="/audit")


class BadQuery(ValueError):
    pass


def _date(name: str) -> date | None:
    text = (request.args.get(name) or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise BadQuery(f"{name.replace('_', ' ')} must be a date (YYYY-MM-DD)") from exc


def _device_filter() -> DeviceFilter:
    a = request.args
    return DeviceFilter(
        date_from=_date("date_from"),
        date_to=_date("date_to"),
        case=a.get("case", ""),
        device=a.get("device", ""),
        printer=a.get("printer", ""),
        lot=a.get("lot", ""),
        operator=a.get("operator", ""),
        profile=a.get("profile", ""),
    )


def _event_filter() -> EventFilter:
    a = request.args
    return EventFilter(
        date_from=_date("date_from"),
        date_to=_date("date_to"),
        actor=a.get("actor", ""),
        action=a.get("action", ""),
        entity=a.get("entity", ""),
        entity_id=a.get("entity_id", ""),
    )


def _export(rows: list[dict], fmt: str, name: str) -> Response:
    if fmt == "csv":
        body, mimetype = to_csv(rows), "text/csv"
    elif fmt == "json":
        body, mimetype = json.dumps(rows, indent=2, sort_keys=True), "application/json"
    else:
        abort(404)
    return Response(
        body,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


@bp.route("/")
@requires(Permission.VIEW_AUDIT)
def index():
    error, devices, searched = None, [], False
    with read_session(lab().engine) as session:
        head = chain_head(session)
        try:
            f = _device_filter()
            if not f.is_empty():
                devices, searched = search_devices(session, f), True
        except BadQuery as exc:
            error = str(exc)
    return render_template(
        "auditor/index.html", head=head, devices=devices, searched=searched, error=error
    )


@bp.route("/devices.<fmt>")
@requires(Permission.VIEW_AUDIT)
def devices_export(fmt: str):
    try:
        f = _device_filter()
    except BadQuery as exc:
        abort(400, description=str(exc))
    with read_session(lab().engine) as session:
        rows = search_devices(session, f)
    return _export(rows, fmt, "devices")


@bp.route("/events")
@requires(Permission.VIEW_AUDIT)
def events():
    error, rows = None, []
    with read_session(lab().engine) as session:
        try:
            rows = search_events(session, _event_filter())
        except BadQuery as exc:
            error = str(exc)
    return render_template("auditor/events.html", events=rows, error=error)


@bp.route("/events.<fmt>")
@requires(Permission.VIEW_AUDIT)
def events_export(fmt: str):
    try:
        f = _event_filter()
    except BadQuery as exc:
        abort(400, description=str(exc))
    with read_session(lab().engine) as session:
        rows = search_events(session, f, limit=100_000)
    return _export(rows, fmt, "audit-events")


@bp.route("/registry/<case_code>.<fmt>")
@requires(Permission.VIEW_AUDIT)
def registry(case_code: str, fmt: str):
    with read_session(lab().engine) as session:
        case_id = session.exec(select(Case.id).where(Case.code == case_code)).first()
        export = registry_export(session, case_id) if case_id else None
    if export is None:
        abort(404)
    if fmt == "csv":
        return _export(registry_rows(export), "csv", f"registry-{case_code}")
    if fmt == "json":
        return Response(
            json.dumps(export, indent=2, sort_keys=True),
            mimetype="application/json",
            headers={"Content-Disposition": f'attachment; filename="registry-{case_code}.json"'},
        )
    abort(404)
