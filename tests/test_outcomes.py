"""After use (issue 12, part 3): the outcome form is the requesting clinician's alone, only
after the procedure date, and lands in the registry export; complaints and incidents are
recorded against a device and found again by lot, printer and profile."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlmodel import select
from test_web import csrf_of, login

from pocprint.domain.roles import Role
from pocprint.reads.auditor import DeviceFilter
from pocprint.reads.outcomes import post_market
from pocprint.reads.registry import registry_export
from pocprint.services import materials, outcomes
from pocprint.services.actors import Actor
from pocprint.services.errors import Forbidden, Invalid, WrongState
from pocprint.services.users import authenticate, create_user
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import BuildJob, Case, DeviceComplaint, DeviceOutcome, Printer
from pocprint.web import create_app

from conftest import PASSWORD
from trace_helpers import printed_device


@pytest.fixture
def device(lab, people, tmp_path):
    """A built, accepted guide whose case the prescriber `presc` ordered; surgery yesterday."""
    job_id = printed_device(lab, people, tmp_path)
    with unit_of_work(lab.engine) as s:
        job = s.get(BuildJob, job_id)
        case = s.get(Case, job.case_id)
        case.created_by = people["presc"].user_id
        case.procedure_date = date.today() - timedelta(days=1)
        return {"serial": job.serial, "case_id": case.id, "code": case.code, "job_id": job_id}


def _other_prescriber(lab):
    root = Actor(None, "test-setup", "test setup", frozenset({Role.ADMIN}))
    create_user(lab, root, "presc2", "Other Surgeon", PASSWORD, {Role.PRESCRIBER}, one_time=False)
    return authenticate(lab, "presc2", PASSWORD)


def _outcome_rows(lab) -> list[DeviceOutcome]:
    with read_session(lab.engine) as s:
        return s.exec(select(DeviceOutcome)).all()


def test_requesting_clinician_records_the_outcome_and_it_lands_in_the_registry(lab, people, device):
    outcomes.record_outcome(
        lab,
        people["presc"],
        device["serial"],
        used_as_intended=True,
        plan_changed=True,
        fit="good",
        time_saved_min=25,
        comment="Guide seated first time",
    )
    with read_session(lab.engine) as s:
        export = registry_export(s, device["case_id"])
    (impact,) = export["clinical_impact"]
    assert impact["device"] == device["serial"]
    assert impact["used_as_intended"] is True and impact["changed_surgical_plan"] is True
    assert impact["fit"] == "good" and impact["time_saved_minutes"] == 25
    # A correction is a new row; the export shows the latest answer.
    outcomes.record_outcome(
        lab,
        people["presc"],
        device["serial"],
        used_as_intended=True,
        plan_changed=False,
        fit="acceptable",
    )
    with read_session(lab.engine) as s:
        (impact,) = registry_export(s, device["case_id"])["clinical_impact"]
    assert impact["fit"] == "acceptable" and impact["time_saved_minutes"] is None
    assert len(_outcome_rows(lab)) == 2


def test_only_the_requesting_clinician_may_record_it(lab, people, device):
    other = _other_prescriber(lab)
    answer = dict(used_as_intended=True, plan_changed=False, fit="good")
    with pytest.raises(Forbidden, match="requested the case"):
        outcomes.record_outcome(lab, other, device["serial"], **answer)
    for role in ("tech", "rad", "manager"):
        with pytest.raises(Forbidden):
            outcomes.record_outcome(lab, people[role], device["serial"], **answer)
    assert _outcome_rows(lab) == []


def test_not_before_the_procedure_date_and_bad_answers_write_nothing(lab, people, device):
    with unit_of_work(lab.engine) as s:
        s.get(Case, device["case_id"]).procedure_date = date.today() + timedelta(days=2)
    answer = dict(used_as_intended=True, plan_changed=False, fit="good")
    with pytest.raises(WrongState, match="the outcome comes after"):
        outcomes.record_outcome(lab, people["presc"], device["serial"], **answer)
    with unit_of_work(lab.engine) as s:
        s.get(Case, device["case_id"]).procedure_date = date.today()
    with pytest.raises(Invalid) as bad:
        outcomes.record_outcome(
            lab,
            people["presc"],
            device["serial"],
            used_as_intended=None,
            plan_changed=False,
            fit="snug",
            time_saved_min=10_000,
        )
    assert set(bad.value.fields) == {"fit", "time_saved_min", "used_as_intended"}
    assert _outcome_rows(lab) == []


def test_outcome_form_over_http(lab, people, device):
    app = create_app(lab.settings, lab)
    page = f"/devices/{device['serial']}/outcome"
    presc = app.test_client()
    login(presc, "presc")
    case_page = presc.get(f"/cases/{device['case_id']}").get_data(as_text=True)
    assert page in case_page  # the clinician is offered the form on the case
    token = csrf_of(presc.get(page).get_data(as_text=True))
    bad = presc.post(page, data={"csrf_token": token, "used_as_intended": "yes", "fit": "good"})
    assert bad.status_code == 422 and 'id="err-plan_changed"' in bad.get_data(as_text=True)
    ok = presc.post(
        page,
        data={
            "csrf_token": token,
            "used_as_intended": "yes",
            "plan_changed": "no",
            "fit": "poor",
            "time_saved_min": "-5",
            "comment": "Sleeve 1 mm off",
        },
    )
    assert ok.status_code == 303
    (row,) = _outcome_rows(lab)
    assert (row.fit, row.time_saved_min, row.comment) == ("poor", -5, "Sleeve 1 mm off")
    auditor = app.test_client()
    login(auditor, "auditor")
    export = auditor.get(f"/audit/registry/{device['code']}.json").get_json()
    assert export["clinical_impact"][0]["fit"] == "poor"
    assert auditor.get(page).status_code == 403
    tech = app.test_client()
    login(tech, "tech")
    assert tech.get(page).status_code == 403
    assert page not in tech.get(f"/cases/{device['case_id']}").get_data(as_text=True)
    _other_prescriber(lab)
    other = app.test_client()
    login(other, "presc2")
    assert other.get(page).status_code == 403
    own = csrf_of(other.get("/cases/").get_data(as_text=True))
    answer = {"used_as_intended": "yes", "plan_changed": "no", "fit": "good"}
    assert other.post(page, data={"csrf_token": own, **answer}).status_code == 403
    assert len(_outcome_rows(lab)) == 1


def test_complaints_are_found_by_lot_printer_and_profile(lab, people, device, tmp_path):
    tech = people["tech"]
    with read_session(lab.engine) as s:
        printer = s.exec(select(Printer).order_by(Printer.id)).first()
        job = s.get(BuildJob, device["job_id"])
    lot = materials.receive_lot(
        lab,
        tech,
        material="PLA",
        manufacturer="Acme",
        lot_number="L-PMS",
        expiry=date.today() + timedelta(days=100),
        quantity_g=1000,
    )
    with unit_of_work(lab.engine) as s:  # the lot was on the printer before the build began
        s.get(BuildJob, device["job_id"]).started_at = job.started_at + timedelta(minutes=5)
    materials.load_lot(lab, tech, printer.id, lot)
    with unit_of_work(lab.engine) as s:
        s.get(BuildJob, device["job_id"]).started_at = job.started_at + timedelta(days=1)
    outcomes.report_complaint(
        lab,
        people["presc"],
        device["serial"],
        kind="incident",
        serious=True,
        description="Guide cracked at the drill sleeve during surgery",
    )
    with pytest.raises(Invalid) as bad:
        outcomes.report_complaint(
            lab, tech, device["serial"], kind="complaint", serious=True, description=""
        )
    assert set(bad.value.fields) == {"description", "serious"}
    with read_session(lab.engine) as s:
        assert len(s.exec(select(DeviceComplaint)).all()) == 1
        for f in (
            DeviceFilter(lot="L-PMS"),
            DeviceFilter(printer=printer.name),
            DeviceFilter(profile=job.profile_id),
        ):
            (row,) = post_market(s, f)
            assert row["serial"] == device["serial"]
            assert row["complaints"][0]["kind"] == "incident"
            assert row["complaints"][0]["serious"] is True
        assert post_market(s, DeviceFilter(lot="L-OTHER")) == []
    app = create_app(lab.settings, lab)
    auditor = app.test_client()
    login(auditor, "auditor")
    html = auditor.get("/audit/post-market?lot=L-PMS").get_data(as_text=True)
    assert f'data-serial="{device["serial"]}"' in html and "cracked" in html
