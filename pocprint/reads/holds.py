"""Why a job is held, in words, for the board and the case page; and what a plate clear will
start. Read-only: the clinical gate's judging step (`gate.clearance_problems`, which writes
no audit event) and the dispatch domain's refusals, on the same views dispatch uses, so the
page says exactly what dispatch decides.

A job is *held* when something must change before it can print: a gate step is missing or
void, or no printer could take it even with a clear plate (material, validation, size,
calibration, lot). Waiting for a free printer or a plate clear is not a hold.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlmodel import Session, select

from pocprint.domain.dispatch import JobView, PrinterView, choose_slice, plan, refusals
from pocprint.domain.states import JobState
from pocprint.services import gate
from pocprint.services.dispatch import job_views, printer_views
from pocprint.store.models import BuildJob, Printer, utcnow

GATE_STATES = (JobState.SLICE_QUEUED, JobState.READY)


def _standing(printer: PrinterView, job: JobView, today) -> list[str]:
    """Refusals that a plate clear or the end of the current print would not lift."""
    free = dataclasses.replace(printer, idle=True, plate_clear=True)
    return refusals(free, job, today)


class Holds:
    """Hold reasons of waiting jobs, computed once per page."""

    def __init__(self, session: Session, lab, now: datetime | None = None):
        self.session = session
        self.lab = lab
        self.now = now or utcnow()
        rows = session.exec(select(Printer).where(Printer.enabled).order_by(Printer.name)).all()
        self.printers = printer_views(lab, session, rows, self.now) if lab is not None else []
        self.views = {v.id: v for v in job_views(session, (JobState.READY,))}

    def gate_problems(self, job: BuildJob) -> list[str]:
        if job.state not in GATE_STATES:
            return []
        step = "slicing" if job.state == JobState.SLICE_QUEUED else "dispatch"
        return gate.clearance_problems(self.session, job, step)

    def of(self, job: BuildJob) -> list[str]:
        """Every reason this job cannot print until something changes (empty: not held)."""
        reasons = [f"clinical gate: {p}" for p in self.gate_problems(job)]
        if job.retry_at is not None and job.retry_at > self.now and job.error:
            wait = int((job.retry_at - self.now).total_seconds()) + 1
            reasons.append(f"tried again in {wait} s, after: {job.error}")
        view = self.views.get(job.id)
        if view is None or reasons:
            return reasons
        today = self.now.date()
        if self.lab is None:  # no fleet known here: only the gate judges
            return []
        if not self.printers:
            return ["no printer is defined or enabled"]
        if any(not _standing(p, view, today) for p in self.printers):
            return []
        return [f"{p.name}: {'; '.join(_standing(p, view, today))}" for p in self.printers]

    def for_printer(self, printer_id: int) -> dict:
        """What a clear plate on this printer starts next: {"serial": ...} for the job that
        dispatch would send, or {"reasons": [...]} why nothing can start on it."""
        printer = next((p for p in self.printers if p.id == printer_id), None)
        if printer is None:
            return {"reasons": ["this printer is not in service"]}
        waiting = [(self.session.get(BuildJob, view.id), view) for view in self.views.values()]
        if not waiting:
            return {"reasons": ["no job is waiting for a printer"]}
        cleared = [
            view
            for job, view in waiting
            if not self.gate_problems(job) and (view.retry_at is None or view.retry_at <= self.now)
        ]
        free = dataclasses.replace(printer, plate_clear=True)
        chosen = plan([free], cleared, self.now.date())
        if chosen:
            return {"serial": self.session.get(BuildJob, chosen[0].job.id).serial}
        reasons = []
        for job, view in waiting:
            problems = self.gate_problems(job)
            if problems:
                reasons.append(f"{job.serial} is held by the clinical gate: {'; '.join(problems)}")
            elif choose_slice(free, view) is None or refusals(free, view, self.now.date()):
                why = refusals(free, view, self.now.date())
                reasons.append(f"{job.serial}: {'; '.join(why) or 'cannot go to this printer'}")
        return {"reasons": reasons or ["no waiting job can go to this printer"]}


def plate_clear_message(session: Session, lab, printer_id: int) -> tuple[str, str]:
    """(category, text) for the flash after a plate clear: never promises a start that
    dispatch will not make."""
    printer = session.get(Printer, printer_id)
    name = printer.name if printer else "the printer"
    outcome = Holds(session, lab).for_printer(printer_id)
    if "serial" in outcome:
        return "ok", f"Plate confirmed clear. Job {outcome['serial']} starts on {name} next."
    return (
        "warn",
        f"Plate confirmed clear, but no job can start on {name} now: "
        + "; ".join(outcome["reasons"]),
    )
