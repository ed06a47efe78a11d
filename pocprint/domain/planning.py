"""Capacity planning: the queue laid onto the printers, and the cases it makes late.

The lay-out follows the dispatcher's own policy (urgent first, then earliest needed-by date,
then oldest: domain/dispatch.py's queue order): each job takes, of the printers able to print
it, the one that frees up first, for the time predicted on that printer (the slicer's
estimate times that printer's real-over-estimate ratio). A job's predicted ready time is the
end of its print plus the post-processing, QA and release time past cases took. A job whose
ready time passes its deadline is at risk; what would save it is tried, one change at a time:
waiting for another printer (a faster one), or an urgent override (first in the queue).
Pure: reads/planning.py gathers the facts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta


@dataclass(frozen=True)
class PlanJob:
    id: int
    serial: str
    case_id: int
    case_code: str
    device_type: str
    needed_by: date
    deadline: datetime  # the start of the needed-by day
    created_at: datetime
    hours: Mapping[int, float]  # printer id -> predicted print hours (only printers able)
    after_print_h: float  # post-processing, QA and release (median of past cases)
    urgent: bool = False


@dataclass(frozen=True)
class Bar:
    """One job on one printer's timeline."""

    job_id: int
    serial: str
    case_code: str
    printer_id: int
    start: datetime
    end: datetime
    ready: datetime
    at_risk: bool


@dataclass(frozen=True)
class Rescue:
    kind: str  # another_printer | urgent_override
    printer_id: int
    ready: datetime
    late_instead: tuple[str, ...] = ()  # case codes the change would make late

    def words(self, printer_names: Mapping[int, str]) -> str:
        where = printer_names.get(self.printer_id, str(self.printer_id))
        if self.kind == "another_printer":
            text = f"print on {where} instead"
        else:
            text = f"urgent override (first in the queue, on {where})"
        tail = f"; makes {', '.join(self.late_instead)} late" if self.late_instead else ""
        return f"{text}: ready {self.ready:%a %d %b %H:%M}{tail}"


@dataclass(frozen=True)
class Plan:
    bars: tuple[Bar, ...]
    unplaced: tuple[int, ...]  # jobs no printer can take
    rescues: Mapping[int, tuple[Rescue, ...]]

    def at_risk(self) -> list[Bar]:
        return [b for b in self.bars if b.at_risk]

    def lanes(self) -> dict[int, list[Bar]]:
        out: dict[int, list[Bar]] = {}
        for bar in self.bars:
            out.setdefault(bar.printer_id, []).append(bar)
        return out


def queue_key(job: PlanJob) -> tuple:
    return (not job.urgent, job.needed_by, job.created_at, job.id)


def _lay(
    printers: Sequence[int],
    busy_until: Mapping[int, datetime],
    jobs: Sequence[PlanJob],
    now: datetime,
) -> tuple[list[Bar], list[int]]:
    free = {p: max(now, busy_until.get(p, now)) for p in printers}
    bars, unplaced = [], []
    for job in sorted(jobs, key=queue_key):
        able = [p for p in printers if p in job.hours]
        if not able:
            unplaced.append(job.id)
            continue
        printer = min(able, key=lambda p: (free[p], p))
        start = free[printer]
        end = start + timedelta(hours=job.hours[printer])
        free[printer] = end
        ready = end + timedelta(hours=job.after_print_h)
        bars.append(
            Bar(job.id, job.serial, job.case_code, printer, start, end, ready, ready > job.deadline)
        )
    return bars, unplaced


def _late(bars: list[Bar], except_job: int) -> set[str]:
    return {b.case_code for b in bars if b.at_risk and b.job_id != except_job}


def _rescues(
    printers: Sequence[int],
    busy_until: Mapping[int, datetime],
    jobs: Sequence[PlanJob],
    now: datetime,
    bar: Bar,
    late_before: set[str],
) -> tuple[Rescue, ...]:
    job = next(j for j in jobs if j.id == bar.job_id)
    others = [j for j in jobs if j.id != job.id]
    out = []
    for printer in sorted(job.hours):
        if printer == bar.printer_id:
            continue
        pinned = replace(job, hours={printer: job.hours[printer]})
        bars, _ = _lay(printers, busy_until, [*others, pinned], now)
        mine = next(b for b in bars if b.job_id == job.id)
        if not mine.at_risk:
            newly = sorted(_late(bars, job.id) - late_before)
            out.append(Rescue("another_printer", printer, mine.ready, tuple(newly)))
    if not job.urgent:
        bars, _ = _lay(printers, busy_until, [*others, replace(job, urgent=True)], now)
        mine = next(b for b in bars if b.job_id == job.id)
        if not mine.at_risk:
            newly = sorted(_late(bars, job.id) - late_before)
            out.append(Rescue("urgent_override", mine.printer_id, mine.ready, tuple(newly)))
    return tuple(out)


def lay_out(
    printers: Sequence[int],
    busy_until: Mapping[int, datetime],
    jobs: Sequence[PlanJob],
    now: datetime,
) -> Plan:
    """The queue laid onto the printers, at-risk jobs marked, and what would save each."""
    bars, unplaced = _lay(printers, busy_until, jobs, now)
    late_before = {b.case_code for b in bars if b.at_risk}
    rescues = {
        bar.job_id: _rescues(printers, busy_until, jobs, now, bar, late_before)
        for bar in bars
        if bar.at_risk
    }
    return Plan(tuple(bars), tuple(unplaced), rescues)
