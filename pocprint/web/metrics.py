"""Lab metrics (lab manager and auditor): charts with the CSV behind each, over a date range."""

from __future__ import annotations

from datetime import date, timedelta

from flask import Blueprint, Response, abort, render_template, request

from pocprint.domain.roles import Permission
from pocprint.reads.auditor import to_csv
from pocprint.reads.history import released_devices, step_durations
from pocprint.reads.metrics import METRICS, bounds, lab_metrics
from pocprint.services.errors import Invalid
from pocprint.store.db import read_session
from pocprint.store.models import utcnow
from pocprint.trace.charts import FORMATS, bar_chart
from pocprint.web.auth import lab, requires

bp = Blueprint("metrics", __name__, url_prefix="/metrics")
DEFAULT_DAYS = 90


def _range() -> tuple[date, date]:
    today = utcnow().date()
    problems: dict[str, list[str]] = {}
    values = {}
    for name, default in (("from", today - timedelta(days=DEFAULT_DAYS)), ("to", today)):
        text = (request.args.get(name) or "").strip()
        try:
            values[name] = date.fromisoformat(text) if text else default
        except ValueError:
            problems[name] = [f"{name}: not a date (use YYYY-MM-DD)"]
    if not problems and values["to"] < values["from"]:
        problems["to"] = ["the range ends before it begins"]
    if problems:
        raise Invalid("; ".join(m for ms in problems.values() for m in ms), fields=problems)
    return values["from"], values["to"]


def _metrics(date_from: date, date_to: date):
    with read_session(lab().engine) as session:
        return lab_metrics(session, date_from, date_to, utcnow())


@bp.route("/")
@requires(Permission.VIEW_AUDIT)
def index():
    date_from, date_to = _range()
    return render_template(
        "metrics/index.html",
        metrics=[_metrics(date_from, date_to)[name] for name in METRICS],
        date_from=date_from,
        date_to=date_to,
    )


@bp.route("/steps.csv")
@requires(Permission.VIEW_AUDIT)
def steps():
    """What each step took (median, 90th percentile) per device type, printer and material:
    the figures the lead-time forecast and the planning page learn from."""
    date_from, date_to = _range()
    with read_session(lab().engine) as session:
        history = released_devices(session, *bounds(date_from, date_to))
    rows = step_durations(history, by=("device_type", "printer", "material"))
    filename = f"steps-{date_from.isoformat()}-{date_to.isoformat()}.csv"
    return Response(
        to_csv(rows) or "device_type,printer,material,step,cases,median_h,p90_h\n",
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.route("/<name>.<fmt>")
@requires(Permission.VIEW_AUDIT)
def chart(name: str, fmt: str):
    """One metric as a PNG or SVG chart, or as the CSV the chart draws."""
    if name not in METRICS or (fmt not in FORMATS and fmt != "csv"):
        abort(404)
    date_from, date_to = _range()
    metric = _metrics(date_from, date_to)[name]
    filename = f"{name}-{date_from.isoformat()}-{date_to.isoformat()}.{fmt}"
    if fmt == "csv":
        header = ",".join([metric.label, metric.value]) + "\n"
        body = to_csv(metric.rows) or header
        return Response(
            body,
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    image = bar_chart(
        metric.title,
        [str(r[metric.label]) for r in metric.rows],
        [float(r[metric.value]) for r in metric.rows],
        metric.unit,
        fmt,
    )
    return Response(image, mimetype=FORMATS[fmt])
