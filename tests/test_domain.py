"""Pure rules: state machines, dispatch policy, placement, roles, order validation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from pocprint.domain.cases import case_problems
from pocprint.domain.dispatch import JobView, PrinterView, assign, queue_order, refusals
from pocprint.domain.placement import BuildVolume, fit_problems
from pocprint.domain.roles import Permission, Role, may, parse_roles
from pocprint.domain.states import InvalidTransition, JobState, advance_job

TODAY = date(2026, 11, 22)
BIG = BuildVolume(250, 210, 210)


def printer(pid=1, **kw):
    values = dict(
        id=pid,
        name=f"p{pid}",
        idle=True,
        plate_clear=True,
        profiles=frozenset({"pla"}),
        volume=BIG,
        calibration_due=TODAY + timedelta(days=30),
    )
    values.update(kw)
    return PrinterView(**values)


def job(jid, days, profile="pla", extents=(50, 50, 50), created=0):
    return JobView(
        jid,
        profile,
        TODAY + timedelta(days=days),
        datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=created),
        extents,
    )


def test_queue_is_earliest_deadline_first_then_oldest():
    jobs = [job(1, 9, created=0), job(2, 3, created=5), job(3, 3, created=1)]
    assert [j.id for j in queue_order(jobs)] == [3, 2, 1]


def test_assign_gives_each_printer_the_most_urgent_job_it_can_take():
    small = printer(2, volume=BuildVolume(120, 120, 120))
    jobs = [job(1, 5, extents=(200, 100, 50)), job(2, 1), job(3, 2)]
    pairs = assign([printer(1), small], jobs, TODAY)
    assert [(j.id, p.id) for j, p in pairs] == [(2, 1), (3, 2)]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"idle": False}, "not idle"),
        ({"plate_clear": False}, "plate not confirmed clear"),
        ({"calibration_due": TODAY - timedelta(days=1)}, "calibration was due"),
        ({"profiles": frozenset({"petg"})}, "not validated"),
        ({"enabled": False}, "disabled"),
    ],
)
def test_printer_refuses_with_the_reason(change, reason):
    found = refusals(printer(**change), job(1, 3), TODAY)
    assert any(reason in r for r in found), found


def test_no_job_goes_to_a_printer_without_plate_clear():
    assert assign([printer(plate_clear=False)], [job(1, 1)], TODAY) == []


def test_fit_checks_height_as_well_as_bed():
    assert fit_problems((100, 100, 100), BIG) == []
    tall = fit_problems((100, 100, 300), BIG)
    assert len(tall) == 1 and "too tall" in tall[0] and "300.0 mm" in tall[0]
    wide = fit_problems((260, 100, 10), BIG)
    assert "too wide" in wide[0]


def test_job_state_machine_refuses_skipping_steps():
    assert advance_job(JobState.READY, JobState.DISPATCHING) == JobState.DISPATCHING
    with pytest.raises(InvalidTransition):
        advance_job(JobState.SLICE_QUEUED, JobState.PRINTING)
    with pytest.raises(InvalidTransition):
        advance_job(JobState.INTERRUPTED, JobState.COMPLETED)


def test_roles_grant_only_their_actions():
    assert may(frozenset({Role.RADIOLOGIST}), Permission.APPROVE_DESIGN)
    assert not may(frozenset({Role.TECHNICIAN}), Permission.APPROVE_DESIGN)
    assert not may(frozenset({Role.AUDITOR}), Permission.CREATE_CASE)
    assert may(parse_roles("technician,radiologist"), Permission.APPROVE_DESIGN)
    with pytest.raises(ValueError):
        parse_roles("superuser")


def test_case_needs_a_pseudonymous_code_and_a_future_date():
    assert case_problems("PX-1", "x", "anatomical_model", TODAY, TODAY) == []
    problems = case_problems("Jane Doe", "", "implant", TODAY - timedelta(days=1), TODAY)
    assert len(problems) == 4
    assert "pseudonymous" in problems[0]


def test_an_order_must_name_a_material_the_lab_validated_for_its_device_type():
    from pocprint.domain.cases import material_problems

    assert material_problems("", "surgical_guide", ("PETG",)) == [
        ("material", "choose the material the device is printed in")
    ]
    assert material_problems("pla", "surgical_guide", ("PETG",)) == [
        ("material", "pla is not validated for surgical guides in this lab (validated: PETG)")
    ]
    assert material_problems("petg", "surgical_guide", ("PETG",)) == []
