"""The Celery application and its tasks: one per row step, each a line that calls the step.

Each task carries only the row id. It runs the same function the embedded engine runs, which
claims the row under a lease: a duplicated message finds the row claimed or done and does
nothing; a lost one is found again by the dispatcher's rescan or the sweeper.
"""

from __future__ import annotations

import logging

from celery import Celery

from pocprint.domain.steps import PER_ROW, QUEUE, Step
from pocprint.services.lab import Lab
from pocprint.services.mesh_processing import process_part
from pocprint.services.sending import send_job
from pocprint.services.slicing import slice_job

log = logging.getLogger(__name__)

STEPS = {
    Step.PROCESS_PART: process_part,
    Step.SLICE_JOB: slice_job,
    Step.SEND_JOB: send_job,
}
assert set(STEPS) == PER_ROW  # noqa: S101 - every row step has a task

_lab: Lab | None = None  # the worker process's lab, built once at its start


def task_name(step: Step) -> str:
    return f"pocprint.{step.value}"


def use_lab(lab: Lab) -> None:
    global _lab
    _lab = lab


def make_celery(broker_url: str) -> Celery:
    app = Celery("pocprint", broker=broker_url, set_as_current=False)
    app.conf.update(
        # A message is acknowledged after its step ran, and one at a time per worker thread:
        # a worker killed mid-step leaves the message to the broker (and the row to the sweeper).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue="printers",
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600, "socket_connect_timeout": 2},
        # The web answers even with the broker down: the enqueue gives up fast, the rescan
        # finds the row again later.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    for step, func in STEPS.items():
        app.task(name=task_name(step), ignore_result=True)(_runner(step, func))
    return app


def _runner(step: Step, func):
    def run(row_id: int) -> bool:
        if _lab is None:
            raise RuntimeError("the worker's lab is not set up (pocprint worker sets it)")
        return bool(func(_lab, int(row_id)))

    run.__name__ = step.value
    return run


def enqueue(app: Celery, step: Step, row_id: int) -> bool:
    """Hand a row step to the broker; False (logged) when the broker cannot be reached."""
    try:
        app.send_task(task_name(step), args=[int(row_id)], queue=QUEUE[step])
    except Exception as exc:  # the rescan or the sweeper hands the row on later
        log.warning("could not enqueue %s(%s): %s", step.value, row_id, exc)
        return False
    return True
