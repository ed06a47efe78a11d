"""The admin outbox page: every e-mail, webhook call and PACS archive, failures first, with
the last error, and a button to send a failed one again (after fixing its cause)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for

from pocprint.domain.roles import Permission
from pocprint.reads.outbox import outbox_counts, outbox_rows
from pocprint.services import outbox
from pocprint.store.db import read_session
from pocprint.web.auth import actor, lab, requires

bp = Blueprint("outbox", __name__, url_prefix="/admin/outbox")


@bp.route("/")
@requires(Permission.MANAGE_USERS)
def index():
    with read_session(lab().engine) as session:
        rows, counts = outbox_rows(session), outbox_counts(session)
    return render_template("admin/outbox.html", rows=rows, counts=counts)


@bp.route("/<int:message_id>/retry", methods=["POST"])
@requires(Permission.MANAGE_USERS)
def retry(message_id: int):
    outbox.retry(lab(), actor(), message_id)
    flash("Queued again: the worker sends it within a few seconds.", "ok")
    return redirect(url_for("outbox.index"), 303)
