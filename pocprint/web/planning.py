"""Planning: the queue laid onto the printers (a Gantt chart per printer) with the cases at
risk and what would save them; the lead-time forecast for an order not yet placed (JSON)."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request

from pocprint.domain.cases import DeviceType
from pocprint.domain.roles import Permission
from pocprint.reads.history import order_forecast
from pocprint.reads.planning import at_risk, planning
from pocprint.services.errors import Invalid
from pocprint.store.db import read_session
from pocprint.web.auth import lab, requires

bp = Blueprint("planning", __name__, url_prefix="/planning")
WIDTH = 1000  # the Gantt chart's drawing units across


def _gantt(data: dict) -> list[dict]:
    """Each printer's lane as SVG geometry: bars placed on a timeline from now."""
    now, horizon = data["now"], data["horizon"]
    span = (horizon - now).total_seconds() or 1.0

    def x(moment) -> float:
        return round(max(0.0, (moment - now).total_seconds()) / span * WIDTH, 1)

    lanes = data["plan"].lanes()
    out = []
    for printer_id, name in data["printers"].items():
        busy = data["busy_until"].get(printer_id, now)
        bars = [
            {
                "bar": b,
                "x": x(b.start),
                "w": max(2.0, round(x(b.end) - x(b.start), 1)),
                "job": data["jobs"][b.job_id],
            }
            for b in lanes.get(printer_id, [])
        ]
        out.append({"id": printer_id, "name": name, "busy_w": x(busy), "bars": bars})
    return out


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


@bp.route("/")
@requires(Permission.PRIORITISE_JOBS)
def index():
    """The lab manager's and technicians' view of capacity: who prints what, when, and which
    cases will be late unless something changes."""
    with read_session(lab().engine) as session:
        data = planning(session, lab())
    hours = (data["horizon"] - data["now"]).total_seconds() / 3600
    ticks = [
        {"x": round(h / hours * WIDTH, 1), "label": f"+{h} h"}
        for h in range(0, int(hours) + 1, max(1, int(hours // 6) or 1))
    ]
    return render_template(
        "planning/index.html",
        lanes=_gantt(data),
        risks=at_risk(data),
        unplaced=[data["jobs"][j] for j in data["plan"].unplaced],
        now=data["now"],
        horizon=data["horizon"],
        ticks=ticks,
        width=WIDTH,
    )
