"""Device record pages: every step with who and when, hashes, printer, post-processing, QA,
release and delivery; exports (JSON, PDF, Annex XIII statement) and labels (PDF)."""

from __future__ import annotations

import json

from flask import Blueprint, Response, abort, render_template, request, send_file, url_for
from markupsafe import Markup

from pocprint.domain.roles import Permission
from pocprint.domain.wording import device_status
from pocprint.reads.records import device_record
from pocprint.services.errors import WrongState
from pocprint.services.postprocessing import checklist_status
from pocprint.services.release import release_status
from pocprint.store.db import read_session
from pocprint.store.models import BuildJob, Case, QaDisposition, QaMeasurement
from pocprint.trace.annex_xiii import NotCustomMade, statement_text
from pocprint.trace.labels import label_data, label_pdf, label_sheet_pdf, qr_svg
from pocprint.trace.pdf import dhr_pdf, statement_pdf
from pocprint.trace.site import load_site
from pocprint.web.auth import lab, requires

bp = Blueprint("devices", __name__, url_prefix="/devices")


def _record(serial: str) -> dict:
    with read_session(lab().engine) as session:
        record = device_record(session, serial)
    if record is None:
        abort(404)
    return record


def _workflow(serial: str) -> dict:
    """What the post-processing part of the page offers: checklist state and release."""
    from sqlmodel import select

    with read_session(lab().engine) as session:
        job = session.exec(select(BuildJob).where(BuildJob.serial == serial)).first()
        try:
            steps = checklist_status(session, job)
        except WrongState:  # no or unusable checklist: the page says so instead of failing
            steps = []
        released = release_status(session, job)
        disposed = session.exec(
            select(QaDisposition.id).where(QaDisposition.build_job_id == job.id)
        ).first()
        case = session.get(Case, job.case_id)
    return {
        "steps": steps,
        "all_done": bool(steps) and all(s.state == "done" for s in steps),
        "any_failed": any(s.state == "failed" for s in steps),
        "release_state": released.state,
        "released": released.valid,
        "workable": job.state == "completed" and job.outcome == "accepted",
        # A rejected build is reprinted or scrapped, like one that failed QA.
        "rejected_open": job.state == "completed"
        and job.outcome == "rejected"
        and disposed is None,
        "case_id": case.id,
        "status": device_status(job.state, job.outcome, released.valid),
    }


def record_link(serial: str) -> str:
    """The device record's address for QR codes: below the site's public base URL when one is
    configured (labels are read by other devices than the one that printed them)."""
    base = lab().settings.public_base_url
    if base:
        return base + url_for("devices.record", serial=serial)
    return url_for("devices.record", serial=serial, _external=True)


def _download(body: bytes | str, mimetype: str, filename: str) -> Response:
    return Response(
        body,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.route("/<serial>")
@requires(Permission.VIEW)
def record(serial: str):
    return record_page(serial)


def record_page(serial: str, release_form: dict | None = None, status: int = 200):
    """The device page; `release_form` re-shows the release form after a refused signature
    (wrong password) with the comment typed and the reason."""
    data = _record(serial)
    link = record_link(serial)
    return render_template(
        "devices/record.html",
        record=data,
        flow=_workflow(serial),
        qr=Markup(qr_svg(link)),  # noqa: S704 (SVG made by qrcode from our own URL)
        record_url=link,
        release_form=release_form or {},
    ), status


@bp.route("/<serial>.json")
@requires(Permission.VIEW)
def record_json(serial: str):
    body = json.dumps(_record(serial), indent=2, sort_keys=True)
    return _download(body, "application/json", f"device-{serial}.json")


@bp.route("/<serial>.pdf")
@requires(Permission.VIEW)
def record_pdf(serial: str):
    return _download(
        dhr_pdf(_record(serial), load_site(), lab().settings.time_zone),
        "application/pdf",
        f"dhr-{serial}.pdf",
    )


@bp.route("/<serial>/annex-xiii.<fmt>")
@requires(Permission.VIEW)
def statement(serial: str, fmt: str):
    if fmt not in ("pdf", "txt"):
        abort(404)
    record = _record(serial)
    try:
        if fmt == "pdf":
            return _download(
                statement_pdf(record, load_site(), lab().settings.time_zone),
                "application/pdf",
                f"annex-xiii-{serial}.pdf",
            )
        return _download(
            statement_text(record, load_site(), lab().settings.time_zone),
            "text/plain",
            f"annex-xiii-{serial}.txt",
        )
    except NotCustomMade as exc:
        abort(409, description=str(exc))


@bp.route("/<serial>/label.pdf")
@requires(Permission.VIEW)
def label(serial: str):
    site = load_site()
    size = request.args.get("size", site.label_size)
    record = _record(serial)
    if (record.get("release") or {}).get("state") != "valid":
        abort(409, description="Labels are printed only for a released device.")
    data = label_data(record, record_link(serial), site)
    if size == "a4":
        copies = request.args.get("copies", "8")
        if not copies.isdigit() or not 1 <= int(copies) <= 80:
            abort(400, description="copies must be a number from 1 to 80")
        body = label_sheet_pdf([data], copies=int(copies))
    elif size in ("62mm", "4x6"):
        body = label_pdf(data, size)
    else:
        abort(400, description="size must be 62mm, 4x6 or a4")
    return _download(body, "application/pdf", f"label-{serial}-{size}.pdf")


@bp.route("/<serial>/photos/<sha256>")
@requires(Permission.VIEW)
def photo(serial: str, sha256: str):
    """A QA photo, only if a measurement of this device points to it."""
    from sqlmodel import select

    with read_session(lab().engine) as session:
        found = session.exec(
            select(QaMeasurement.id)
            .join(BuildJob, BuildJob.id == QaMeasurement.build_job_id)
            .where(BuildJob.serial == serial, QaMeasurement.photo_sha256 == sha256)
        ).first()
    if found is None:
        abort(404)
    path = lab().blobs.path(sha256)
    with path.open("rb") as fh:
        head = fh.read(12)
    mimetype = (
        "image/png"
        if head.startswith(b"\x89PNG")
        else "image/webp"
        if head[8:12] == b"WEBP"
        else "image/jpeg"
    )
    return send_file(path, mimetype=mimetype, max_age=3600)
