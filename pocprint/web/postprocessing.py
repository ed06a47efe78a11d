"""Tablet forms for a printed device: post-processing steps, QA measurements, reprint or
scrap after a failed QA, release (lab manager, signature) and delivery."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

from flask import Blueprint, abort, flash, redirect, request, url_for
from sqlmodel import select

from pocprint.domain.roles import Permission
from pocprint.domain.times import from_local_input
from pocprint.services import postprocessing, release
from pocprint.services.errors import AuthFailed, Invalid
from pocprint.store.db import read_session
from pocprint.store.models import BuildJob
from pocprint.web.auth import actor, lab, requires
from pocprint.web.devices import record_page

bp = Blueprint("post", __name__, url_prefix="/devices")


def _job_id(serial: str) -> int:
    with read_session(lab().engine) as session:
        job_id = session.exec(select(BuildJob.id).where(BuildJob.serial == serial)).first()
    if job_id is None:
        abort(404)
    return job_id


def _back(serial: str, anchor: str = "post"):
    return redirect(url_for("devices.record", serial=serial, _anchor=anchor), 303)


def _number(name: str) -> float | None:
    text = (request.form.get(name) or "").strip().replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise Invalid(f"{name.replace('_', ' ')} must be a number") from exc


def _time(name: str) -> datetime | None:
    """A time from a datetime-local field, typed in the site's time zone; stored as UTC."""
    text = (request.form.get(name) or "").strip()
    if not text:
        return None
    try:
        return from_local_input(text, lab().settings.time_zone)
    except ValueError as exc:
        raise Invalid(f"{name.replace('_', ' ')} is not a date and time") from exc


@bp.route("/<serial>/steps/<step>", methods=["POST"])
@requires(Permission.RECORD_POST_PROCESSING)
def step(serial: str, step: str):
    params = {k[6:]: v for k, v in request.form.items() if k.startswith("param-")}
    postprocessing.record_step(
        lab(),
        actor(),
        _job_id(serial),
        step,
        params,
        note=request.form.get("note", ""),
        performed_at=_time("performed_at"),
    )
    flash("Step recorded.", "ok")
    return _back(serial)


@bp.route("/<serial>/measurements", methods=["POST"])
@requires(Permission.RECORD_POST_PROCESSING)
def measurement(serial: str):
    upload = request.files.get("photo")
    with tempfile.TemporaryDirectory(dir=lab().settings.work_dir) as tmp:
        photo = None
        if upload and upload.filename:
            photo = Path(tmp) / "photo"  # the client's file name is not kept
            upload.save(photo)
        postprocessing.record_measurement(
            lab(),
            actor(),
            _job_id(serial),
            feature=request.form.get("feature", ""),
            designed_mm=_number("designed_mm"),
            measured_mm=_number("measured_mm"),
            tolerance_mm=_number("tolerance_mm"),
            photo=photo,
        )
    flash("Measurement recorded.", "ok")
    return _back(serial, "qa")


@bp.route("/<serial>/disposition", methods=["POST"])
@requires(Permission.RECORD_POST_PROCESSING)
def disposition(serial: str):
    new_job = postprocessing.decide_failed_build(
        lab(),
        actor(),
        _job_id(serial),
        request.form.get("decision", ""),
        request.form.get("reason", ""),
    )
    if new_job:
        with read_session(lab().engine) as session:
            new_serial = session.get(BuildJob, new_job).serial
        flash(f"Reprint queued as {new_serial}.", "ok")
        return redirect(url_for("devices.record", serial=new_serial), 303)
    flash("Build scrapped.", "ok")
    return _back(serial, "qa")


@bp.route("/<serial>/release", methods=["POST"])
@requires(Permission.RELEASE_DEVICE)
def release_device(serial: str):
    comment = request.form.get("comment", "")
    try:
        release.release_device(
            lab(), actor(), _job_id(serial), request.form.get("password", ""), comment
        )
    except AuthFailed as exc:  # keep the comment, say why beside the form
        return record_page(serial, {"comment": comment, "error": str(exc)}, 422)
    flash("Device released (signed).", "ok")
    return _back(serial, "release")


@bp.route("/<serial>/delivery", methods=["POST"])
@requires(Permission.RECORD_POST_PROCESSING, Permission.RELEASE_DEVICE)
def delivery(serial: str):
    release.record_delivery(
        lab(),
        actor(),
        _job_id(serial),
        delivered_to=request.form.get("delivered_to", ""),
        location=request.form.get("location", ""),
        delivered_at=_time("delivered_at"),
        note=request.form.get("note", ""),
    )
    flash("Delivery recorded.", "ok")
    return _back(serial, "release")
