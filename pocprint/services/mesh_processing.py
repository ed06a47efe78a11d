"""Worker step: read, scale to millimetres, analyse and repair uploaded meshes (never inside a
web request). A file whose unit is not clear-cut waits for a technician to confirm it."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from sqlmodel import select

from pocprint.domain.states import PartState, Verdict
from pocprint.mesh.errors import MeshError
from pocprint.mesh.read import load_mesh
from pocprint.mesh.repair import repair, save_mesh
from pocprint.mesh.settings import load_repair_settings
from pocprint.mesh.units import UNIT_TO_MM, declared_unit_from_header, guess_units
from pocprint.services import audit
from pocprint.services.actors import SYSTEM
from pocprint.services.lab import Lab
from pocprint.services.steps import claim
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import Case, Part, utcnow

log = logging.getLogger(__name__)


def process_waiting_parts(lab: Lab) -> int:
    """Process every queued part; returns how many were processed."""
    with read_session(lab.engine) as session:
        ids = session.exec(
            select(Part.id).where(Part.state == PartState.QUEUED).order_by(Part.id)
        ).all()
    return sum(1 for part_id in ids if process_part(lab, part_id))


def _declared_unit(source: Path, fmt: str) -> str | None:
    if fmt == "3mf":
        return "mm"  # the 3MF reader applies the file's own `unit` attribute
    return declared_unit_from_header(source, fmt)


def process_part(lab: Lab, part_id: int) -> bool:
    with unit_of_work(lab.engine) as session:
        part = session.get(Part, part_id)
        if part is None or not claim(
            session,
            Part,
            part_id,
            PartState.QUEUED,
            PartState.PROCESSING,
            attempts=part.attempts + 1,
        ):
            return False
        source, fmt, units = lab.blobs.path(part.source_sha256), part.fmt, part.units
        device_type = session.get(Case, part.case_id).device_type
    log.info("part %s: analysis and repair started", part_id)
    try:
        started = time.perf_counter()
        mesh = load_mesh(source, fmt)
        loaded = time.perf_counter()
        if units is None:
            # Size decides; the volume is only shown, and trimesh's is_volume costs seconds.
            guess = guess_units(tuple(mesh.extents), None, _declared_unit(source, fmt))
            if not guess.clear:
                _await_units(lab, part_id, guess)
                return True
            units = guess.proposed
            _record_units(lab, part_id, units, guess)
        if UNIT_TO_MM[units] != 1.0:
            mesh.apply_scale(UNIT_TO_MM[units])
        result = repair(mesh, load_repair_settings(device_type))
        repaired = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=lab.settings.work_dir) as tmp:
            out = Path(tmp) / f"part-{part_id}.stl"
            save_mesh(result.mesh, out)
            repaired_sha, _size = lab.blobs.put_file(out)
        stored = time.perf_counter()
    except MeshError as exc:
        _finish_rejected(lab, part_id, str(exc))
        return True
    except Exception as exc:  # a library failure must not leave the part stuck in processing
        log.exception("part %s: analysis failed", part_id)
        _finish_rejected(lab, part_id, f"analysis failed: {type(exc).__name__}: {exc}")
        return True
    report = result.report()
    report["units"] = {"unit": units, "scale_to_mm": UNIT_TO_MM[units]}
    report["service_timings_s"] = {
        "read": round(loaded - started, 4),
        "analyse_and_repair": round(repaired - loaded, 4),
        "store": round(stored - repaired, 4),
    }
    with unit_of_work(lab.engine) as session:
        part = session.get(Part, part_id)
        part.state = PartState.PROCESSED
        part.verdict = Verdict(result.verdict)
        part.repaired_sha256 = repaired_sha
        part.analysis_before = result.before.to_dict()
        part.analysis_after = result.after.to_dict()
        part.repair_report = report
        part.processed_at = utcnow()
        audit.record(
            session,
            SYSTEM,
            "part.repaired",
            "part",
            part_id,
            before={"state": PartState.PROCESSING, "sha256": part.source_sha256},
            after={
                "state": PartState.PROCESSED,
                "verdict": result.verdict,
                "repaired_sha256": repaired_sha,
                "units": units,
                "reasons": result.reasons,
            },
        )
    lab.wake("board")
    return True


def _guess_dict(guess) -> dict:
    return {
        "proposed": guess.proposed,
        "scale_to_mm": guess.scale_to_mm,
        "clear": guess.clear,
        "reasons": list(guess.reasons),
        "candidates": guess.candidates,
    }


def _record_units(lab: Lab, part_id: int, units: str, guess) -> None:
    """A clear-cut unit is applied at once and recorded with the evidence for it."""
    with unit_of_work(lab.engine) as session:
        part = session.get(Part, part_id)
        part.units, part.scale_to_mm = units, UNIT_TO_MM[units]
        part.units_guess = _guess_dict(guess)
        audit.record(
            session,
            SYSTEM,
            "part.units_detected",
            "part",
            part_id,
            after={"units": units, "scale_to_mm": part.scale_to_mm},
            reason="; ".join(guess.reasons),
        )


def _await_units(lab: Lab, part_id: int, guess) -> None:
    with unit_of_work(lab.engine) as session:
        part = session.get(Part, part_id)
        part.state = PartState.AWAITING_UNITS
        part.units_guess = _guess_dict(guess)
        audit.record(
            session,
            SYSTEM,
            "part.units_unclear",
            "part",
            part_id,
            before={"state": PartState.PROCESSING},
            after={"state": PartState.AWAITING_UNITS, "proposed": guess.proposed},
            reason="; ".join(guess.reasons),
        )


def _finish_rejected(lab: Lab, part_id: int, message: str) -> None:
    with unit_of_work(lab.engine) as session:
        part = session.get(Part, part_id)
        part.state = PartState.REJECTED
        part.error = message
        part.processed_at = utcnow()
        audit.record(
            session,
            SYSTEM,
            "part.rejected",
            "part",
            part_id,
            before={"state": PartState.PROCESSING},
            after={"state": PartState.REJECTED},
            reason=message,
        )
