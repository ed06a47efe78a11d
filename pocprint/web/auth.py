"""Sign-in, sign-out and the role check used by pages."""

from __future__ import annotations

import time
from functools import wraps

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import UserMixin, current_user, login_required, login_user, logout_user

from pocprint.domain.roles import Permission
from pocprint.services.actors import Actor
from pocprint.services.directory import sync_account
from pocprint.services.errors import AuthFailed
from pocprint.services.users import authenticate, change_password

bp = Blueprint("auth", __name__)


class WebUser(UserMixin):
    def __init__(self, actor: Actor):
        self.actor = actor
        self.id = str(actor.user_id)

    def can(self, permission: str) -> bool:
        from pocprint.domain.roles import may

        return may(self.actor.roles, Permission(permission))


def lab():
    return current_app.extensions["pocprint.lab"]


def actor() -> Actor:
    return current_user.actor


def requires(permission: Permission):
    """Page guard: signed in and holding the permission (services check again)."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if not current_user.can(permission):
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("index")


LAST_SEEN = "last_seen"


@bp.before_app_request
def _idle_timeout():
    """Sign out a browser session idle for longer than the site's timeout, on the server
    (the cookie's own expiry is only a hint the client may ignore)."""
    if not current_user.is_authenticated or request.endpoint == "static":
        return None
    from flask import jsonify, session

    now = time.time()
    limit = lab().settings.session_timeout_minutes * 60
    last = session.get(LAST_SEEN)
    if last is not None and now - float(last) > limit:
        logout_user()
        session.pop(LAST_SEEN, None)
        message = "Your session timed out after inactivity; please sign in again."
        if request.path.startswith("/api/"):
            return jsonify({"error": "AuthFailed", "message": message}), 401
        flash(message, "error")
        return redirect(url_for("auth.login", next=request.path))
    session[LAST_SEEN] = now
    return None


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "POST":
        username = request.form.get("username", "")
        try:
            sync_account(lab(), username)  # a directory person's account, roles from groups
            actor_ = authenticate(lab(), username, request.form.get("password", ""))
        except AuthFailed as exc:
            flash(str(exc), "error")
            return render_template("auth/login.html"), 401
        login_user(WebUser(actor_))
        from flask import session

        session.permanent = True
        session[LAST_SEEN] = time.time()
        return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html")


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    logout_user()
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password():
    if request.method == "POST":
        if request.form.get("new", "") != request.form.get("repeat", ""):
            flash("The two new passwords differ.", "error")
        else:
            change_password(
                lab(), actor(), request.form.get("current", ""), request.form.get("new", "")
            )
            flash("Password changed.", "ok")
            return redirect(url_for("index"), 303)
    return render_template("auth/password.html")
