"""Worker step: read, scale to millimetres, analyse and repair uploaded meshes (never inside a
web request). The mesh work runs in a child process under the part's wall-time and memory
limits (mesh/bounded.py); the order's anatomy and the printers' beds go with it to decide the
unit. A file whose unit is not clear-cut waits for a technician to confirm it.

The step holds its part under a lease. A bad file is rejected with the reason; a part past a
limit is processed with the verdict "too complex to repair automatically" and what was
measured; any other failure (a library crash, a full disk) is transient: the part is queued
again after a back-off, and rejected only after `max_attempts` tries, with the last error.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from sqlalchemy import or_
from sqlmodel import select

from pocprint.domain.anatomy_sizes import plausible_band, ranges_for
from pocprint.domain.states import PartState, Verdict
from pocprint.domain.steps import Step
from pocprint.faults import kill_point
from pocprint.mesh.bounded import run_bounded
from pocprint.mesh.errors import MeshError, TooComplex
from pocprint.mesh.units import UNIT_TO_MM
from pocprint.services import audit, leases
from pocprint.services.actors import SYSTEM
from pocprint.services.anatomy import size_ranges
from pocprint.services.lab import Lab
from pocprint.services.transitions import StaleState, move
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import Case, Part, utcnow

log = logging.getLogger(__name__)


def waiting_part_ids(lab: Lab) -> list[int]:
    """Queued parts whose back-off has passed, oldest first."""
    with read_session(lab.engine) as session:
        return list(
            session.exec(
                select(Part.id)
                .where(
                    Part.state == PartState.QUEUED,
                    or_(Part.retry_at.is_(None), Part.retry_at <= utcnow()),
                )
                .order_by(Part.id)
            ).all()
        )


def process_waiting_parts(lab: Lab) -> int:
    """Process every queued part whose back-off has passed, one after the other; returns how
    many. (The worker runs several at once: scheduler.MeshSlots.)"""
    return sum(1 for part_id in waiting_part_ids(lab) if process_part(lab, part_id))


def process_part(lab: Lab, part_id: int) -> bool:
    with unit_of_work(lab.engine) as session:
        part = session.get(Part, part_id)
        if part is None:
            return False
        lease = leases.claim(
            lab,
            session,
            part,
            PartState.PROCESSING,
            expected=PartState.QUEUED,
            action="part.processing",
            attempts=part.attempts + 1,
        )
        if lease is None:
            return False
        source_sha, fmt, units = part.source_sha256, part.fmt, part.units
        attempts = part.attempts
        case = session.get(Case, part.case_id)
        device_type = case.device_type
        sizes = _unit_evidence(lab, case.anatomy) if units is None else {}
    kill_point("part.claimed")
    log.info("part %s: analysis and repair started", part_id)
    try:
        with leases.renewed(lab, Part, part_id, lease, PartState.PROCESSING):
            source = lab.blobs.verified_path(source_sha)
            outcome = _analyse_and_repair(lab, part_id, source, fmt, units, device_type, sizes)
    except MeshError as exc:
        _finish(lab, part_id, lease, PartState.REJECTED, "part.rejected", str(exc))
        return True
    except TooComplex as exc:
        _too_complex(lab, part_id, lease, exc)
        lab.due(Step.BOARD)
        return True
    except Exception as exc:  # transient: a library, the disk or the memory failed this time
        log.exception("part %s: analysis failed (attempt %d)", part_id, attempts)
        _retry_or_reject(lab, part_id, lease, attempts, f"{type(exc).__name__}: {exc}")
        return True
    _record(lab, part_id, lease, outcome)
    kill_point("part.recorded")
    lab.due(Step.BOARD)
    return True


def _unit_evidence(lab: Lab, anatomy: list | None) -> dict:
    """What decides a unit besides the file: the size rows of the order's anatomy, and the
    plausible band from the whole anatomy table and the printers' beds."""
    sizes = size_ranges(lab.settings.anatomy_file)
    beds = [max(d.build_volume) for d in lab.printers.values()]
    return {
        "anatomy": [r.to_dict() for r in ranges_for(anatomy, sizes)],
        "band": plausible_band(sizes, beds),
    }


def _analyse_and_repair(lab: Lab, part_id, source, fmt, units, device_type, sizes) -> dict:
    """The mesh work runs in a child process under the part's limits (mesh/bounded.py); here
    only the repaired file is stored."""
    with tempfile.TemporaryDirectory(dir=lab.settings.work_dir) as tmp:
        out = Path(tmp) / f"part-{part_id}.stl"
        request = {
            "source": str(source),
            "fmt": fmt,
            "units": units,
            "device_type": device_type,
            "out": str(out),
            **sizes,
        }
        outcome = run_bounded(request, lab.settings.mesh_limits, source.stat().st_size)
        if "unclear" in outcome:
            return outcome
        started = time.perf_counter()
        repaired_sha, _size = lab.blobs.put_file(out)
    kill_point("part.repaired_stored")
    outcome["sha"] = repaired_sha
    outcome["report"]["service_timings_s"]["store"] = round(time.perf_counter() - started, 4)
    return outcome


