"""State machines of a part (an uploaded mesh) and of a build job (one device build).

Every transition the services make goes through `advance`, so an illegal jump (for example
dispatching a job that was never sliced) fails loudly instead of corrupting the record.
"""

from __future__ import annotations

from enum import StrEnum


class InvalidTransition(Exception):
    pass


class PartState(StrEnum):
    QUEUED = "queued"  # stored, waiting for analysis and repair
    PROCESSING = "processing"
    AWAITING_UNITS = "awaiting_units"  # the file's unit is not clear-cut: a technician decides
    PROCESSED = "processed"  # analysed and repaired; see verdict
    REJECTED = "rejected"  # not a usable mesh; see error
    APPROVED = "approved"  # design approved for printing


class Verdict(StrEnum):
    REPAIRED = "repaired"
    NEEDS_ATTENTION = "needs_attention"


class JobState(StrEnum):
    SLICE_QUEUED = "slice_queued"
    SLICING = "slicing"
    SLICE_FAILED = "slice_failed"
    READY = "ready"  # sliced, in the dispatch queue
    DISPATCHING = "dispatching"  # being uploaded, verified and started on a printer
    PRINTING = "printing"
    PRINTED = "printed"  # the printer reports the print finished
    FAILED = "failed"  # the printer reports the print failed or was stopped on the printer
    CANCELLED = "cancelled"  # cancelled from pocprint
    INTERRUPTED = "interrupted"  # contact lost or dispatch cut off: needs a technician
    COMPLETED = "completed"  # outcome recorded by a technician (accepted or rejected)


PART_TRANSITIONS: dict[PartState, frozenset[PartState]] = {
    PartState.QUEUED: frozenset({PartState.PROCESSING}),
    PartState.PROCESSING: frozenset(
        {PartState.PROCESSED, PartState.REJECTED, PartState.QUEUED, PartState.AWAITING_UNITS}
    ),
    PartState.AWAITING_UNITS: frozenset({PartState.QUEUED}),
    PartState.PROCESSED: frozenset({PartState.APPROVED}),
    PartState.REJECTED: frozenset(),
    PartState.APPROVED: frozenset(),
}

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.SLICE_QUEUED: frozenset({JobState.SLICING, JobState.CANCELLED}),
    JobState.SLICING: frozenset(
        {JobState.READY, JobState.SLICE_FAILED, JobState.SLICE_QUEUED, JobState.CANCELLED}
    ),
    JobState.SLICE_FAILED: frozenset({JobState.SLICE_QUEUED, JobState.CANCELLED}),
    JobState.READY: frozenset({JobState.DISPATCHING, JobState.CANCELLED}),
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

# Jobs that occupy a printer until a technician clears the plate.
ON_PRINTER = frozenset({JobState.DISPATCHING, JobState.PRINTING, JobState.INTERRUPTED})
# Jobs whose print has ended and which wait for a technician to record the outcome.
AWAITING_OUTCOME = frozenset({JobState.PRINTED, JobState.FAILED, JobState.CANCELLED})


def advance_part(current: PartState, target: PartState) -> PartState:
    if target not in PART_TRANSITIONS[current]:
        raise InvalidTransition(f"a part cannot go from {current} to {target}")
    return target


def advance_job(current: JobState, target: JobState) -> JobState:
    if target not in JOB_TRANSITIONS[current]:
        raise InvalidTransition(f"a build job cannot go from {current} to {target}")
    return target
