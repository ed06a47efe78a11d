"""Planning: the lead-time forecast for an order not yet placed (JSON, for the order form)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from pocprint.domain.cases import DeviceType
from pocprint.domain.roles import Permission
from pocprint.reads.history import order_forecast
from pocprint.services.errors import Invalid
from pocprint.store.db import read_session
from pocprint.web.auth import lab, requires

bp = Blueprint("planning", __name__, url_prefix="/planning")


@bp.route("/forecast")
@requires(Permission.CREATE_CASE)
def forecast():
    """When an order of this device type placed now would be ready: median and 90 %."""
    kind = request.args.get("device_type", "")
    if kind not in {t.value for t in DeviceType}:
        raise Invalid(
            "device_type must be one of " + ", ".join(t.value for t in DeviceType),
            fields={"device_type": ["unknown device type"]},
        )
    with read_session(lab().engine) as session:
        result = order_forecast(session, kind, lab())
    f = result["forecast"]
    return jsonify(
        {
            "device_type": kind,
            "ready_median": result["ready_median"].isoformat(),
            "ready_p90": result["ready_p90"].isoformat(),
            "median_hours": round(f.median_h, 2),
            "p90_hours": round(f.p90_h, 2),
            "basis": f.basis,
            "cases": f.cases,
            "explanation": f.explanation,
        }
    )
