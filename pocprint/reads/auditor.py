"""Auditor queries (read-only): device search and recall, event search, exports.

Recall questions are searches: "every device built with lot X" is `lot=X`, "on printer Y
between these dates" is `printer=Y, date_from, date_to`, "with profile hash Z" is
`profile=Z`. The lot of a build is the lot loaded on its printer when the build started
(from the append-only loading history).
"""

from __future__ import annotations

import bisect
import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlmodel import Session, or_, select

from pocprint.services.audit import plain
from pocprint.store.models import (
    AuditEvent,
    BuildJob,
    Case,
    Delivery,
    LotLoading,
    MaterialLot,
    Part,
    Printer,
    Signature,
)

RELEASED = "released device"
MAX_ROWS = 5000


@dataclass(frozen=True)
class DeviceFilter:
    date_from: date | None = None  # build start (or order time before printing), UTC days
    date_to: date | None = None
    case: str = ""  # case code
    device: str = ""  # device serial
    printer: str = ""  # printer name or serial
    lot: str = ""  # material lot number
    operator: str = ""  # user name of anyone who acted on the device, its part or its case
    profile: str = ""  # profile id, or (a prefix of) its SHA-256

    def is_empty(self) -> bool:
        return not any(getattr(self, k) for k in self.__dataclass_fields__)


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def lots_at_build(session: Session, jobs: list[BuildJob]) -> dict[int, MaterialLot | None]:
    """The lot each job was printed from: the one loaded on its printer when it started."""
    printer_ids = {j.printer_id for j in jobs if j.printer_id}
    if not printer_ids:
        return {}
    history: dict[int, list[LotLoading]] = {}
    for row in session.exec(
        select(LotLoading)
        .where(LotLoading.printer_id.in_(printer_ids))
        .order_by(LotLoading.loaded_at, LotLoading.id)
    ).all():
        history.setdefault(row.printer_id, []).append(row)
    lots = {lot.id: lot for lot in session.exec(select(MaterialLot)).all()}
    out: dict[int, MaterialLot | None] = {}
    for job in jobs:
        when = job.started_at or job.dispatched_at
        loadings = history.get(job.printer_id or -1, [])
        if when is None or not loadings:
            out[job.id] = None
            continue
        times = [_aware(r.loaded_at) for r in loadings]
        i = bisect.bisect_right(times, _aware(when)) - 1
        out[job.id] = lots.get(loadings[i].lot_id) if i >= 0 and loadings[i].lot_id else None
    return out


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _operators(session: Session, jobs: list[BuildJob], cases: dict[int, Case]) -> dict[int, set]:
    """User names who acted on each job, its part or its case (from the audit trail)."""
    serials = {j.serial: j.id for j in jobs}
    parts = {}
    for j in jobs:
        parts.setdefault(str(j.part_id), []).append(j.id)
    codes = {}
    for j in jobs:
        codes.setdefault(cases[j.case_id].code, []).append(j.id)
    out: dict[int, set] = {j.id: set() for j in jobs}
    if not jobs:
        return out
    rows = session.exec(
        select(AuditEvent.actor, AuditEvent.entity, AuditEvent.entity_id).where(
            or_(
                AuditEvent.entity.in_(["job", "device"]) & AuditEvent.entity_id.in_(list(serials)),
                (AuditEvent.entity == "part") & AuditEvent.entity_id.in_(list(parts)),
                (AuditEvent.entity == "case") & AuditEvent.entity_id.in_(list(codes)),
            )
        )
    ).all()
    for actor, entity, entity_id in rows:
        if entity in ("job", "device"):
            targets = [serials[entity_id]]
        elif entity == "part":
            targets = parts[entity_id]
        else:
            targets = codes[entity_id]
        for job_id in targets:
            out[job_id].add(actor)
    return out


