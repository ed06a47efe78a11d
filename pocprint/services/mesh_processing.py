"""Worker step: read, scale to millimetres, analyse and repair uploaded meshes (never inside a
web request). A file whose unit is not clear-cut waits for a technician to confirm it.

The step holds its part under a lease. A bad file is rejected with the reason; any other
failure (a library crash, a full disk, no memory) is transient: the part is queued again
after a back-off, and rejected only after `max_attempts` tries, with the last error.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from sqlalchemy import or_
from sqlmodel import select

from pocprint.domain.states import PartState, Verdict
from pocprint.domain.steps import Step
from pocprint.faults import kill_point
from pocprint.mesh.errors import MeshError
from pocprint.mesh.read import load_mesh
from pocprint.mesh.repair import repair, save_mesh
from pocprint.mesh.settings import load_repair_settings
from pocprint.mesh.units import UNIT_TO_MM, declared_unit_from_header, guess_units
from pocprint.services import audit, leases
from pocprint.services.actors import SYSTEM
from pocprint.services.lab import Lab
from pocprint.services.transitions import StaleState, move
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import Case, Part, utcnow

log = logging.getLogger(__name__)


def process_waiting_parts(lab: Lab) -> int:
    """Process every queued part whose back-off has passed; returns how many."""
    return sum(1 for part_id in waiting_parts(lab) if process_part(lab, part_id))


def waiting_parts(lab: Lab) -> list[int]:
    """Queued parts whose back-off has passed, oldest first."""
    with read_session(lab.engine) as session:
        return session.exec(
            select(Part.id)
            .where(
                Part.state == PartState.QUEUED,
                or_(Part.retry_at.is_(None), Part.retry_at <= utcnow()),
            )
            .order_by(Part.id)
        ).all()


def _declared_unit(source: Path, fmt: str) -> str | None:
    if fmt == "3mf":
        return "mm"  # the 3MF reader applies the file's own `unit` attribute
    return declared_unit_from_header(source, fmt)


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
        device_type = session.get(Case, part.case_id).device_type
    kill_point("part.claimed")
    log.info("part %s: analysis and repair started", part_id)
    try:
        with leases.renewed(lab, Part, part_id, lease, PartState.PROCESSING):
            outcome = _analyse_and_repair(
                lab, part_id, lab.blobs.verified_path(source_sha), fmt, units, device_type
            )
    except MeshError as exc:
        _finish(lab, part_id, lease, PartState.REJECTED, "part.rejected", str(exc))
        return True
    except Exception as exc:  # transient: a library, the disk or the memory failed this time
        log.exception("part %s: analysis failed (attempt %d)", part_id, attempts)
        _retry_or_reject(lab, part_id, lease, attempts, f"{type(exc).__name__}: {exc}")
        return True
    _record(lab, part_id, lease, outcome)
    kill_point("part.recorded")
    lab.due(Step.BOARD)
    return True


def _analyse_and_repair(lab: Lab, part_id, source, fmt, units, device_type) -> dict:
    started = time.perf_counter()
    mesh = load_mesh(source, fmt)
    loaded = time.perf_counter()
    guess = None
    if units is None:
        # Size decides; the volume is only shown, and trimesh's is_volume costs seconds.
        guess = guess_units(tuple(mesh.extents), None, _declared_unit(source, fmt))
        if not guess.clear:
            return {"unclear": guess}
        units = guess.proposed
    if UNIT_TO_MM[units] != 1.0:
        mesh.apply_scale(UNIT_TO_MM[units])
    result = repair(mesh, load_repair_settings(device_type))
    repaired = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=lab.settings.work_dir) as tmp:
        out = Path(tmp) / f"part-{part_id}.stl"
        save_mesh(result.mesh, out)
        repaired_sha, _size = lab.blobs.put_file(out)
    kill_point("part.repaired_stored")
    stored = time.perf_counter()
    report = result.report()
    report["units"] = {"unit": units, "scale_to_mm": UNIT_TO_MM[units]}
    report["service_timings_s"] = {
        "read": round(loaded - started, 4),
        "analyse_and_repair": round(repaired - loaded, 4),
        "store": round(stored - repaired, 4),
    }
    return {"result": result, "units": units, "guess": guess, "sha": repaired_sha, "report": report}


def _guess_dict(guess) -> dict:
    return {
        "proposed": guess.proposed,
        "scale_to_mm": guess.scale_to_mm,
        "clear": guess.clear,
        "reasons": list(guess.reasons),
        "candidates": guess.candidates,
    }


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
                    after={"proposed": guess.proposed},
                    reason="; ".join(guess.reasons),
                    units_guess=_guess_dict(guess),
                )
                return
            result, units, guess = outcome["result"], outcome["units"], outcome["guess"]
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
                    "verdict": result.verdict,
                    "repaired_sha256": outcome["sha"],
                    "units": units,
                    "reasons": result.reasons,
                },
                verdict=Verdict(result.verdict),
                repaired_sha256=outcome["sha"],
                analysis_before=result.before.to_dict(),
                analysis_after=result.after.to_dict(),
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
                    reason="; ".join(guess.reasons),
                )
        except StaleState as exc:
            log.warning("part %s: result discarded: %s", part_id, exc)


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
