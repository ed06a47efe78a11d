"""What each step of the lab's work really took, read from the timestamps the workflow leaves
(order, review decision, repair, design approval, slicing, print start and end, release
signature), per device with its device type, printer and material; and the lead-time
forecast of a case or of an order not yet placed (domain/lead_time.py judges)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from pocprint.domain.lead_time import (
    DEFAULT_MEDIAN_H,
    DEFAULT_P90_H,
    MILESTONES,
    MIN_CASES,
    Forecast,
    forecast,
    hours_to_release,
    quantile,
    reached,
    step_hours,
)
from pocprint.domain.times import as_datetime
from pocprint.store.models import (
    AppropriatenessReview,
    Approval,
    BuildJob,
    Case,
    Part,
    Printer,
    Signature,
    utcnow,
)

RELEASED = "released device"  # services/release.py's signature meaning
DEVICE = "device"


@dataclass(frozen=True)
class DeviceHistory:
    """One built device and when each milestone of its case happened."""

    serial: str
    case_id: int
    device_type: str
    printer: str | None
    material: str | None
    needed_by: object  # date
    estimated_print_h: float | None
    milestones: dict[str, datetime | None]

    @property
    def steps(self) -> dict[str, float]:
        return step_hours(self.milestones)

    @property
    def print_ratio(self) -> float | None:
        """Real print time over the slicer's estimate."""
        hours = self.steps.get("finished")
        if hours is None or not self.estimated_print_h:
            return None
        return hours / self.estimated_print_h


def _approved_reviews(session: Session, case_ids: list[int]) -> dict[int, datetime]:
    out: dict[int, datetime] = {}
    rows = session.exec(
        select(AppropriatenessReview.case_id, AppropriatenessReview.created_at)
        .where(AppropriatenessReview.case_id.in_(case_ids))
        .where(AppropriatenessReview.decision == "approve")
        .order_by(AppropriatenessReview.id)
    ).all()
    for case_id, at in rows:
        out[case_id] = as_datetime(at)  # the latest approval counts (a re-review replaces)
    return out


def _releases(session: Session, serials: list[str]) -> dict[str, datetime]:
    out: dict[str, datetime] = {}
    withdrawn = set(
        session.exec(select(Signature.withdraws_id).where(Signature.withdraws_id.is_not(None)))
    )
    rows = session.exec(
        select(Signature.id, Signature.entity_id, Signature.signed_at)
        .where(Signature.meaning == RELEASED, Signature.entity == DEVICE)
        .where(Signature.entity_id.in_(serials))
        .order_by(Signature.id)
    ).all()
    for sig_id, serial, at in rows:
        if sig_id not in withdrawn:
            out[serial] = as_datetime(at)
    return out


def _histories(session: Session, jobs: list[BuildJob]) -> list[DeviceHistory]:
    if not jobs:
        return []
    case_ids = sorted({j.case_id for j in jobs})
    cases = {c.id: c for c in session.exec(select(Case).where(Case.id.in_(case_ids))).all()}
    parts = {
        p.id: p
        for p in session.exec(select(Part).where(Part.id.in_([j.part_id for j in jobs]))).all()
    }
    approvals = {
        a.id: a
        for a in session.exec(
            select(Approval).where(Approval.id.in_([j.approval_id for j in jobs]))
        ).all()
    }
    printers = {p.id: p.name for p in session.exec(select(Printer)).all()}
    reviews = _approved_reviews(session, case_ids)
    releases = _releases(session, [j.serial for j in jobs])
    out = []
    for job in jobs:
        case, part, approval = cases[job.case_id], parts[job.part_id], approvals[job.approval_id]
        milestones = {
            "ordered": as_datetime(case.created_at),
            "reviewed": reviews.get(case.id),
            "repaired": as_datetime(part.processed_at),
            "approved": as_datetime(approval.signed_at),
            "sliced": as_datetime(job.sliced_at),
            "started": as_datetime(job.started_at),
            "finished": as_datetime(job.finished_at),
            "released": releases.get(job.serial),
        }
        out.append(
            DeviceHistory(
                serial=job.serial,
                case_id=case.id,
                device_type=case.device_type,
                printer=printers.get(job.printer_id),
                material=job.material or case.material,
                needed_by=case.needed_by,
                estimated_print_h=(job.estimated_time_s or 0) / 3600.0 or None,
                milestones=milestones,
            )
        )
    return out


