"""Worker step: analyse and repair uploaded meshes (never inside a web request)."""

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
from pocprint.services import audit
from pocprint.services.actors import SYSTEM
from pocprint.services.lab import Lab
from pocprint.services.steps import claim
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import Part, utcnow

log = logging.getLogger(__name__)


def process_waiting_parts(lab: Lab) -> int:
    """Process every queued part; returns how many were processed."""
    with read_session(lab.engine) as session:
        ids = session.exec(
            select(Part.id).where(Part.state == PartState.QUEUED).order_by(Part.id)
        ).all()
    done = 0
    for part_id in ids:
        if process_part(lab, part_id):
            done += 1
    return done


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
        source, fmt = lab.blobs.path(part.source_sha256), part.fmt
    log.info("part %s: analysis and repair started", part_id)
    try:
        started = time.perf_counter()
        mesh = load_mesh(source, fmt)
        loaded = time.perf_counter()
        result = repair(mesh)
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
                "reasons": result.reasons,
            },
        )
    lab.wake("board")
    return True


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
