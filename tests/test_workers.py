"""Units of the scale-out engine: named steps known to both engines, the `lab.due` seam
after commit, the send step's claim (a duplicated message sends nothing twice; a lost one
puts the job back in the queue), the dispatcher locks with takeover when the holder dies,
the broker hand-off when Redis is away, and the status report."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from scale_helpers import postgres_only, running_redis
from sqlalchemy import update
from sqlmodel import select

from pocprint.config import load_settings
from pocprint.distributed.app import STEPS, enqueue, make_celery
from pocprint.distributed.queues import queue_depths
from pocprint.domain.states import JobState
from pocprint.domain.steps import PER_ROW, QUEUE, QUEUES, Step
from pocprint.reads.workers import status
from pocprint.scheduler import JOB_OF_STEP
from pocprint.services import dispatch, workers
from pocprint.services.sending import send_job
from pocprint.services.slicing import slice_job
from pocprint.services.sweeper import sweep
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.locks import AdvisoryLock, FileLock, leader_lock
from pocprint.store.models import AuditEvent, BuildJob, Part, utcnow

from conftest import write_printer
from fleet_helpers import box, cleared_job, fleet_lab, job, printer_named
from octoprint_fixtures import octoprint_or_skip, running_octoprint, wait_for


def test_every_step_has_a_queue_and_both_engines_run_it():
    assert set(QUEUE) == set(Step) and set(QUEUE.values()) == set(QUEUES)
    assert set(STEPS) == PER_ROW  # a Celery task for each row step
    # The embedded engine runs every step (a send is planned and sent in the same pass).
    assert set(JOB_OF_STEP) | {Step.SEND_JOB} == set(Step)


def test_due_names_a_row_exactly_when_the_step_is_about_one(lab):
    seen = []
    lab.on_due = lambda step, row_id: seen.append((step, row_id))
    with pytest.raises(ValueError, match="needs row id"):
        lab.due(Step.SLICE_JOB)
    with pytest.raises(ValueError, match="takes no row id"):
        lab.due(Step.DISPATCH, 3)
    lab.due(Step.PROCESS_PART, 7)
    lab.due(Step.POLL)
    assert seen == [(Step.PROCESS_PART, 7), (Step.POLL, None)]


def test_an_upload_is_due_only_after_its_row_is_committed(lab, people, tmp_path):
    """Whoever runs the step (another process) must find the committed row."""
    from pocprint.services import cases as case_service
    from pocprint.services.review import review_case

    from conftest import PASSWORD, USUAL_SCENARIO, order_fields

    seen = []

    def due(step, row_id):  # look from another connection, as a worker would
        with read_session(lab.engine) as session:
            seen.append((step, session.get(Part, row_id) is not None))

    lab.on_due = due
    case_id = case_service.create_case(lab, people["tech"], **order_fields())
    review_case(
        lab, people["rad"], case_id, decision="approve", scenario=USUAL_SCENARIO, password=PASSWORD
    )
    case_service.upload_part(lab, people["tech"], case_id, "part.stl", box(tmp_path))
    assert (Step.PROCESS_PART, True) in seen


def test_engine_setting_is_checked(tmp_path):
    with pytest.raises(ValueError, match='engine must be "embedded" or "celery"'):
        config = tmp_path / "bad.toml"
        config.write_text('[worker]\nengine = "kubernetes"\n')
        load_settings(config, data_dir=tmp_path / "data", secret_key="x")


@pytest.fixture
def ready_job(tmp_path, database_url):
    """A sliced, cleared job and one idle OctoPrint printer whose plate is confirmed clear."""
    octoprint_or_skip()
    with running_octoprint(tmp_path / "octoprint") as server:
        d = tmp_path / "printers"
        write_printer(d, "octo-a", server.url, key=server.api_key)
        lab, people = fleet_lab(tmp_path, database_url, d)
        job_id = cleared_job(lab, people, box(tmp_path, (20, 20, 4)))
        assert slice_job(lab, job_id)
        from pocprint.services.polling import poll_printers

        wait_for(
            lambda: poll_printers(lab) is not None and printer_named(lab, "octo-a").state == "idle",
            60,
            "printer idle",
            interval=0.3,
        )
        dispatch.confirm_plate_clear(lab, people["tech"], printer_named(lab, "octo-a").id)
        yield lab, job_id, server
        lab.engine.dispose()


def events(lab, action: str) -> int:
    with read_session(lab.engine) as session:
        return len(session.exec(select(AuditEvent.id).where(AuditEvent.action == action)).all())


@pytest.mark.octoprint
@pytest.mark.slicer
def test_a_duplicated_send_message_sends_once(ready_job):
    lab, job_id, server = ready_job
    assert dispatch.plan_dispatch(lab) == [job_id]
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(send_job(lab, job_id))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, True]
    assert events(lab, "job.send_claimed") == 1 and events(lab, "job.started") == 1
    assert job(lab, job_id).state == JobState.PRINTING
    assert send_job(lab, job_id) is False  # and once more, late


@pytest.mark.octoprint
@pytest.mark.slicer
def test_a_lost_send_message_puts_the_job_back_and_gives_the_plate_back(ready_job):
    lab, job_id, server = ready_job
    assert dispatch.plan_dispatch(lab) == [job_id]
    printer = printer_named(lab, "octo-a")
    assert not printer.plate_clear  # the claim consumed it
    with unit_of_work(lab.engine) as session:  # the message never arrived; the lease ran out
        session.execute(
            update(BuildJob)
            .where(BuildJob.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    assert sweep(lab)["dispatch_requeued"] == 1
    assert job(lab, job_id).state == JobState.READY and job(lab, job_id).printer_id is None
    assert printer_named(lab, "octo-a").plate_clear
    assert send_job(lab, job_id) is False  # a late message finds nothing to send
    assert dispatch.dispatch_ready_jobs(lab) == 1  # the next plan sends it, once
    assert events(lab, "job.started") == 1


def test_file_lock_one_holder_and_freed_when_the_holder_dies(tmp_path):
    path = tmp_path / "locks" / "dispatcher.lock"
    first, second = FileLock(path, "dispatcher"), FileLock(path, "dispatcher")
    assert first.try_acquire() and first.try_acquire()  # keeping it is not taking it twice
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from pocprint.store.locks import FileLock
                assert FileLock(Path({str(path)!r}), "dispatcher").try_acquire()
                print("held", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    assert not first.try_acquire()
    holder.kill()
    holder.wait(10)
    assert first.try_acquire()
    first.release()


def test_advisory_lock_one_holder_and_taken_over_when_the_holder_dies(database_url):
    postgres_only(database_url)
    engine = sa.create_engine(database_url)
    first, second = AdvisoryLock(engine, "dispatcher"), AdvisoryLock(engine, "dispatcher")
    try:
        assert first.try_acquire() and first.holds()
        assert not second.try_acquire()
        first.release()
        assert second.try_acquire()
        second.release()
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    f"""
                    import time
                    import sqlalchemy as sa
                    from pocprint.store.locks import AdvisoryLock
                    lock = AdvisoryLock(sa.create_engine({database_url!r}), "dispatcher")
                    assert lock.try_acquire()
                    print("held", flush=True)
                    time.sleep(60)
                    """
                ),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout.readline().strip() == "held"
        assert not first.try_acquire()
        holder.kill()  # its connection closes with it; the server frees the lock
        holder.wait(10)
        started = time.monotonic()
        while not first.try_acquire():
            assert time.monotonic() - started < 10, "lock not freed after its holder died"
            time.sleep(0.1)
        # Losing the connection is losing the lock, and the holder notices.
        first._conn.invalidate()
        assert not first.holds()
        assert second.try_acquire()
        second.release()
    finally:
        engine.dispose()


def test_lock_kind_follows_the_database(tmp_path, database_url):
    engine = sa.create_engine(database_url)
    lock = leader_lock(engine, "dispatcher", tmp_path)
    kind = AdvisoryLock if database_url.startswith("postgresql") else FileLock
    assert isinstance(lock, kind)
    engine.dispose()


def test_enqueue_with_the_broker_away_gives_up_quickly(tmp_path):
    from pocprint.demo.octoprint_server import free_port

    app = make_celery(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    started = time.monotonic()
    assert enqueue(app, Step.PROCESS_PART, 1) is False
    assert time.monotonic() - started < 15
    assert queue_depths(app.conf.broker_url, timeout_s=0.5) == dict.fromkeys(QUEUES)


def test_enqueue_reaches_the_queue_of_the_step(tmp_path):
    with running_redis(tmp_path / "redis") as broker:
        app = make_celery(broker.url)
        assert enqueue(app, Step.SLICE_JOB, 5) and enqueue(app, Step.SEND_JOB, 6)
        assert queue_depths(broker.url) == {"mesh": 0, "slicing": 1, "printers": 1}


def test_status_reports_workers_waiting_steps_and_takeovers(lab):
    workers.beat(lab, "host-a:1", 1, ["mesh", "slicing"], dispatcher=False)
    workers.beat(lab, "host-b:2", 2, ["printers"], dispatcher=True)
    workers.took_lock(lab, "dispatcher", "host-b:2")
    workers.took_lock(lab, "dispatcher", "host-a:1")  # b died; a took over
    workers.leave(lab, "host-b:2")
    with read_session(lab.engine) as session:
        report = status(session, {"mesh": 3})
    assert [w["name"] for w in report["workers"]] == ["host-a:1"]
    assert report["alive"] == 1 and report["queues"] == {"mesh": 3}
    assert report["dispatcher"] == "host-a:1" and report["dispatcher_takeovers"] == 1
    assert {row["step"] for row in report["waiting"]} == {
        "process_part",
        "slice_job",
        "dispatch",
        "send_job",
    }


def test_admin_status_page_shows_workers_and_is_refused_to_others(lab, people):
    from test_web import login

    from pocprint.web import create_app

    workers.beat(lab, "host-a:41", 41, ["slicing"], dispatcher=True)
    workers.took_lock(lab, "dispatcher", "host-a:41")
    admin = create_app(lab.settings, lab).test_client()
    assert login(admin, "admin").status_code == 302
    page = admin.get("/admin/status/").get_data(as_text=True)
    assert "host-a:41" in page and "dispatcher" in page and "slice_job" in page
    tech = create_app(lab.settings, lab).test_client()
    assert login(tech, "tech").status_code == 302
    assert tech.get("/admin/status/").status_code == 403


def test_file_store_writes_under_a_host_and_pid_name_and_readers_check_the_hash(tmp_path, lab):
    import os
    import socket

    from pocprint.store.blobs import BlobDamaged, BlobStore, temp_prefix, temp_writer

    store = BlobStore(tmp_path / "blobs")
    prefix = temp_prefix()
    assert temp_writer(prefix + "abc123") == (os.getpid(), socket.gethostname())
    source = tmp_path / "a.bin"
    source.write_bytes(b"G1 X10\n" * 100)
    sha, _size = store.put_file(source)
    assert store.verified_path(sha) == store.path(sha)
    assert store.copy_out(sha, tmp_path / "out.bin").read_bytes() == source.read_bytes()
    damaged = store.path(sha)
    damaged.chmod(0o644)
    damaged.write_bytes(b"G1 X99\n" * 100)  # the shared disk returned something else
    with pytest.raises(BlobDamaged):
        store.verified_path(sha)
    with pytest.raises(BlobDamaged):
        store.copy_out(sha, tmp_path / "out2.bin")
    assert not (tmp_path / "out2.bin").exists()  # nothing half-usable left behind

    # The sweeper removes a dead writer's temporary file on its own host, never a fresh one
    # another machine of the shared store is still writing.
    root = lab.blobs.root
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    own = root / f".incoming-{dead}@{socket.gethostname()}.x1"
    other = root / f".incoming-{dead}@another-host.example.x2"
    own.write_bytes(b"partial")
    other.write_bytes(b"partial")
    sweep(lab)
    assert not own.exists() and other.exists()


def test_the_broker_password_never_reaches_the_log(tmp_path):
    from pocprint.cli import _shown

    settings = load_settings(
        data_dir=tmp_path, secret_key="x", broker_url="redis://:s3cret@redis.lab.example:6379/0"
    )
    assert _shown(settings) == "redis://redis.lab.example:6379/0"


def test_advisory_locks_of_two_installations_in_one_database_are_apart(database_url, tmp_path):
    """Two pocprint schemas in one PostgreSQL database each have their own dispatcher."""
    postgres_only(database_url)
    base = database_url.split("?")[0]
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql('CREATE SCHEMA IF NOT EXISTS "t_other_install"')
    other = sa.create_engine(f"{base}?options=-csearch_path%3Dt_other_install")
    mine = sa.create_engine(database_url)
    try:
        a, b = AdvisoryLock(mine, "dispatcher"), AdvisoryLock(other, "dispatcher")
        assert a.try_acquire() and b.try_acquire()
        assert not AdvisoryLock(mine, "dispatcher").try_acquire()
        a.release(), b.release()
    finally:
        mine.dispose(), other.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql('DROP SCHEMA "t_other_install" CASCADE')
        admin.dispose()
