"""The forecast where people see it: the order form before the order is placed, the JSON
endpoint behind it, and the case page as the case progresses (issue 12, part 1)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import numpy as np
import pytest
from test_web import login

from pocprint.store.models import utcnow
from pocprint.web import create_app

from planning_helpers import past_device


@pytest.fixture
def app(lab, people):
    uid = people["manager"].user_id
    for h in (30.0, 40.0, 50.0, 60.0, 70.0):
        past_device(lab, uid, device_type="surgical_guide", lead_h=h, printer="bench-offline")
    return create_app(lab.settings, lab)


def test_order_form_shows_ready_time_with_its_interval_before_placing(app):
    client = app.test_client()
    login(client, "presc")
    html = client.get("/cases/new").get_data(as_text=True)
    guide = re.search(r'data-device-type="surgical_guide"[^>]*>(.*?)</li>', html, re.S).group(1)
    assert "ready by" in guide and "90 %" in guide
    assert "5 past surgical guide cases" in guide


def test_forecast_endpoint_gives_median_and_p90_from_history(app):
    client = app.test_client()
    login(client, "tech")
    before = utcnow()
    body = client.get("/planning/forecast?device_type=surgical_guide").get_json()
    assert body["basis"] == "same_kind" and body["cases"] == 5
    assert body["median_hours"] == pytest.approx(50.0)
    assert body["p90_hours"] == pytest.approx(float(np.percentile([30, 40, 50, 60, 70], 90)))
    ready = datetime.fromisoformat(body["ready_median"])
    assert timedelta(hours=49.9) < ready - before < timedelta(hours=50.1)
    bad = client.get(
        "/planning/forecast?device_type=teapot", headers={"Accept": "application/json"}
    )
    assert bad.status_code == 422 and "device_type" in bad.get_json()["fields"]


def test_forecast_endpoint_refuses_roles_that_cannot_order(app):
    client = app.test_client()
    login(client, "auditor")
    assert client.get("/planning/forecast?device_type=surgical_guide").status_code == 403


def test_case_page_shows_the_forecast_from_the_step_reached(app, lab, people):
    ongoing = past_device(
        lab,
        people["tech"].user_id,
        device_type="surgical_guide",
        lead_h=100,
        ordered_at=utcnow() - timedelta(hours=2),
        stop_after="reviewed",
        needed_by=utcnow().date(),
    )
    client = app.test_client()
    login(client, "tech")
    html = client.get(f"/cases/{ongoing['case_id']}").get_data(as_text=True)
    shown = re.search(r'id="predicted-ready">(.*?)</dd>', html, re.S).group(1)
    assert "counted from reviewed" in shown
    assert "may miss the needed-by date" in shown  # needed today, ready in days
