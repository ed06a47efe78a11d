"""Technician decisions on a part: confirm its unit, accept a repair that needs attention."""

from __future__ import annotations

from pocprint.domain.roles import Permission
from pocprint.domain.states import PartState, Verdict
from pocprint.domain.steps import Step
from pocprint.mesh.units import UNIT_TO_MM
from pocprint.services import audit, notifications
from pocprint.services.actors import Actor
from pocprint.services.errors import Invalid, NotFound, WrongState
from pocprint.services.lab import Lab
from pocprint.services.transitions import move
from pocprint.store.db import unit_of_work
from pocprint.store.models import Part, utcnow


def _part(session, part_id: int) -> Part:
    part = session.get(Part, part_id)
    if part is None:
        raise NotFound(f"no part {part_id}")
    return part


def confirm_units(lab: Lab, actor: Actor, part_id: int, units: str) -> None:
    """The technician states the file's unit; the part goes back to analysis and repair."""
    actor.require(Permission.CONFIRM_UNITS)
    if units not in UNIT_TO_MM:
        raise Invalid(f"unit must be one of {', '.join(UNIT_TO_MM)}")
    with unit_of_work(lab.engine) as session:
        part = _part(session, part_id)
        if part.state != PartState.AWAITING_UNITS:
            raise WrongState(f"part is {part.state}; its unit is not waiting for a decision")
        move(
            session,
            part,
            PartState.QUEUED,
            actor=actor,
            action="part.units_confirmed",
            before={"proposed": (part.units_guess or {}).get("proposed")},
            after={"units": units, "scale_to_mm": UNIT_TO_MM[units]},
            units=units,
            scale_to_mm=UNIT_TO_MM[units],
            units_decided_by=actor.user_id,
            retry_at=None,
        )
    lab.due(Step.PROCESS_PART, part_id)


def accept_repair(lab: Lab, actor: Actor, part_id: int, reason: str) -> None:
    """A needs-attention repair may go on to approval only when a technician accepts it,
    with a reason that is recorded and attributed."""
    actor.require(Permission.ACCEPT_REPAIR)
    reason = (reason or "").strip()
    if len(reason) < 10:
        raise Invalid("say why this repair is acceptable (at least 10 characters)")
    with unit_of_work(lab.engine) as session:
        part = _part(session, part_id)
        if part.state != PartState.PROCESSED or part.verdict != Verdict.NEEDS_ATTENTION:
            raise WrongState("only a processed part whose repair needs attention can be accepted")
        if part.accepted_by is not None:
            raise WrongState("this repair was already accepted")
        if not part.repaired_sha256:
            raise WrongState("there is no repaired mesh to accept")
        part.accepted_by, part.accepted_reason, part.accepted_at = actor.user_id, reason, utcnow()
        audit.record(
            session,
            actor,
            "part.repair_accepted",
            "part",
            part_id,
            before={"verdict": part.verdict, "reasons": (part.repair_report or {}).get("reasons")},
            after={"accepted_by": actor.username, "repaired_sha256": part.repaired_sha256},
            reason=reason,
        )
        notifications.part_awaits_approval(
            session, part, "a technician accepted the repair: the design approval can be signed"
        )
