"""After the device is used: the requesting clinician's outcome, and complaints and incidents
recorded against a device (the post-market record, DOMAIN.md section 1 step 15).

The outcome is asked of the clinician who ordered the case, and only of them, once the
procedure date has come; it feeds the registry export's clinical fields. Complaints and
incidents may be reported by any clinical or lab role and are found again by the device's lot,
printer and profile (reads/outcomes.py).
"""

from __future__ import annotations

from datetime import date

from sqlmodel import select

from pocprint.domain.roles import Permission, may
from pocprint.domain.states import JobState
from pocprint.services import audit
from pocprint.services.actors import Actor
from pocprint.services.errors import Forbidden, Invalid, NotFound, WrongState
from pocprint.services.lab import Lab
from pocprint.store.db import unit_of_work
from pocprint.store.models import BuildJob, Case, DeviceComplaint, DeviceOutcome, utcnow

FITS = ("good", "acceptable", "poor", "not_applicable")
KINDS = ("complaint", "incident")
MAX_TIME_SAVED_MIN = 24 * 60


def _device(session, serial: str) -> tuple[BuildJob, Case]:
    job = session.exec(
        select(BuildJob).where(BuildJob.serial == (serial or "").strip()[:32])
    ).first()
    if job is None:
        raise NotFound(f"no device {serial!r}")
    return job, session.get(Case, job.case_id)


def outcome_due(case: Case, job: BuildJob, today: date) -> str | None:
    """Why the outcome cannot be asked yet (None: it can)."""
    if job.state != JobState.COMPLETED or job.outcome != "accepted":
        return f"device {job.serial} was not built and accepted"
    if case.procedure_date is None:
        return f"case {case.code} has no procedure date: the outcome is asked after it"
    if case.procedure_date > today:
        return f"the procedure is on {case.procedure_date.isoformat()}: the outcome comes after"
    return None


def may_record_outcome(actor: Actor, case: Case) -> bool:
    return may(actor.roles, Permission.RECORD_CLINICAL_OUTCOME) and actor.user_id == case.created_by


def _problems(fit: str, time_saved_min, comment: str) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    if fit not in FITS:
        problems["fit"] = ["choose the fit: " + ", ".join(FITS)]
    if time_saved_min is not None and not (
        isinstance(time_saved_min, int)
        and -MAX_TIME_SAVED_MIN <= time_saved_min <= MAX_TIME_SAVED_MIN
    ):
        problems["time_saved_min"] = ["time saved must be whole minutes, at most a day either way"]
    if len(comment or "") > 2000:
        problems["comment"] = ["the comment is longer than 2000 characters"]
    return problems


def record_outcome(
    lab: Lab,
    actor: Actor,
    serial: str,
    *,
    used_as_intended: bool | None,
    plan_changed: bool | None,
    fit: str,
    time_saved_min: int | None = None,
    comment: str = "",
) -> int:
    """Store the requesting clinician's outcome of a device; returns its id."""
    actor.require(Permission.RECORD_CLINICAL_OUTCOME)
    problems = _problems(fit, time_saved_min, comment)
    if used_as_intended is None:
        problems["used_as_intended"] = ["say whether the device was used as intended"]
    if plan_changed is None:
        problems["plan_changed"] = ["say whether the device changed the plan"]
    with unit_of_work(lab.engine) as session:
        job, case = _device(session, serial)
        if not may_record_outcome(actor, case):
            raise Forbidden("only the clinician who requested the case records its outcome")
        why_not = outcome_due(case, job, utcnow().date())
        if why_not:
            raise WrongState(why_not)
        if problems:
            raise Invalid("; ".join(m for ms in problems.values() for m in ms), fields=problems)
        row = DeviceOutcome(
            build_job_id=job.id,
            used_as_intended=bool(used_as_intended),
            plan_changed=bool(plan_changed),
            fit=fit,
            time_saved_min=time_saved_min,
            comment=(comment or "").strip(),
            recorded_by=actor.user_id,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor,
            "device.outcome",
            "device",
            job.serial,
            after={
                "used_as_intended": row.used_as_intended,
                "plan_changed": row.plan_changed,
                "fit": fit,
                "time_saved_min": time_saved_min,
            },
        )
        return row.id


def report_complaint(
    lab: Lab, actor: Actor, serial: str, *, kind: str, description: str, serious: bool = False
) -> int:
    """Record a complaint or an incident against a device; returns its id."""
    actor.require(Permission.REPORT_COMPLAINT)
    problems: dict[str, list[str]] = {}
    if kind not in KINDS:
        problems["kind"] = ["choose complaint or incident"]
    text = (description or "").strip()
    if not text:
        problems["description"] = ["describe what happened"]
    elif len(text) > 4000:
        problems["description"] = ["the description is longer than 4000 characters"]
    if serious and kind != "incident":
        problems["serious"] = ["only an incident can be serious"]
    with unit_of_work(lab.engine) as session:
        job, _case = _device(session, serial)
        if problems:
            raise Invalid("; ".join(m for ms in problems.values() for m in ms), fields=problems)
        row = DeviceComplaint(
            build_job_id=job.id,
            kind=kind,
            serious=bool(serious),
            description=text,
            reported_by=actor.user_id,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor,
            f"device.{kind}",
            "device",
            job.serial,
            after={"kind": kind, "serious": bool(serious)},
            reason=text,
        )
        return row.id
