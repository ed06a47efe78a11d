"""Planning (issue 12, part 2): the EDF lay-out with predicted durations, at-risk marking that
follows the prediction, what would save a late case, one notification per case, the page."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import select
from test_web import csrf_of, login

from pocprint.domain.planning import PlanJob, lay_out
from pocprint.reads.planning import at_risk, planning
from pocprint.services import notifications
from pocprint.store.db import read_session
from pocprint.store.models import AuditEvent, Notification, Printer
from pocprint.web import create_app

from planning_helpers import late_case_queue, past_device

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def _job(i, needed_in_h, hours, after=2.0, urgent=False, created=0):
    deadline = NOW + timedelta(hours=needed_in_h)
    return PlanJob(
        id=i,
        serial=f"D{i}",
        case_id=i,
        case_code=f"C{i}",
        device_type="surgical_guide",
        needed_by=deadline.date(),
        deadline=deadline,
        created_at=NOW - timedelta(hours=100 - created),
        hours=hours,
        after_print_h=after,
        urgent=urgent,
    )


def test_lay_out_is_earliest_deadline_first_on_the_printer_free_first():
    jobs = [_job(1, 100, {1: 5.0}), _job(2, 20, {1: 3.0}), _job(3, 50, {1: 4.0})]
    plan = lay_out([1], {}, jobs, NOW)
    order = [b.job_id for b in sorted(plan.bars, key=lambda b: b.start)]
    assert order == [2, 3, 1]
    starts = {b.job_id: (b.start - NOW).total_seconds() / 3600 for b in plan.bars}
    assert starts == {2: 0.0, 3: 3.0, 1: 7.0}
    assert not plan.at_risk()


def test_busy_printer_and_duration_per_printer_shape_the_plan():
    jobs = [_job(1, 100, {1: 5.0, 2: 10.0})]
    plan = lay_out([1, 2], {1: NOW + timedelta(hours=1)}, jobs, NOW)
    (bar,) = plan.bars
    assert bar.printer_id == 2  # free first, even though slower
    assert bar.end - bar.start == timedelta(hours=10)
    assert bar.ready == bar.end + timedelta(hours=2)


def test_at_risk_follows_the_prediction():
    on_time = lay_out([1], {}, [_job(1, 8.0, {1: 5.0}, after=2.0)], NOW)
    late = lay_out([1], {}, [_job(1, 6.9, {1: 5.0}, after=2.0)], NOW)
    assert not on_time.at_risk() and [b.job_id for b in late.at_risk()] == [1]


def test_a_faster_printer_is_named_as_the_rescue():
    # Printer 2 frees first but is slow; waiting one hour for printer 1 saves the case.
    jobs = [_job(1, 9.0, {1: 4.0, 2: 10.0}, after=1.0)]
    plan = lay_out([1, 2], {1: NOW + timedelta(hours=1)}, jobs, NOW)
    (bar,) = plan.at_risk()
    assert bar.printer_id == 2
    (rescue,) = plan.rescues[1]
    assert rescue.kind == "another_printer" and rescue.printer_id == 1
    assert rescue.ready == NOW + timedelta(hours=6)
    assert "print on fast instead" in rescue.words({1: "fast", 2: "slow"})


def test_urgent_override_is_named_when_it_saves_the_case_and_says_who_pays():
    # C2 is needed first (EDF puts it first); C1's long print then ends too late. Putting C1
    # first saves it, and makes C2 late instead: the page says so.
    jobs = [_job(1, 48.0, {1: 40.0}), _job(2, 24.0, {1: 10.0})]
    plan = lay_out([1], {}, jobs, NOW)
    assert [b.job_id for b in plan.at_risk()] == [1]
    (rescue,) = plan.rescues[1]
    assert rescue.kind == "urgent_override" and rescue.ready == NOW + timedelta(hours=42)
    assert rescue.late_instead == ("C2",)
    assert "makes C2 late" in rescue.words({1: "p1"})


def test_nothing_saves_a_case_whose_print_alone_is_too_long():
    plan = lay_out([1], {}, [_job(1, 3.0, {1: 5.0})], NOW)
    assert plan.rescues[1] == ()


def test_job_no_printer_can_take_is_named_unplaced():
    plan = lay_out([1], {}, [_job(1, 30.0, {})], NOW)
    assert plan.unplaced == (1,) and plan.bars == ()


@pytest.fixture
def queue(lab, people):
    """Five released guides (print 30 % of 40 h lead, after print 20 %), and two waiting."""
    soon, later = late_case_queue(lab, people["manager"].user_id, "bench-offline")
    return {"soon": soon, "later": later}


def test_planning_reads_lays_out_the_real_queue_and_names_the_late_case(lab, queue):
    with read_session(lab.engine) as s:
        data = planning(s, lab)
        printer = s.exec(select(Printer).where(Printer.name == "bench-offline")).one()
    bars = {b.serial: b for b in data["plan"].bars}
    soon, later = bars[queue["soon"]["serial"]], bars[queue["later"]["serial"]]
    assert soon.printer_id == printer.id and soon.start < later.start  # EDF
    # 20 h estimate × ratio 1 (history printed exactly its estimate) + 8 h after the print.
    assert soon.end - soon.start == timedelta(hours=20)
    assert soon.ready - soon.end == timedelta(hours=8)
    rows = at_risk(data)
    assert [r["case_code"] for r in rows] == [queue["soon"]["code"]]


def test_at_risk_case_is_told_once(lab, queue):
    with read_session(lab.engine) as s:
        rows = at_risk(planning(s, lab))
    assert notifications.cases_at_risk(lab, rows) == 1
    assert notifications.cases_at_risk(lab, rows) == 0
    with read_session(lab.engine) as s:
        notes = s.exec(select(Notification).where(Notification.event == "job_at_risk")).all()
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "case.at_risk")).all()
    assert [n.subject for n in notes] == [queue["soon"]["code"]]
    assert "needed by" in notes[0].detail["reason"]
    assert len(events) == 1


def test_planning_page_for_lab_manager_and_technician_only(lab, people, queue):
    app = create_app(lab.settings, lab)
    for user in ("manager", "tech"):
        client = app.test_client()
        login(client, user)
        html = client.get("/planning/").get_data(as_text=True)
        assert f'data-case="{queue["soon"]["code"]}"' in html
        assert f'data-serial="{queue["later"]["serial"]}"' in html
        assert 'data-printer="bench-offline"' in html
    for user in ("presc", "auditor", "rad"):
        client = app.test_client()
        login(client, user)
        assert client.get("/planning/").status_code == 403


def test_the_worker_tells_each_late_case_once(lab, queue):
    from pocprint.scheduler import notify_cases_at_risk

    assert notify_cases_at_risk(lab) == 1
    assert notify_cases_at_risk(lab) == 0
    with read_session(lab.engine) as s:
        (note,) = s.exec(select(Notification).where(Notification.subject == queue["soon"]["code"]))
    assert note.detail["link"] == "/planning/"


def test_urgent_override_offered_on_the_page_saves_the_case_and_names_who_pays(lab, people):
    """One printer: C-first is needed in five days and prints 60 h; C-long in six and prints
    100 h, so in needed-by order it ends too late. Urgent, it is in time, and C-first is not."""
    uid = people["manager"].user_id
    for _ in range(5):  # after the print: 20 % of 40 h = 8 h
        past_device(lab, uid, device_type="surgical_guide", lead_h=40, printer="bench-offline")
    today = date.today()
    first = past_device(
        lab,
        uid,
        device_type="surgical_guide",
        lead_h=40,
        stop_after="sliced",
        needed_by=today + timedelta(days=5),
        estimate_h=60,
    )
    long = past_device(
        lab,
        uid,
        device_type="surgical_guide",
        lead_h=40,
        stop_after="sliced",
        needed_by=today + timedelta(days=6),
        estimate_h=100,
    )
    app = create_app(lab.settings, lab)
    client = app.test_client()
    login(client, "manager")
    html = client.get("/planning/").get_data(as_text=True)
    risk = html.split(f'data-case="{long["code"]}"', 1)[1].split("</li>\n    \n", 1)[0]
    assert "urgent override" in risk and f"makes {first['code']} late" in risk
    action = f"/board/jobs/{long['job_id']}/urgent"
    assert action in risk
    token = csrf_of(html)
    done = client.post(
        action,
        data={"csrf_token": token, "urgent": "1", "reason": "Surgery moved earlier"},
        headers={"Referer": "/planning/"},
    )
    assert done.status_code in (302, 303)
    html = client.get("/planning/").get_data(as_text=True)
    assert f'data-case="{long["code"]}"' not in html
    assert f'data-case="{first["code"]}"' in html
