"""Notifications on real peers: e-mail to a real SMTP server (aiosmtpd, in a thread on a free
port) and HMAC-signed webhooks to a local HTTP receiver that checks each signature. Each
notification is written in the transaction of its event and sent by the worker's outbox step
afterwards, retried with back-off; failures show on the admin outbox page; no message carries
patient identity."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trimesh
from sqlmodel import select
from test_web import login

from pocprint.hospital.errors import ConfigError
from pocprint.hospital.links import hospital_links
from pocprint.scheduler import deliver_outbox, notify_jobs_at_risk
from pocprint.services import cases, notifications, outbox, postprocessing
from pocprint.services.actors import SYSTEM
from pocprint.services.catalog import load_shipped
from pocprint.services.errors import Invalid
from pocprint.services.fleet import sync_printers
from pocprint.services.lab import build_lab
from pocprint.services.mesh_processing import process_part
from pocprint.services.parts import confirm_units
from pocprint.services.transitions import move
from pocprint.store.db import read_session, unit_of_work, upgrade
from pocprint.store.models import AuditEvent, BuildJob, Notification, OutboxMessage, utcnow
from pocprint.web import create_app

from conftest import make_settings, order_fields
from peer_servers import SmtpServer, WebhookReceiver
from trace_helpers import printed_device

SECRET = "lab chat webhook secret 2026"
IDENTITY = ("Erika Mustermann", "MRN-4455667788")
INDICATION = "Complex abdominal aortic aneurysm, endograft planning"


@pytest.fixture(scope="module")
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def receiver():
    server = WebhookReceiver(SECRET).start()
    yield server
    server.stop()


def notifications_section(smtp, receiver) -> dict:
    return {
        "email": {"host": "127.0.0.1", "port": smtp.port, "sender": "pocprint@hospital.test"},
        "webhooks": {
            "lab-chat": {"url": receiver.url, "secret_env": "POCPRINT_TEST_WEBHOOK_SECRET"}
        },
        "roles": {
            "technician": {
                "events": ["part_needs_attention", "print_failed", "job_at_risk"],
                "email": ["lab-technicians@hospital.test"],
                "webhooks": ["lab-chat"],
            },
            "radiologist": {
                "events": ["awaiting_review", "awaiting_approval"],
                "email": ["radiology-3d@hospital.test"],
            },
            "lab_manager": {
                "events": ["ready_for_release", "print_failed"],
                "email": ["lab-manager@hospital.test"],
                "webhooks": ["lab-chat"],
            },
        },
    }


@pytest.fixture
def nlab(tmp_path, database_url, printers_dir, smtp, receiver, monkeypatch):
    monkeypatch.setenv("POCPRINT_TEST_WEBHOOK_SECRET", SECRET)
    smtp.messages.clear()
    smtp.refuse = False
    receiver.accepted.clear()
    receiver.refused.clear()
    receiver.fail_next = 0
    settings = make_settings(
        tmp_path,
        database_url,
        printers_dir,
        notifications=notifications_section(smtp, receiver),
        public_base_url="https://3dlab.hospital.test",
        outbox_retry_base_s=0.0,
        outbox_max_attempts=3,
    )
    upgrade(settings.database_url)
    lab = build_lab(settings)
    sync_printers(lab)
    load_shipped(lab)
    yield lab
    lab.engine.dispose()


def _notifications(lab, event=None):
    with read_session(lab.engine) as s:
        query = select(Notification).order_by(Notification.id)
        if event:
            query = query.where(Notification.event == event)
        return s.exec(query).all()


def _mails(smtp, to):
    return [m for m in smtp.messages if to in m["to"]]


def _no_identity(text: str) -> None:
    for secret in (*IDENTITY, INDICATION, "Mustermann"):
        assert secret not in text, secret


def test_a_new_case_tells_the_radiologists_by_email_without_patient_identity(nlab, smtp, people):
    case_id = cases.create_case(
        nlab,
        people["tech"],
        patient_identifiers={"name": IDENTITY[0], "record_number": IDENTITY[1]},
        **order_fields(patient_code="PX-5150", indication=INDICATION),
    )
    written = _notifications(nlab, "awaiting_review")
    assert [n.case_id for n in written] == [case_id]
    assert written[0].fanned_out_at is None  # written with the case; sent by the worker later
    assert smtp.messages == []
    assert deliver_outbox(nlab) == 1
    (mail,) = _mails(smtp, "radiology-3d@hospital.test")
    assert "A case awaits the appropriateness review" in mail["data"]
    assert "PX-5150" in mail["data"]
    assert f"https://3dlab.hospital.test/cases/{case_id}/review" in mail["data"]
    _no_identity(mail["data"])
    assert not _mails(smtp, "lab-technicians@hospital.test")  # not subscribed to reviews


def test_an_order_refused_writes_no_notification(nlab, people):
    with pytest.raises(Invalid):
        cases.create_case(nlab, people["tech"], **order_fields(patient_code="Jane Doe"))
    assert _notifications(nlab) == []


def test_part_events_and_print_failure_reach_email_and_signed_webhook(
    nlab, smtp, receiver, people, tmp_path
):
    tech = people["tech"]
    case_id = cases.create_case(
        nlab,
        tech,
        patient_identifiers={"name": IDENTITY[0], "record_number": IDENTITY[1]},
        **order_fields(patient_code="PX-5151", indication=INDICATION),
    )
    mesh = tmp_path / "Mustermann_Erika_aorta.stl"  # a client file name carrying identity
    trimesh.creation.box(extents=(40, 30, 20)).export(mesh)
    part_id = cases.upload_part(nlab, tech, case_id, mesh.name, mesh)
    assert process_part(nlab, part_id)
    events = [n.event for n in _notifications(nlab)]
    if "part_needs_attention" in events:  # the unit of a 40 mm box is not clear-cut
        confirm_units(nlab, tech, part_id, "mm")
        assert process_part(nlab, part_id)
    assert "awaiting_approval" in [n.event for n in _notifications(nlab)]
    # A print that is interrupted (the poller's path: transitions.move) tells technicians
    # and the lab manager, by e-mail and on the webhook (once, though both roles use it).
    job_id = printed_device(nlab, people, tmp_path, device_type="anatomical_model")
    with unit_of_work(nlab.engine) as s:
        job = s.get(BuildJob, job_id)
        job.state = "printing"
    with unit_of_work(nlab.engine) as s:
        job = s.get(BuildJob, job_id)
        move(s, job, "interrupted", actor=SYSTEM, action="job.interrupted")
        serial = job.serial
    deliver_outbox(nlab)
    failed_mails = [m for m in smtp.messages if "A print failed or was interrupted" in m["data"]]
    assert {tuple(m["to"]) for m in failed_mails} == {
        ("lab-technicians@hospital.test",),
        ("lab-manager@hospital.test",),
    }
    hooks = [h["body"] for h in receiver.accepted if h["body"]["event"] == "print_failed"]
    assert len(hooks) == 1
    assert hooks[0]["subject"] == serial
    assert hooks[0]["link"] == f"https://3dlab.hospital.test/devices/{serial}"
    assert receiver.refused == []  # every call was signed with the shared secret
    for text in [m["data"] for m in smtp.messages] + [str(h["body"]) for h in receiver.accepted]:
        _no_identity(text)
    with read_session(nlab.engine) as s:
        states = {m.state for m in s.exec(select(OutboxMessage)).all()}
    assert states == {"sent"}


def test_a_device_ready_for_release_tells_the_lab_manager_once(nlab, smtp, people, tmp_path):
    tech = people["tech"]
    job_id = printed_device(nlab, people, tmp_path, device_type="anatomical_model")
    postprocessing.record_step(nlab, tech, job_id, "support_removal", {"method": "manual"})
    postprocessing.record_step(nlab, tech, job_id, "visual_check", {"finding": "no defects"})
    assert _notifications(nlab, "ready_for_release") == []
    postprocessing.record_measurement(
        nlab, tech, job_id, feature="neck", designed_mm=22.0, measured_mm=21.9, tolerance_mm=1.0
    )
    postprocessing.record_measurement(
        nlab, tech, job_id, feature="sac", designed_mm=50.0, measured_mm=50.2, tolerance_mm=1.0
    )
    ready = _notifications(nlab, "ready_for_release")
    assert len(ready) == 1  # the record became complete once
    deliver_outbox(nlab)
    (mail,) = [
        m for m in _mails(smtp, "lab-manager@hospital.test") if "ready for release" in m["data"]
    ]
    assert ready[0].subject in mail["data"]


def test_a_job_at_risk_is_told_once(nlab, smtp, people, tmp_path):
    job_id = printed_device(nlab, people, tmp_path, device_type="anatomical_model")
    with unit_of_work(nlab.engine) as s:  # a queued job whose slicer estimate is 4 days
        job = s.get(BuildJob, job_id)
        job.state, job.outcome, job.estimated_time_s = "ready", None, 4 * 24 * 3600
        job.printer_id = job.started_at = job.finished_at = None
    assert notify_jobs_at_risk(nlab) == 1
    assert notify_jobs_at_risk(nlab) == 0  # the same job and needed-by date: told once
    deliver_outbox(nlab)
    mails = [m for m in _mails(smtp, "lab-technicians@hospital.test") if "needed-by" in m["data"]]
    assert len(mails) == 1 and "predicted to finish" in mails[0]["data"]


def test_failed_deliveries_are_retried_with_back_off_then_shown_to_the_admin(
    nlab, smtp, receiver, people
):
    nlab.settings = nlab.settings.with_(outbox_retry_base_s=3600.0)
    smtp.refuse = True
    cases.create_case(nlab, people["tech"], **order_fields(patient_code="PX-5152"))
    assert deliver_outbox(nlab) == 0
    with read_session(nlab.engine) as s:
        (message,) = s.exec(select(OutboxMessage)).all()
    assert message.state == "pending" and message.attempts == 1
    assert "451" in message.last_error
    assert deliver_outbox(nlab) == 0  # not due before its back-off
    with read_session(nlab.engine) as s:
        assert s.get(OutboxMessage, message.id).attempts == 1
    nlab.settings = nlab.settings.with_(outbox_retry_base_s=0.0)
    with unit_of_work(nlab.engine) as s:
        s.get(OutboxMessage, message.id).next_attempt_at = s.get(
            OutboxMessage, message.id
        ).created_at  # its back-off is over
    deliver_outbox(nlab)
    deliver_outbox(nlab)
    with read_session(nlab.engine) as s:
        failed = s.get(OutboxMessage, message.id)
    assert failed.state == "failed" and failed.attempts == 3
    client = create_app(nlab.settings, nlab).test_client()
    assert login(client, "admin").status_code == 302
    page = client.get("/admin/outbox/").get_data(as_text=True)
    assert "radiology-3d@hospital.test" in page and "451" in page and "Send again" in page
    tech_client = create_app(nlab.settings, nlab).test_client()
    assert login(tech_client, "tech").status_code == 302
    assert tech_client.get("/admin/outbox/").status_code == 403
    smtp.refuse = False
    outbox.retry(nlab, people["admin"], failed.id)
    assert deliver_outbox(nlab) == 1
    assert _mails(smtp, "radiology-3d@hospital.test")


def test_a_webhook_with_the_wrong_secret_is_refused_by_the_receiver(
    tmp_path, database_url, printers_dir, smtp, receiver, people, monkeypatch
):
    monkeypatch.setenv("POCPRINT_TEST_WEBHOOK_SECRET", "not the receiver's secret at all")
    section = notifications_section(smtp, receiver)
    section["roles"]["radiologist"]["webhooks"] = ["lab-chat"]
    settings = make_settings(
        tmp_path / "wrong", database_url, printers_dir, notifications=section,
        outbox_retry_base_s=0.0, outbox_max_attempts=1,
    )  # fmt: skip
    lab = build_lab(settings)
    try:
        receiver.refused.clear()
        cases.create_case(lab, people["tech"], **order_fields(patient_code="PX-5153"))
        deliver_outbox(lab)
        assert len(receiver.refused) == 1
        with read_session(lab.engine) as s:
            hook = s.exec(select(OutboxMessage).where(OutboxMessage.channel == "webhook")).one()
        assert hook.state == "failed" and "HTTP 401" in hook.last_error
    finally:
        lab.engine.dispose()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"webhooks": {"x": {"url": "http://h", "secret": "inline secret value"}}},
            "never written",
        ),
        (
            {"webhooks": {"x": {"url": "ftp://h", "secret_env": "POCPRINT_TEST_WEBHOOK_SECRET"}}},
            "http",
        ),
        ({"roles": {"surgeon": {"events": []}}}, "surgeon is not a role"),
        ({"roles": {"technician": {"events": ["coffee_ready"]}}}, "coffee_ready"),
        ({"roles": {"technician": {"events": [], "webhooks": ["nope"]}}}, "nope"),
        ({"email": {"host": "h"}}, "sender"),
    ],
)
def test_bad_notification_settings_stop_the_start(tmp_path, monkeypatch, change, message):
    monkeypatch.setenv("POCPRINT_TEST_WEBHOOK_SECRET", SECRET)
    section = {"email": {"host": "127.0.0.1", "port": 25, "sender": "p@h.test"}, **change}
    settings = make_settings(tmp_path, "sqlite://", tmp_path, notifications=section)
    with pytest.raises(ConfigError, match=message):
        hospital_links(settings)


def test_no_configuration_means_notifications_are_kept_but_sent_nowhere(lab, people):
    cases.create_case(lab, people["tech"], **order_fields(patient_code="PX-5154"))
    assert deliver_outbox(lab) == 0
    (note,) = _notifications(lab)
    assert note.fanned_out_at is not None
    with read_session(lab.engine) as s:
        assert s.exec(select(OutboxMessage)).all() == []


def test_a_message_whose_sender_died_mid_send_is_sent_again(nlab, smtp, people):
    cases.create_case(nlab, people["tech"], **order_fields(patient_code="PX-5155"))
    notifications.fan_out(nlab)
    with unit_of_work(nlab.engine) as s:  # a worker on another host claimed it, then died
        message = s.exec(select(OutboxMessage)).one()
        message.state = "sending"
        message.lease_owner = "another-host:4242:deadbeef"
        message.lease_expires_at = utcnow() - timedelta(seconds=1)
    assert deliver_outbox(nlab) == 1
    with read_session(nlab.engine) as s:
        actions = [
            e.action for e in s.exec(select(AuditEvent).where(AuditEvent.entity == "outbox")).all()
        ]
    assert actions == ["outbox.lease_expired", "outbox.sending", "outbox.sent"]
    assert len(_mails(smtp, "radiology-3d@hospital.test")) == 1
