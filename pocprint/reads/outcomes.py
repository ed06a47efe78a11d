"""Outcomes and the post-market record of devices: the latest clinical outcome per device
(the registry export's clinical fields), and complaints and incidents found by the device's
lot, printer and profile."""

from __future__ import annotations

from sqlmodel import Session, select

from pocprint.reads.auditor import DeviceFilter, search_devices
from pocprint.services.audit import plain
from pocprint.services.outcomes import outcome_due
from pocprint.store.models import BuildJob, Case, DeviceComplaint, DeviceOutcome, User, utcnow


def devices_awaiting_outcome(session: Session, case: Case) -> list[dict]:
    """The case's built devices, each with why its outcome cannot be asked yet (None: it
    can), for the requesting clinician's view of the case."""
    jobs = session.exec(
        select(BuildJob).where(BuildJob.case_id == case.id, BuildJob.outcome == "accepted")
    ).all()
    today = utcnow().date()
    return [{"serial": j.serial, "why_not": outcome_due(case, j, today)} for j in jobs]


def latest_outcomes(session: Session, job_ids: list[int]) -> dict[int, DeviceOutcome]:
    out: dict[int, DeviceOutcome] = {}
    if not job_ids:
        return out
    for row in session.exec(
        select(DeviceOutcome)
        .where(DeviceOutcome.build_job_id.in_(job_ids))
        .order_by(DeviceOutcome.id)
    ).all():
        out[row.build_job_id] = row  # a correction is a later row
    return out


def clinical_outcomes(session: Session, case_id: int) -> list[dict]:
    """The registry's clinical fields, one entry per device of the case with an outcome."""
    jobs = session.exec(
        select(BuildJob).where(BuildJob.case_id == case_id).order_by(BuildJob.id)
    ).all()
    latest = latest_outcomes(session, [j.id for j in jobs])
    out = []
    for job in jobs:
        row = latest.get(job.id)
        if row is None:
            continue
        out.append(
            {
                "device": job.serial,
                "used_as_intended": row.used_as_intended,
                "changed_surgical_plan": row.plan_changed,
                "fit": row.fit,
                "time_saved_minutes": row.time_saved_min,
                "reported_at": row.recorded_at,
            }
        )
    return plain(out)


def complaints_of(session: Session, job_ids: list[int]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {j: [] for j in job_ids}
    if not job_ids:
        return out
    names = {u.id: u.full_name for u in session.exec(select(User)).all()}
    for c in session.exec(
        select(DeviceComplaint)
        .where(DeviceComplaint.build_job_id.in_(job_ids))
        .order_by(DeviceComplaint.id)
    ).all():
        out[c.build_job_id].append(
            plain(
                {
                    "kind": c.kind,
                    "serious": c.serious,
                    "description": c.description,
                    "reported_by": names.get(c.reported_by),
                    "reported_at": c.reported_at,
                }
            )
        )
    return out


def post_market(session: Session, f: DeviceFilter) -> list[dict]:
    """Devices matching the filter (lot, printer, profile...) that have a complaint or an
    incident, each with its complaints and its latest outcome."""
    devices = search_devices(session, f)
    serials = [d["serial"] for d in devices]
    ids = {
        j.serial: j.id
        for j in session.exec(select(BuildJob).where(BuildJob.serial.in_(serials or [""]))).all()
    }
    complaints = complaints_of(session, list(ids.values()))
    outcomes = latest_outcomes(session, list(ids.values()))
    out = []
    for d in devices:
        job_id = ids[d["serial"]]
        if not complaints[job_id]:
            continue
        outcome = outcomes.get(job_id)
        out.append(
            {
                **{k: d[k] for k in ("serial", "case", "device_type", "printer", "lot", "profile")},
                "complaints": complaints[job_id],
                "outcome_fit": outcome.fit if outcome else None,
            }
        )
    return out
