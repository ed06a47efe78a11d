"""Lab metrics (issue 12, part 4): the numbers from a known history, the charts drawn (PNG
not blank; SVG bars proportional to, and labelled with, the CSV's numbers), the date-range
filter, bad ranges refused, roles."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pytest
from PIL import Image
from test_web import login

from pocprint.store.db import unit_of_work
from pocprint.store.models import BuildJob, utcnow
from pocprint.web import create_app

from planning_helpers import SHARES, past_device

GUIDES = (30.0, 45.0, 50.0, 80.0)
MODELS = (20.0, 100.0)


@pytest.fixture
def client(lab, people):
    uid = people["manager"].user_id
    # 06:00 UTC, needed by the start of the third day after: 66 h for the guides.
    ordered = datetime.combine(date.today() - timedelta(days=20), time(6, 0), tzinfo=UTC)
    made = []
    for h in GUIDES:
        made.append(
            past_device(
                lab,
                uid,
                device_type="surgical_guide",
                lead_h=h,
                printer="bench-offline",
                ordered_at=ordered,
                needed_by=ordered.date() + timedelta(days=3),
            )
        )
    for h in MODELS:
        past_device(
            lab,
            uid,
            device_type="anatomical_model",
            lead_h=h,
            printer="bench-offline",
            ordered_at=ordered,
            needed_by=(ordered + timedelta(days=30)).date(),
        )
    with unit_of_work(lab.engine) as s:  # one guide's build was rejected
        job = s.get(BuildJob, made[0]["job_id"])
        job.outcome, job.outcome_at, job.filament_g = "rejected", utcnow() - timedelta(days=19), 0
        for m in made[1:]:
            j = s.get(BuildJob, m["job_id"])
            j.outcome_at, j.filament_g = utcnow() - timedelta(days=19), 10.0
    app = create_app(lab.settings, lab)
    c = app.test_client()
    login(c, "manager")
    return c


RANGE = f"from={(date.today() - timedelta(days=60)).isoformat()}&to={date.today().isoformat()}"


def _csv(client, name, query=RANGE) -> list[dict]:
    r = client.get(f"/metrics/{name}.csv?{query}")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))


def test_turnaround_and_on_time_from_a_known_history(client):
    rows = {r["device_type"]: r for r in _csv(client, "turnaround")}
    assert int(rows["surgical_guide"]["devices"]) == 4
    assert float(rows["surgical_guide"]["median_hours"]) == pytest.approx(np.median(GUIDES))
    assert float(rows["anatomical_model"]["median_hours"]) == pytest.approx(np.median(MODELS))
    on_time = {r["device_type"]: r for r in _csv(client, "on_time")}
    on_time_guides = sum(h <= 66 for h in GUIDES)
    assert int(on_time["surgical_guide"]["on_time"]) == on_time_guides == 3
    assert float(on_time["surgical_guide"]["on_time_percent"]) == 75.0
    assert int(on_time["anatomical_model"]["on_time"]) == 2


def test_printer_metrics_failures_utilisation_material_and_steps(client):
    (failures,) = _csv(client, "failures")
    assert (failures["printer"], failures["builds"], failures["rejected"]) == (
        "bench-offline",
        "6",
        "1",
    )
    assert float(failures["failure_percent"]) == pytest.approx(100 / 6, abs=0.01)
    (use,) = _csv(client, "utilisation")
    printing = sum(h * (SHARES["finished"] - SHARES["started"]) for h in GUIDES + MODELS)
    assert float(use["printing_hours"]) == pytest.approx(printing, abs=0.01)
    assert float(use["utilisation_percent"]) == pytest.approx(
        100 * printing / float(use["range_hours"]), abs=0.01
    )
    (lot,) = _csv(client, "material")
    assert lot["lot"] == "no lot recorded" and float(lot["grams"]) == pytest.approx(30.0)
    steps = {r["step"]: r for r in _csv(client, "step_time")}
    assert float(steps["print"]["total_hours"]) == pytest.approx(printing, abs=0.01)


def _bars(svg: str) -> list[float]:
    widths = []
    for d in re.findall(r'<path d="([^"]+)"[^>]*style="fill: #4a7bd0"', svg):
        xs = [float(x) for x in re.findall(r"([\d.]+) [\d.]+", d)]
        widths.append(max(xs) - min(xs))
    return widths


@pytest.mark.parametrize("name", ["turnaround", "on_time", "utilisation", "failures", "step_time"])
def test_charts_render_and_match_their_csv(client, name):
    rows = _csv(client, name)
    png = client.get(f"/metrics/{name}.png?{RANGE}")
    assert png.status_code == 200 and png.mimetype == "image/png"
    image = Image.open(io.BytesIO(png.data)).convert("L")
    pixels = np.asarray(image)
    assert image.width > 300 and image.height > 150
    assert (pixels < 200).mean() > 0.01  # ink on the page, not a blank image
    svg = client.get(f"/metrics/{name}.svg?{RANGE}").get_data(as_text=True)
    column = {
        "turnaround": "median_hours",
        "on_time": "on_time_percent",
        "utilisation": "utilisation_percent",
        "failures": "failure_percent",
        "step_time": "total_hours",
    }[name]
    values = [float(r[column]) for r in rows]
    widths = _bars(svg)
    assert len(widths) == len(values) and values
    for value, width in zip(values, widths, strict=True):
        assert f"{value:g} " in svg  # the bar's label
        if max(values):
            assert width / max(widths) == pytest.approx(value / max(values), abs=0.01)


def test_date_range_filters_and_bad_ranges_are_refused(client):
    old = "from=2020-01-01&to=2020-12-31"
    assert _csv(client, "turnaround", old) == []
    png = client.get(f"/metrics/turnaround.png?{old}")
    assert png.status_code == 200 and len(png.data) > 1000  # "no data in this range"
    page = client.get(f"/metrics/?{old}").get_data(as_text=True)
    assert "no data" in page
    bad = client.get(
        "/metrics/turnaround.csv?from=yesterday", headers={"Accept": "application/json"}
    )
    assert bad.status_code == 422 and "from" in bad.get_json()["fields"]
    reversed_ = client.get(
        "/metrics/turnaround.csv?from=2026-02-01&to=2026-01-01",
        headers={"Accept": "application/json"},
    )
    assert reversed_.status_code == 422
    assert client.get(f"/metrics/teapot.png?{RANGE}").status_code == 404


def test_metrics_for_lab_manager_and_auditor_only(lab, client):
    app = create_app(lab.settings, lab)
    for user, status in (("auditor", 200), ("tech", 403), ("presc", 403)):
        c = app.test_client()
        login(c, user)
        assert c.get(f"/metrics/?{RANGE}").status_code == status, user
        assert c.get(f"/metrics/turnaround.csv?{RANGE}").status_code == status, user
    html = client.get(f"/metrics/?{RANGE}").get_data(as_text=True)
    assert html.count('class="chart"') == 6


def test_step_times_per_device_type_printer_and_material(client):
    r = client.get(f"/metrics/steps.csv?{RANGE}")
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    prints = {x["device_type"]: x for x in rows if x["step"] == "finished"}
    guide = prints["surgical_guide"]
    assert (guide["printer"], guide["material"], guide["cases"]) == ("bench-offline", "PLA", "4")
    expected = [h * (SHARES["finished"] - SHARES["started"]) for h in GUIDES]
    assert float(guide["median_h"]) == pytest.approx(float(np.median(expected)))
    assert float(guide["p90_h"]) == pytest.approx(float(np.percentile(expected, 90)))
