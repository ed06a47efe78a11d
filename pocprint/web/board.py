"""The fleet board: printer tiles and the queue, refreshed in place every few seconds."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from pocprint.domain.roles import Permission
from pocprint.reads import board as board_reads
from pocprint.services import dispatch, jobs
from pocprint.store.db import read_session
from pocprint.web.auth import actor, lab, requires

bp = Blueprint("board", __name__, url_prefix="/board")


def _data() -> dict:
    with read_session(lab().engine) as session:
        return {
            "printers": board_reads.printers(session),
            "intake": board_reads.intake(session),
            "queue": board_reads.queue(session),
            "recent": board_reads.recent_jobs(session),
        }


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
    dispatch.confirm_plate_clear(lab(), actor(), printer_id)
    flash("Plate confirmed clear. The next job for this printer will start.", "ok")
    return redirect(url_for("board.index"), 303)


@bp.route("/jobs/<int:job_id>/cancel", methods=["POST"])
@requires(Permission.OPERATE_PRINTERS)
def cancel(job_id: int):
    jobs.cancel_job(lab(), actor(), job_id, request.form.get("reason", ""))
    flash("Job cancelled.", "ok")
    return redirect(request.referrer or url_for("board.index"), 303)


@bp.route("/jobs/<int:job_id>/resolve", methods=["POST"])
@requires(Permission.OPERATE_PRINTERS)
def resolve(job_id: int):
    jobs.resolve_interrupted(
        lab(), actor(), job_id, request.form.get("resolution", ""), request.form.get("reason", "")
    )
    flash("Interruption resolved.", "ok")
    return redirect(request.referrer or url_for("board.index"), 303)


@bp.route("/jobs/<int:job_id>/outcome", methods=["POST"])
@requires(Permission.RECORD_OUTCOME)
def outcome(job_id: int):
    jobs.record_outcome(
        lab(), actor(), job_id, request.form.get("outcome", ""), request.form.get("note", "")
    )
    flash("Build outcome recorded.", "ok")
    return redirect(request.referrer or url_for("board.index"), 303)