def released_devices(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> list[DeviceHistory]:
    """Every released device (released within [since, until) when given), oldest first."""
    serials = session.exec(
        select(Signature.entity_id).where(
            Signature.meaning == RELEASED,
            Signature.entity == DEVICE,
            Signature.withdraws_id.is_(None),
        )
    ).all()
    jobs = session.exec(select(BuildJob).where(BuildJob.serial.in_(sorted(set(serials))))).all()
    rows = [h for h in _histories(session, list(jobs)) if h.milestones["released"] is not None]
    if since is not None:
        rows = [h for h in rows if h.milestones["released"] >= as_datetime(since)]
    if until is not None:
        rows = [h for h in rows if h.milestones["released"] < as_datetime(until)]
    return sorted(rows, key=lambda h: h.milestones["released"])


def step_durations(rows: list[DeviceHistory], by: tuple[str, ...] = ("device_type",)) -> list:
    """Median and 90th percentile hours of each step, grouped by the fields named in `by`
    (any of device_type, printer, material): rows of {group..., step, cases, median_h, p90_h}."""
    groups: dict[tuple, dict[str, list[float]]] = {}
    for h in rows:
        key = tuple(getattr(h, name) for name in by)
        for step, hours in h.steps.items():
            groups.setdefault(key, {}).setdefault(step, []).append(hours)
    out = []
    for key in sorted(groups, key=lambda k: tuple(str(v) for v in k)):
        for step, values in groups[key].items():
            out.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "step": step,
                    "cases": len(values),
                    "median_h": quantile(values, 0.5),
                    "p90_h": quantile(values, 0.9),
                }
            )
    return out


def print_ratios(rows: list[DeviceHistory]) -> dict[tuple[str | None, str | None], float]:
    """Median of real print time over the slicer's estimate, per (printer, material)."""
    groups: dict[tuple, list[float]] = {}
    for h in rows:
        if h.print_ratio is not None:
            groups.setdefault((h.printer, h.material), []).append(h.print_ratio)
    return {k: quantile(v, 0.5) for k, v in groups.items()}


def _settings_of(lab) -> dict:
    planning = (getattr(lab.settings, "planning", None) or {}) if lab is not None else {}
    return {
        "min_cases": int(planning.get("min_cases", MIN_CASES)),
        "default_median_h": float(planning.get("default_median_h", DEFAULT_MEDIAN_H)),
        "default_p90_h": float(planning.get("default_p90_h", DEFAULT_P90_H)),
    }


def forecast_from(
    rows: list[DeviceHistory], kind: str, since: str = "ordered", lab=None
) -> Forecast:
    """The forecast for a device of `kind` that has just reached `since`."""
    same, every = [], []
    for h in rows:
        hours = hours_to_release(h.milestones, since)
        if hours is None:
            continue
        every.append(hours)
        if h.device_type == kind:
            same.append(hours)
    return forecast(kind, same, every, since=since, **_settings_of(lab))


def order_forecast(session: Session, kind: str, lab=None, now: datetime | None = None) -> dict:
    """For the order form, before the order is placed: counted from now."""
    return order_forecasts(session, [kind], lab, now)[kind]


def order_forecasts(
    session: Session, kinds: list[str], lab=None, now: datetime | None = None
) -> dict[str, dict]:
    """The same for several device types, reading the history once."""
    now = now or utcnow()
    history = released_devices(session)
    out = {}
    for kind in kinds:
        result = forecast_from(history, kind, "ordered", lab)
        median, p90 = result.ready(now)
        out[kind] = {"forecast": result, "ready_median": median, "ready_p90": p90}
    return out


def case_forecast(session: Session, case: Case, lab=None, now: datetime | None = None) -> dict:
    """For a case in progress: from the last milestone its least advanced device reached.
    None-valued when every device of the case is released."""
    now = now or utcnow()
    jobs = session.exec(
        select(BuildJob).where(BuildJob.case_id == case.id).order_by(BuildJob.id)
    ).all()
    latest = {j.part_id: j for j in jobs}
    stones: dict[str, datetime | None] = {"ordered": as_datetime(case.created_at)}
    reviews = _approved_reviews(session, [case.id])
    stones["reviewed"] = reviews.get(case.id)
    if latest:
        histories = _histories(session, list(latest.values()))
        if all(h.milestones["released"] is not None for h in histories):
            return {"forecast": None, "ready_median": None, "ready_p90": None, "since": None}
        least = min(histories, key=lambda h: _order_of(reached(h.milestones)))
        stones = least.milestones
    since = reached(stones)
    result = forecast_from(released_devices(session), case.device_type, since, lab)
    median, p90 = result.ready(stones[since], now)
    return {"forecast": result, "ready_median": median, "ready_p90": p90, "since": since}


def _order_of(milestone: str) -> int:
    return MILESTONES.index(milestone)