def search_devices(session: Session, f: DeviceFilter) -> list[dict]:
    query = select(BuildJob, Case).join(Case, Case.id == BuildJob.case_id)
    if f.case:
        query = query.where(Case.code == f.case.strip())
    if f.device:
        query = query.where(BuildJob.serial == f.device.strip())
    if f.profile:
        p = f.profile.strip()
        query = query.where(
            or_(BuildJob.profile_id == p, BuildJob.profile_sha256.startswith(p.lower()))
        )
    if f.printer:
        printer_ids = session.exec(
            select(Printer.id).where(
                or_(Printer.name == f.printer.strip(), Printer.serial == f.printer.strip())
            )
        ).all()
        query = query.where(BuildJob.printer_id.in_(printer_ids or [-1]))
    if f.date_from:
        query = query.where(
            or_(
                BuildJob.started_at >= _start_of(f.date_from),
                BuildJob.started_at.is_(None) & (BuildJob.created_at >= _start_of(f.date_from)),
            )
        )
    if f.date_to:
        end = _start_of(f.date_to + _one_day())
        query = query.where(
            or_(
                BuildJob.started_at < end,
                BuildJob.started_at.is_(None) & (BuildJob.created_at < end),
            )
        )
    rows = session.exec(query.order_by(BuildJob.id).limit(MAX_ROWS)).all()
    jobs = [j for j, _c in rows]
    cases = {c.id: c for _j, c in rows}
    lots = lots_at_build(session, jobs)
    operators = _operators(session, jobs, cases)
    printers = {p.id: p for p in session.exec(select(Printer)).all()}
    parts = {
        p.id: p
        for p in session.exec(select(Part).where(Part.id.in_({j.part_id for j in jobs}))).all()
    }
    released = set(
        session.exec(
            select(Signature.entity_id).where(
                Signature.meaning == RELEASED, Signature.entity == "device"
            )
        ).all()
    )
    delivered = {
        d.build_job_id: d
        for d in session.exec(
            select(Delivery).where(Delivery.build_job_id.in_([j.id for j in jobs]))
        ).all()
    }
    out = []
    for job in jobs:
        lot = lots.get(job.id)
        if f.lot and (lot is None or lot.lot_number != f.lot.strip()):
            continue
        if f.operator and f.operator.strip() not in operators[job.id]:
            continue
        case, printer = cases[job.case_id], printers.get(job.printer_id)
        delivery = delivered.get(job.id)
        out.append(
            plain(
                {
                    "serial": job.serial,
                    "case": case.code,
                    "patient_code": case.patient_code,
                    "device_type": case.device_type,
                    "part": parts[job.part_id].label if job.part_id in parts else None,
                    "state": job.state,
                    "outcome": job.outcome,
                    "printer": printer.name if printer else None,
                    "printer_serial": printer.serial if printer else None,
                    "material": job.material or (lot.material if lot else None),
                    "lot": lot.lot_number if lot else None,
                    "lot_manufacturer": lot.manufacturer if lot else None,
                    "profile": job.profile_id,
                    "profile_sha256": job.profile_sha256,
                    "slicer": f"{job.slicer_name or ''} {job.slicer_version or ''}".strip(),
                    "gcode_sha256": job.gcode_sha256,
                    "started_at": job.started_at,
                    "finished_at": job.finished_at,
                    "filament_g": job.filament_g,
                    "released": job.serial in released,
                    "delivered_to": delivery.delivered_to if delivery else None,
                    "operators": sorted(operators[job.id]),
                }
            )
        )
    return out


def _one_day() -> timedelta:
    return timedelta(days=1)


@dataclass(frozen=True)
class EventFilter:
    date_from: date | None = None
    date_to: date | None = None
    actor: str = ""
    action: str = ""  # prefix, e.g. "job." or "signature"
    entity: str = ""
    entity_id: str = ""


def search_events(session: Session, f: EventFilter, limit: int = 500) -> list[dict]:
    query = select(AuditEvent)
    if f.date_from:
        query = query.where(AuditEvent.at >= _start_of(f.date_from))
    if f.date_to:
        query = query.where(AuditEvent.at < _start_of(f.date_to + _one_day()))
    if f.actor:
        query = query.where(AuditEvent.actor == f.actor.strip())
    if f.action:
        query = query.where(AuditEvent.action.startswith(f.action.strip()))
    if f.entity:
        query = query.where(AuditEvent.entity == f.entity.strip())
    if f.entity_id:
        query = query.where(AuditEvent.entity_id == f.entity_id.strip())
    rows = session.exec(query.order_by(AuditEvent.id.desc()).limit(limit)).all()
    return [
        plain(
            {
                "id": e.id,
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "entity": e.entity,
                "entity_id": e.entity_id,
                "before": e.before,
                "after": e.after,
                "reason": e.reason,
                "prev_hash": e.prev_hash,
                "hash": e.hash,
            }
        )
        for e in rows
    ]


def to_csv(rows: list[dict]) -> str:
    """CSV with one column per key (lists joined by ';', nested values as JSON text)."""
    import json

    buffer = io.StringIO()
    if not rows:
        return ""
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = {}
        for key, value in row.items():
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                flat[key] = ";".join(value)
            elif isinstance(value, dict | list):
                flat[key] = json.dumps(value, sort_keys=True)
            else:
                flat[key] = "" if value is None else value
        writer.writerow(_no_formulas(flat))
    return buffer.getvalue()


def _no_formulas(row: dict) -> dict:
    """Spreadsheet apps run cells starting with = + - @ as formulas: quote them."""
    return {
        k: ("'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v)
        for k, v in row.items()
    }
