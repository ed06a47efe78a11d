"""The admin status page: worker processes alive, queue depths, the oldest waiting step,
the dispatcher and its takeovers (the same report as `pocprint status`)."""

from __future__ import annotations

from flask import Blueprint, render_template

from pocprint.domain.roles import Permission
from pocprint.reads.workers import status
from pocprint.store.db import read_session
from pocprint.web.auth import lab, requires

bp = Blueprint("status", __name__, url_prefix="/admin/status")


@bp.route("/")
@requires(Permission.MANAGE_USERS)
def index():
    settings = lab().settings
    depths = {}
    if settings.worker_engine == "celery":
        from pocprint.distributed.queues import queue_depths

        depths = queue_depths(settings.broker_url, timeout_s=1.0)
    with read_session(lab().engine) as session:
        report = status(session, depths)
    return render_template("admin/status.html", report=report, engine=settings.worker_engine)
