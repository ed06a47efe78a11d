"""Device record pages: every step with who and when, hashes, printer, label with QR code."""

from __future__ import annotations

import json

from flask import Blueprint, Response, abort, render_template, url_for
from markupsafe import Markup

from pocprint.domain.roles import Permission
from pocprint.reads.records import device_record
from pocprint.store.db import read_session
from pocprint.trace.labels import qr_svg
from pocprint.web.auth import lab, requires

bp = Blueprint("devices", __name__, url_prefix="/devices")


def _record(serial: str) -> dict:
    with read_session(lab().engine) as session:
        record = device_record(session, serial)
    if record is None:
        abort(404)
    return record


@bp.route("/<serial>")
@requires(Permission.VIEW)
def record(serial: str):
    data = _record(serial)
    link = url_for("devices.record", serial=serial, _external=True)
    return render_template(
        "devices/record.html",
        record=data,
        qr=Markup(qr_svg(link)),  # noqa: S704 (SVG made by qrcode from our own URL)
        record_url=link,
    )


@bp.route("/<serial>.json")
@requires(Permission.VIEW)
def record_json(serial: str):
    body = json.dumps(_record(serial), indent=2, sort_keys=True)
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="device-{serial}.json"'},
    )
