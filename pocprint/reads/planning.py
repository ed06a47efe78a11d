"""The facts the planning lay-out (domain/planning.py) judges: the printers dispatch would
use, when each is free, the waiting jobs with their predicted print time on each printer able
to print them, and the time past cases took after the print."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from pocprint.domain.dispatch import choose_slice
from pocprint.domain.lead_time import quantile
from pocprint.domain.planning import Plan, PlanJob, lay_out
from pocprint.domain.times import as_datetime
from pocprint.reads.board import QUEUE_STATES, busy_until, fleet_views
from pocprint.reads.history import forecast_from, print_ratios, released_devices
from pocprint.services.dispatch import job_views
from pocprint.store.models import BuildJob, Case, JobSlice, Printer, utcnow

DEFAULT_PRINT_H = 4.0  # a job not yet sliced, with no history of its kind to go by


def _print_hours_by_kind(rows) -> dict[str, float]:
    """Median real print hours per device type, and over all kinds under ''."""
    kinds: dict[str, list[float]] = {}
    for h in rows:
        hours = h.steps.get("finished")
        if hours is not None:
            kinds.setdefault(h.device_type, []).append(hours)
            kinds.setdefault("", []).append(hours)
    return {k: quantile(v, 0.5) for k, v in kinds.items()}


def planning(session: Session, lab, now: datetime | None = None) -> dict:
    """The plan, with names for display: {plan, printers, jobs, ratios}."""
    now = now or utcnow()
    printer_rows = session.exec(select(Printer).where(Printer.enabled).order_by(Printer.id)).all()
    fleet = fleet_views(session, lab, list(printer_rows), now)
    usable = [
        v for v in fleet.values() if v.calibration_due is None or v.calibration_due >= now.date()
    ]
    busy = busy_until(session, list(printer_rows), now)
    history = released_devices(session)
    ratios = print_ratios(history)
    print_h = _print_hours_by_kind(history)
    views = {v.id: v for v in job_views(session, tuple(QUEUE_STATES))}
    estimates: dict[tuple[int, str], int] = {}
    for job_id, profile, seconds in session.exec(
        select(JobSlice.job_id, JobSlice.profile_id, JobSlice.estimated_time_s).where(
            JobSlice.job_id.in_(list(views))
        )
    ).all():
        if seconds:
            estimates[(job_id, profile)] = seconds
    rows = session.exec(
        select(BuildJob, Case)
        .join(Case, Case.id == BuildJob.case_id)
        .where(BuildJob.id.in_(list(views)))
    ).all()
    after: dict[str, float] = {}
    jobs = []
    for job, case in rows:
        view = views[job.id]
        if case.device_type not in after:
            after[case.device_type] = forecast_from(
                history, case.device_type, "finished", lab
            ).median_h
        hours = {}
        for printer in usable:
            option = choose_slice(printer, view)
            if option is None:
                continue
            seconds = estimates.get((job.id, option.profile_id)) or job.estimated_time_s
            if seconds:
                ratio = ratios.get((printer.name, case.material or printer.material), 1.0)
                hours[printer.id] = seconds / 3600.0 * ratio
            else:
                hours[printer.id] = print_h.get(case.device_type, print_h.get("", DEFAULT_PRINT_H))
        deadline = datetime.combine(case.needed_by, datetime.min.time(), tzinfo=now.tzinfo)
        jobs.append(
            PlanJob(
                id=job.id,
                serial=job.serial,
                case_id=case.id,
                case_code=case.code,
                device_type=case.device_type,
                needed_by=case.needed_by,
                deadline=deadline,
                created_at=as_datetime(job.created_at),
                hours=hours,
                after_print_h=after[case.device_type],
                urgent=job.urgent,
            )
        )
    plan = lay_out([p.id for p in usable], busy, jobs, now)
    return {
        "plan": plan,
        "now": now,
        "printers": {p.id: p.name for p in usable},
        "busy_until": {p: busy.get(p, now) for p in (v.id for v in usable)},
        "jobs": {j.id: j for j in jobs},
        "horizon": _horizon(plan, now),
    }


def _horizon(plan: Plan, now: datetime) -> datetime:
    """The end of the timeline shown: the last print, at least a day ahead."""
    ends = [b.end for b in plan.bars]
    return max([now + timedelta(days=1), *ends])


def at_risk(data: dict) -> list[dict]:
    """The at-risk cases of a plan, with what would save each, in words."""
    plan, names = data["plan"], data["printers"]
    out = []
    for bar in plan.at_risk():
        job = data["jobs"][bar.job_id]
        found = plan.rescues.get(bar.job_id, ())
        rescues = [r.words(names) for r in found]
        out.append(
            {
                "job_id": bar.job_id,
                "serial": bar.serial,
                "case_id": job.case_id,
                "case_code": job.case_code,
                "needed_by": job.needed_by,
                "ready": bar.ready,
                "printer": names.get(bar.printer_id),
                "rescues": rescues,
                "rescue": "; or ".join(rescues) if rescues else None,
                "urgent_saves": any(r.kind == "urgent_override" for r in found),
            }
        )
    return out
