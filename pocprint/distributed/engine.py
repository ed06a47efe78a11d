"""The distributed engine's two halves in a process: handing due steps to the broker, and
the dispatcher that runs in one worker at a time.

Every `pocprint worker` runs a `Coordinator` thread: it beats its heartbeat and tries the
dispatcher lock every second. The holder runs the timed lab-wide steps (plan dispatch, poll
printers, sweep expired leases, rescan queued rows, deliver the outbox); when it dies its lock
is freed (its database connection closes, or its flock goes with the process) and the next
worker to try takes over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from celery import Celery

from pocprint.domain.steps import PER_ROW, Step
from pocprint.scheduler import JOB_OF_STEP, Worker
from pocprint.services import workers
from pocprint.services.lab import Lab
from pocprint.store.locks import leader_lock

from .app import enqueue

log = logging.getLogger(__name__)
DISPATCHER = "dispatcher"


def hand_to_broker(lab: Lab, app: Celery) -> None:
    """`pocprint serve` with the Celery engine: row steps go to the broker; lab-wide steps
    are left to the dispatcher's schedule (within one dispatch interval)."""

    def due(step: Step, row_id: int | None) -> None:
        if step in PER_ROW:
            enqueue(app, step, row_id)

    lab.on_due = due


class Coordinator:
    def __init__(self, lab: Lab, app: Celery, queues: list[str], try_every_s: float = 1.0):
        self.lab, self.app, self.queues = lab, app, queues
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.try_every_s = try_every_s
        self.lock = leader_lock(lab.engine, DISPATCHER, lab.settings.data_dir / "locks")
        self.dispatcher: Worker | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="coordinator", daemon=True)
        lab.on_due = self.due

    def due(self, step: Step, row_id: int | None) -> None:
        dispatcher = self.dispatcher
        if step in PER_ROW:
            if dispatcher is not None:
                dispatcher.send_step(step, row_id)
            else:
                enqueue(self.app, step, row_id)
        elif dispatcher is not None:  # otherwise the holder's schedule runs it
            dispatcher.wake(JOB_OF_STEP[step])

    def start(self) -> Coordinator:
        self._thread.start()
        return self

    def _run(self) -> None:
        last_beat = 0.0
        while not self._stop.is_set():
            try:
                held = self.lock.try_acquire()
            except Exception as exc:  # the database is away: not the holder now
                log.warning("dispatcher lock: %s", exc)
                held = False
            if held and self.dispatcher is None:
                self._lead()
            elif not held and self.dispatcher is not None:
                log.warning("%s lost the dispatcher lock; stepping down", self.name)
                self._step_down()
            now = time.monotonic()
            if now - last_beat >= self.lab.settings.heartbeat_s:
                try:
                    workers.beat(
                        self.lab, self.name, os.getpid(), self.queues, self.dispatcher is not None
                    )
                    last_beat = now
                except Exception as exc:
                    log.warning("heartbeat: %s", exc)
            self._stop.wait(self.try_every_s)

    def _lead(self) -> None:
        from pocprint.services.sweeper import recover

        log.warning("%s holds the dispatcher lock", self.name)
        try:
            workers.took_lock(self.lab, DISPATCHER, self.name)
            recover(self.lab)  # the previous holder's cut-off steps first
        except Exception as exc:
            log.warning("dispatcher start-up: %s", exc)
        self.dispatcher = Worker(
            self.lab, send=lambda step, row_id: enqueue(self.app, step, row_id)
        )
        self.dispatcher.start()

    def _step_down(self) -> None:
        dispatcher, self.dispatcher = self.dispatcher, None
        if dispatcher is not None:
            dispatcher.shutdown(wait=False)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._step_down()
        self.lock.release()
        try:
            workers.leave(self.lab, self.name)
        except Exception as exc:
            log.warning("heartbeat row not removed: %s", exc)