def _guess_dict(guess: dict) -> dict:
    keys = ("proposed", "scale_to_mm", "clear", "reasons", "candidates", "anatomy")
    return {key: guess.get(key) for key in keys}


def _record(lab: Lab, part_id: int, lease: str, outcome: dict) -> None:
    with unit_of_work(lab.engine) as session:
        part = session.get(Part, part_id)
        try:
            if "unclear" in outcome:
                guess = outcome["unclear"]
                move(
                    session,
                    part,
                    PartState.AWAITING_UNITS,
                    actor=SYSTEM,
                    action="part.units_unclear",
                    expected=PartState.PROCESSING,
                    lease=lease,
                    after={"proposed": guess["proposed"]},
                    reason="; ".join(guess["reasons"]),
                    units_guess=_guess_dict(guess),
                )
                return
            units, guess = outcome["units"], outcome["guess"]
            unit_fields = {}
            if guess is not None:  # a clear-cut unit is applied and recorded with its evidence
                unit_fields = dict(
                    units=units, scale_to_mm=UNIT_TO_MM[units], units_guess=_guess_dict(guess)
                )
            move(
                session,
                part,
                PartState.PROCESSED,
                actor=SYSTEM,
                action="part.repaired",
                expected=PartState.PROCESSING,
                lease=lease,
                before={"sha256": part.source_sha256},
                after={
                    "verdict": outcome["verdict"],
                    "repaired_sha256": outcome["sha"],
                    "units": units,
                    "reasons": outcome["reasons"],
                },
                verdict=Verdict(outcome["verdict"]),
                repaired_sha256=outcome["sha"],
                analysis_before=outcome["before"],
                analysis_after=outcome["after"],
                repair_report=outcome["report"],
                processed_at=utcnow(),
                error=None,
                retry_at=None,
                **unit_fields,
            )
            if guess is not None:
                audit.record(
                    session,
                    SYSTEM,
                    "part.units_detected",
                    "part",
                    part_id,
                    after={"units": units, "scale_to_mm": UNIT_TO_MM[units]},
                    reason="; ".join(guess["reasons"]),
                )
        except StaleState as exc:
            log.warning("part %s: result discarded: %s", part_id, exc)


def _too_complex(lab: Lab, part_id: int, lease: str, exc: TooComplex) -> None:
    """Stopped at a bound: no repaired mesh; a person repairs the file and uploads it again."""
    report = {
        "verdict": Verdict.TOO_COMPLEX.value,
        "reasons": [exc.message],
        "bounds": exc.measured,
    }
    with unit_of_work(lab.engine) as session:
        try:
            move(
                session,
                session.get(Part, part_id),
                PartState.PROCESSED,
                actor=SYSTEM,
                action="part.too_complex",
                expected=PartState.PROCESSING,
                lease=lease,
                after={"verdict": Verdict.TOO_COMPLEX.value, **exc.measured},
                reason=exc.message[:2000],
                verdict=Verdict.TOO_COMPLEX,
                repaired_sha256=None,
                repair_report=report,
                processed_at=utcnow(),
                error=None,
                retry_at=None,
            )
        except StaleState as exc_stale:
            log.warning("part %s: result discarded: %s", part_id, exc_stale)


def _finish(lab: Lab, part_id: int, lease: str, target: str, action: str, message: str) -> None:
    with unit_of_work(lab.engine) as session:
        try:
            move(
                session,
                session.get(Part, part_id),
                target,
                actor=SYSTEM,
                action=action,
                expected=PartState.PROCESSING,
                lease=lease,
                reason=message[:2000],
                error=message[:2000],
                processed_at=utcnow(),
            )
        except StaleState as exc:
            log.warning("part %s: %s", part_id, exc)


def _retry_or_reject(lab: Lab, part_id: int, lease: str, attempts: int, message: str) -> None:
    if attempts >= lab.settings.max_attempts:
        _finish(
            lab,
            part_id,
            lease,
            PartState.REJECTED,
            "part.rejected",
            f"analysis failed {attempts} times; last error: {message}",
        )
        return
    delay = leases.retry_delay(lab, attempts)
    with unit_of_work(lab.engine) as session:
        try:
            move(
                session,
                session.get(Part, part_id),
                PartState.QUEUED,
                actor=SYSTEM,
                action="part.retry",
                expected=PartState.PROCESSING,
                lease=lease,
                after={"retry_in_s": delay.total_seconds(), "attempt": attempts},
                reason=message[:2000],
                error=f"attempt {attempts} failed, trying again: {message}"[:2000],
                retry_at=utcnow() + delay,
            )
        except StaleState as exc:
            log.warning("part %s: %s", part_id, exc)
