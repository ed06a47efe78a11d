"""State machines of a part (an uploaded mesh), a build job (one device build) and a printer.

The tables below are the only moves a state may make. Services never assign a state: every
change goes through `services/transitions.py`, which asks `check_*` here, makes the change a
conditional UPDATE on the state it expects (so a concurrent change loses cleanly, never
silently overwritten) and writes the audit event in the same transaction.
"""

from __future__ import annotations

from enum import StrEnum


class InvalidTransition(Exception):
    pass


class PartState(StrEnum):
    QUEUED = "queued"  # stored, waiting for analysis and repair
    PROCESSING = "processing"  # claimed by a worker, under a lease
    AWAITING_UNITS = "awaiting_units"  # the file's unit is not clear-cut: a technician decides
    PROCESSED = "processed"  # analysed and repaired; see verdict
    REJECTED = "rejected"  # not a usable mesh; see error
    APPROVED = "approved"  # design approved for printing


class Verdict(StrEnum):
    REPAIRED = "repaired"
    NEEDS_ATTENTION = "needs_attention"
    TOO_COMPLEX = "too_complex"  # stopped at a time, memory or step bound: no repaired mesh


class JobState(StrEnum):
    SLICE_QUEUED = "slice_queued"
    SLICING = "slicing"  # claimed by a worker, under a lease
    SLICE_FAILED = "slice_failed"
    READY = "ready"  # sliced, in the dispatch queue
    DISPATCHING = "dispatching"  # being uploaded, verified and started on a printer
    PRINTING = "printing"
    PRINTED = "printed"  # the printer reports the print finished
    FAILED = "failed"  # the printer reports the print failed or was stopped on the printer
    CANCELLED = "cancelled"  # cancelled from pocprint
    INTERRUPTED = "interrupted"  # contact lost or dispatch cut off: needs a technician
    COMPLETED = "completed"  # outcome recorded by a technician (accepted or rejected)


class PrinterState(StrEnum):
    """Coarse printer state as its host software reports it (manual printers: as the
    technician confirms it); detailed vendor text is kept beside it."""

    OFFLINE = "offline"
    IDLE = "idle"
    PRINTING = "printing"
    PAUSED = "paused"
    BUSY = "busy"  # starting, pausing, resuming, cancelling, finishing, connecting...
    ERROR = "error"


PART_TRANSITIONS: dict[PartState, frozenset[PartState]] = {
    PartState.QUEUED: frozenset({PartState.PROCESSING}),
    PartState.PROCESSING: frozenset(
        # QUEUED: a transient error or an expired lease, tried again after a back-off.
        {PartState.PROCESSED, PartState.REJECTED, PartState.QUEUED, PartState.AWAITING_UNITS}
    ),
    PartState.AWAITING_UNITS: frozenset({PartState.QUEUED}),
    PartState.PROCESSED: frozenset({PartState.APPROVED}),
    PartState.REJECTED: frozenset(),
    # The design approval was withdrawn or voided by a change: back to the approval step.
    PartState.APPROVED: frozenset({PartState.PROCESSED}),
}

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.SLICE_QUEUED: frozenset({JobState.SLICING, JobState.CANCELLED}),
    JobState.SLICING: frozenset(
        {JobState.READY, JobState.SLICE_FAILED, JobState.SLICE_QUEUED, JobState.CANCELLED}
    ),
    JobState.SLICE_FAILED: frozenset({JobState.SLICE_QUEUED, JobState.CANCELLED}),
    # SLICE_QUEUED: re-sliced after an orientation change.
    JobState.READY: frozenset({JobState.DISPATCHING, JobState.CANCELLED, JobState.SLICE_QUEUED}),
    # READY: nothing reached the plate; CANCELLED: only on a manual printer before its start.
    JobState.DISPATCHING: frozenset(
        {JobState.PRINTING, JobState.READY, JobState.INTERRUPTED, JobState.CANCELLED}
    ),
    JobState.PRINTING: frozenset(
        {JobState.PRINTED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}
    ),
    JobState.INTERRUPTED: frozenset(
        {JobState.PRINTING, JobState.PRINTED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.PRINTED: frozenset({JobState.COMPLETED}),
    JobState.FAILED: frozenset({JobState.COMPLETED}),
    JobState.CANCELLED: frozenset({JobState.COMPLETED}),
    JobState.COMPLETED: frozenset(),
}

# A printer's state mirrors what its host reports, and a host may report any state after any
# other (a print can end in an error, a host can vanish at any moment); what the lifecycle
# guards is that each change is a conditional update on the state last seen, and audited.
PRINTER_TRANSITIONS: dict[PrinterState, frozenset[PrinterState]] = {
    state: frozenset(PrinterState) - {state} for state in PrinterState
}

# Jobs that occupy a printer until a technician clears the plate (at most one per printer:
# a database rule, see migration 0007).
ON_PRINTER = frozenset({JobState.DISPATCHING, JobState.PRINTING, JobState.INTERRUPTED})
# Jobs whose print has ended and which wait for a technician to record the outcome.
AWAITING_OUTCOME = frozenset({JobState.PRINTED, JobState.FAILED, JobState.CANCELLED})
# Jobs not yet on a printer: a withdrawn design approval cancels these.
BEFORE_PRINTER = frozenset(
    {JobState.SLICE_QUEUED, JobState.SLICING, JobState.SLICE_FAILED, JobState.READY}
)
# Worker steps held under a lease while they run.
LEASED_PART_STATES = frozenset({PartState.PROCESSING})
LEASED_JOB_STATES = frozenset({JobState.SLICING, JobState.DISPATCHING})


def check_transition(table: dict, current: str, target: str, what: str) -> None:
    """Raise InvalidTransition unless the table allows current -> target."""
    try:
        allowed = table[type(next(iter(table)))(current)]
    except (ValueError, KeyError):
        raise InvalidTransition(f"{what} has an unknown state {current!r}") from None
    if target not in allowed:
        raise InvalidTransition(f"{what} cannot go from {current} to {target}")


def advance_part(current: PartState, target: PartState) -> PartState:
    check_transition(PART_TRANSITIONS, current, target, "a part")
    return target


def advance_job(current: JobState, target: JobState) -> JobState:
    check_transition(JOB_TRANSITIONS, current, target, "a build job")
    return target
