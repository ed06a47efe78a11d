"""The worker: APScheduler jobs that run the persisted steps (mesh, slicing, dispatch, polling).

All step state lives in the database, so a restart loses nothing: the sweeper
(`services.sweeper`) runs before the first tick and then every few seconds, handing on any
step whose lease expired. Each scheduler job runs one at a time; a step that became due
(`lab.due`, for example dispatch right after a technician confirms a clear plate) runs its
scheduler job at once. This is the embedded engine; `pocprint.distributed` runs the same step
functions on Celery workers. A step that fails, the
database gone for a while included, is logged once per kind of failure and tried next tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from pocprint.domain.steps import PER_ROW, Step
from pocprint.reads.board import queue
from pocprint.reads.planning import at_risk, planning
from pocprint.services import notifications, outbox, pacs
from pocprint.services.dispatch import dispatch_ready_jobs, plan_dispatch
from pocprint.services.lab import Lab
from pocprint.services.mesh_processing import process_part, waiting_part_ids
from pocprint.services.polling import poll_printers
from pocprint.services.sending import send_job
from pocprint.services.slicing import slice_waiting_jobs, waiting_jobs
from pocprint.services.sweeper import sweep
from pocprint.store.db import read_session

# The outbox's senders, one per channel (services/outbox.py).
SENDERS = {
    "email": notifications.send_email,
    "webhook": notifications.send_webhook,
    "dicom": pacs.send_archive,
}

log = logging.getLogger(__name__)

# The scheduler job that runs each due step (a per-row step runs its whole pass).
JOB_OF_STEP = {
    Step.PROCESS_PART: "mesh",
    Step.SLICE_JOB: "slicing",
    Step.DISPATCH: "dispatch",
    Step.POLL: "poll",
    Step.OUTBOX: "outbox",
    Step.BOARD: "at_risk",
}


class Worker:
    """The embedded engine runs every step here. With `send` given it is the distributed
    engine's dispatcher instead (one at a time, under the dispatcher lock): it plans, polls,
    sweeps and delivers, and hands each per-row step to `send` (the broker) to run elsewhere."""

    def __init__(self, lab: Lab, send: Callable[[Step, int], None] | None = None):
        self.lab = lab
        self.send = send
        self.poll_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="poll")
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )
        self._failing: dict[str, str] = {}  # step name -> kind of its current failure
        self._sent: dict[tuple[Step, int], float] = {}  # per-row steps handed on, when
        settings = lab.settings
        self.mesh_slots: MeshSlots | None = None
        if send is None:
            self.mesh_slots = MeshSlots(settings.mesh_limits.slots(), lambda: self.wake("mesh"))
            self._add("mesh", self.mesh_slots.fill, settings.mesh_interval_s)
            self._add("slicing", slice_waiting_jobs, settings.slicing_interval_s)
        else:  # the distributed engine: parts and slices are Celery tasks on the workers
            self._add("rescan", self._rescan, min(settings.requeue_after_s, 5.0))
        self._add("dispatch", self._dispatch_then_poll, settings.dispatch_interval_s)
        self._add("poll", self._poll, settings.poll_interval_s)
        self._add("sweep", sweep, settings.sweep_interval_s)
        self._add("outbox", deliver_outbox, settings.outbox_interval_s)
        self._add("at_risk", notify_jobs_at_risk, settings.at_risk_interval_s)
        self._add("planning", notify_cases_at_risk, settings.at_risk_interval_s)

    def _add(self, name: str, func, seconds: float) -> None:
        def run():
            try:
                func(self.lab)
            except Exception as exc:
                kind = type(exc).__name__
                if self._failing.get(name) != kind:  # one traceback per outage, not per tick
                    log.exception("worker step %s failed; retrying every pass", name)
                self._failing[name] = kind
            else:
                if self._failing.pop(name, None):
                    log.warning("worker step %s works again", name)

        self.scheduler.add_job(run, "interval", seconds=seconds, id=name, name=name)

    def _poll(self, lab: Lab) -> None:
        poll_printers(lab, self.poll_pool)

    def _dispatch_then_poll(self, lab: Lab) -> None:
        if self.send is None:
            if dispatch_ready_jobs(lab):
                self.wake("poll")
            return
        for job_id in plan_dispatch(lab):
            self.send(Step.SEND_JOB, job_id)

    def _rescan(self, lab: Lab) -> None:
        """Queued rows whose message may be lost (the broker restarted, the enqueue after a
        commit failed) are handed on again; running a step twice does nothing the second time."""
        now = time.monotonic()
        again = lab.settings.requeue_after_s
        self._sent = {key: at for key, at in self._sent.items() if now - at < again}
        for step, ids in ((Step.PROCESS_PART, waiting_part_ids), (Step.SLICE_JOB, waiting_jobs)):
            for row_id in ids(lab):
                if (step, row_id) not in self._sent:
                    self.send_step(step, row_id)

    def send_step(self, step: Step, row_id: int) -> None:
        self._sent[(step, row_id)] = time.monotonic()
        self.send(step, row_id)

    def due(self, step: Step, row_id: int | None) -> None:
        if step in PER_ROW and self.send is not None:
            self.send_step(step, row_id)
        elif step == Step.SEND_JOB:  # planned elsewhere (the sweeper never plans sends)
            self.poll_pool.submit(send_job, self.lab, row_id)
        else:
            self.wake(JOB_OF_STEP[step])

    def wake(self, name: str) -> None:
        job = self.scheduler.get_job(name)
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC))

    def start(self) -> None:
        if self.send is None:  # the distributed engine sets its own hook (it outlives this)
            self.lab.on_due = self.due
        self.scheduler.start()

    def shutdown(self, wait: bool = True) -> None:
        if self.send is None:
            self.lab.on_due = lambda _step, _row_id: None
        self.scheduler.shutdown(wait=wait)
        self.poll_pool.shutdown(wait=False)
        if self.mesh_slots is not None:
            self.mesh_slots.shutdown()


class MeshSlots:
    """Parts' mesh work, several at once: each tick hands waiting parts to free slots and
    returns, so a long part (stopped at its own time limit at worst) never holds the others
    back. Each part's work is a child process (mesh/bounded.py); the claim in process_part
    keeps a part from running twice."""

    def __init__(self, slots: int, on_free: Callable[[], None]):
        self.slots = slots
        self.on_free = on_free  # a slot came free: look for waiting parts now
        self.pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="mesh")
        self.running: set[int] = set()
        self._lock = threading.Lock()

    def fill(self, lab: Lab) -> int:
        with self._lock:
            free = self.slots - len(self.running)
            if free <= 0:
                return 0
            ids = [i for i in waiting_part_ids(lab) if i not in self.running][:free]
            self.running.update(ids)
        for part_id in ids:
            self.pool.submit(self._run, lab, part_id)
        return len(ids)

    def _run(self, lab: Lab, part_id: int) -> None:
        try:
            process_part(lab, part_id)
        except Exception:
            log.exception("part %s: mesh work failed; tried again on a later pass", part_id)
        finally:
            with self._lock:
                self.running.discard(part_id)
            self.on_free()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def deliver_outbox(lab: Lab) -> int:
    """Fan new notifications out to their destinations, then send what is due."""
    notifications.fan_out(lab)
    return outbox.deliver_due(lab, SENDERS)


def notify_jobs_at_risk(lab: Lab) -> int:
    """The board's own prediction: queued jobs predicted to finish after their needed-by
    date are told once each (per needed-by date)."""
    with read_session(lab.engine) as session:
        rows = [row for row in queue(session, lab=lab) if row["at_risk"]]
    return notifications.jobs_at_risk(lab, rows) if rows else 0


def notify_cases_at_risk(lab: Lab) -> int:
    """The planning lay-out's prediction (history-based durations): cases predicted ready
    after their needed-by date are told once each, with what would save them."""
    with read_session(lab.engine) as session:
        rows = at_risk(planning(session, lab))
    return notifications.cases_at_risk(lab, rows) if rows else 0
