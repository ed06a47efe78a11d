"""The fleet board: printer tiles and the queue, refreshed in place every few seconds, and
the technician's actions on printers and jobs (each checked again by its service)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, send_file, url_for

from pocprint.domain.roles import Permission
from pocprint.reads import board as board_reads
from pocprint.reads.holds import plate_clear_message
from pocprint.services import dispatch, jobs, manual_printing
from pocprint.store.db import read_session
from pocprint.web.auth import actor, lab, requires

bp = Blueprint("board", __name__, url_prefix="/board")


def _data() -> dict:
    with read_session(lab().engine) as session:
        return {
            "printers": board_reads.printers(session, lab()),
            "intake": board_reads.intake(session),
            "queue": board_reads.queue(session, lab=lab()),
            "recent": board_reads.recent_jobs(session),
        }


def _back():
    return redirect(request.referrer or url_for("board.index"), 303)


@bp.route("/")
@requires(Permission.VIEW)
def index():
    return render_template("board/index.html", **_data())


@bp.route("/live")
@requires(Permission.VIEW)
def live():
    """The part of the board that refreshes itself (fetched by static/js/board.js)."""
    return render_template("board/_live.html", **_data())


@bp.route("/printers/<int:printer_id>/plate-clear", methods=["POST"])
@requires(Permission.OPERATE_PRINTERS)
def plate_clear(printer_id: int):
    # Judged before the confirmation: the worker may claim the job the moment it is made.
    with read_session(lab().engine) as session:
        category, message = plate_clear_message(session, lab(), printer_id)
    dispatch.confirm_plate_clear(lab(), actor(), printer_id)
    flash(message, category)
    return redirect(url_for("board.index"), 303)


@bp.route("/jobs/<int:job_id>/pause", methods=["POST"])
@requires(Permission.OPERATE_PRINTERS)
def pause(job_id: int):
    jobs.pause_job(lab(), actor(), job_id, request.form.get("reason", ""))
    flash("Print paused.", "ok")
    return _back()


@bp.route("/jobs/<int:job_id>/resume", methods=["POST"])
@requires(Permission.OPERATE_PRINTERS)
def resume(job_id: int):
    jobs.resume_job(lab(), actor(), job_id, request.form.get("reason", ""))
    flash("Print resumed.", "ok")
    return _back()


@bp.route("/jobs/<int:job_id>/cancel", methods=["POST"])
@requires(Permission.OPERATE_PRINTERS)
def cancel(job_id: int):
    jobs.cancel_job(lab(), actor(), job_id, request.form.get("reason", ""))
    flash("Job cancelled.", "ok")
    return _back()


@bp.route("/jobs/<int:job_id>/urgent", methods=["POST"])
@requires(Permission.PRIORITISE_JOBS)
def urgent(job_id: int):
    make_urgent = request.form.get("urgent", "1") == "1"
    jobs.set_urgent(lab(), actor(), job_id, make_urgent, request.form.get("reason", ""))
    flash("Marked urgent: it goes first." if make_urgent else "Back in needed-by order.", "ok")
    return _back()


@bp.route("/jobs/<int:job_id>/orientation", methods=["POST"])
@requires(Permission.OPERATE_PRINTERS)
def orientation(job_id: int):
    jobs.set_orientation(
        lab(), actor(), job_id, request.form.get("orientation", ""), request.form.get("reason", "")
    )
    flash("Orientation recorded; the job is sliced again.", "ok")
    return _back()


@bp.route("/jobs/<int:job_id>/gcode", methods=["POST"])
@requires(Permission.OPERATE_PRINTERS)
def manual_gcode(job_id: int):
    """The verified G-code for a printer without a network API. A POST: the download is
    recorded, and a GET (a prefetch, a crawler, a link preview) must change nothing."""
    path, name = manual_printing.gcode_for_download(lab(), actor(), job_id)
    return send_file(path, mimetype="text/x-gcode", as_attachment=True, download_name=name)


@bp.route("/jobs/<int:job_id>/manual-start", methods=["POST"])
@requires(Permission.OPERATE_PRINTERS)
def manual_start(job_id: int):
    manual_printing.confirm_start(
        lab(),
        actor(),
        job_id,
        request.form.get("note", ""),
        confirmed_file=request.form.get("confirm_file") == "yes",
    )
    flash("Start recorded.", "ok")
    return _back()


@bp.route("/jobs/<int:job_id>/manual-end", methods=["POST"])
@requires(Permission.OPERATE_PRINTERS)
def manual_end(job_id: int):
    manual_printing.confirm_end(
        lab(), actor(), job_id, request.form.get("result", ""), request.form.get("note", "")
    )
    flash("End of print recorded.", "ok")
    return _back()


@bp.route("/jobs/<int:job_id>/resolve", methods=["POST"])
@requires(Permission.OPERATE_PRINTERS)
def resolve(job_id: int):
    again = jobs.resolve_interrupted(
        lab(), actor(), job_id, request.form.get("resolution", ""), request.form.get("reason", "")
    )
    flash("Interruption resolved." + (" A new build job is queued." if again else ""), "ok")
    return _back()


@bp.route("/jobs/<int:job_id>/outcome", methods=["POST"])
@requires(Permission.RECORD_OUTCOME)
def outcome(job_id: int):
    jobs.record_outcome(
        lab(), actor(), job_id, request.form.get("outcome", ""), request.form.get("note", "")
    )
    flash("Build outcome recorded.", "ok")
    return _back()
