"""The worker's named steps: what becomes due after a transaction commits.

Services say `lab.due(Step.SLICE_JOB, job_id)`; the engine that runs the lab (APScheduler in
the process, or Celery across machines) decides how. An enum, not strings, so a step that no
engine knows cannot be named. Steps with a row id claim that row with a lease, so running one
twice (a duplicated message) does nothing the second time.
"""

from __future__ import annotations

from enum import StrEnum


class Step(StrEnum):
    PROCESS_PART = "process_part"  # analysis and repair of one part (id: part)
    SLICE_JOB = "slice_job"  # slicing of one build job (id: job)
    SEND_JOB = "send_job"  # upload, verify and start one claimed job (id: job)
    DISPATCH = "dispatch"  # plan: pair ready jobs with free printers and claim them
    POLL = "poll"  # read the printers
    OUTBOX = "outbox"  # deliver notifications
    BOARD = "board"  # the board's prediction changed (jobs at risk)


# Steps that name one row; the others act on the whole lab.
PER_ROW = frozenset({Step.PROCESS_PART, Step.SLICE_JOB, Step.SEND_JOB})

# Queue of each step on the distributed engine: a site puts slicing on big machines and
# printer I/O on a small one.
QUEUE = {
    Step.PROCESS_PART: "mesh",
    Step.SLICE_JOB: "slicing",
    Step.SEND_JOB: "printers",
    Step.DISPATCH: "printers",
    Step.POLL: "printers",
    Step.OUTBOX: "printers",
    Step.BOARD: "printers",
}
QUEUES = ("mesh", "slicing", "printers")
