"""Sign-in, sign-out, the password change, the idle timeout and the role check used by pages."""

from __future__ import annotations

import re
import time
from functools import wraps
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import UserMixin, current_user, login_required, login_user, logout_user

from pocprint.domain.roles import Permission, may
from pocprint.services.actors import Actor
from pocprint.services.directory import sync_account
from pocprint.services.errors import AuthFailed
from pocprint.services.users import authenticate, change_password

bp = Blueprint("auth", __name__)

# Sent by the page's own scripts (static/js/board.js, refresh.js) on the requests they make
# by themselves: such a request is not the user's activity and never extends the session.
BACKGROUND_HEADER = "X-Pocprint-Background"
LAST_SEEN = "last_seen"
# What anyone may open (sign-in, style sheets and scripts, the API's description), what any
# signed-in user may (their own password, signing out), and what a one-time password allows.
# Every other route declares its permissions (`requires`, api.needs); the tests check that.
PUBLIC_ENDPOINTS = frozenset({"auth.login", "static", "api-docs.openapi_json"})
SIGNED_IN_ENDPOINTS = frozenset({"auth.password", "auth.logout"})
ONE_TIME_PASSWORD_ALLOWS = frozenset({"auth.password", "auth.logout", "static"})


class WebUser(UserMixin):
    def __init__(self, actor: Actor):
        self.actor = actor
        self.id = str(actor.user_id)

    def can(self, permission: str) -> bool:
        return may(self.actor.roles, Permission(permission))


def lab():
    return current_app.extensions["pocprint.lab"]


def actor() -> Actor:
    return current_user.actor


def requires(*permissions: Permission):
    """Page guard: signed in and holding one of the permissions (services check again).

    The permissions are kept on the view (`required_permissions`), so the tests can check
    every route against the permission table."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if not any(current_user.can(p) for p in permissions):
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_permissions = frozenset(permissions)
        return wrapped

    return decorator


_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


def _safe_next(target: str | None) -> str:
    """Only a path on this site: no scheme or host, no `//host` or `/\\host` (browsers read a
    backslash as a slash), no control characters or spaces (a newline would break the header)."""
    home = url_for("index")
    if not target or not target.startswith("/") or _UNSAFE.search(target):
        return home
    parts = urlsplit(target)
    if target.startswith("//") or parts.scheme or parts.netloc:
        return home
    return target


def is_background() -> bool:
    return request.headers.get(BACKGROUND_HEADER) == "1"


def _json_401(message: str):
    from pocprint.web.errors import error_json

    return error_json("AuthFailed", message, 401, "session_timed_out")


@bp.before_app_request
def _idle_timeout():
    """Sign out a browser session idle for longer than the site's timeout, on the server
    (the cookie's own expiry is only a hint the client may ignore). Background refreshes
    are checked but never count as activity."""
    if not current_user.is_authenticated or request.endpoint == "static":
        return None
    now = time.time()
    limit = lab().settings.session_timeout_minutes * 60
    last = session.get(LAST_SEEN)
    if last is not None and now - float(last) > limit:
        logout_user()
        session.pop(LAST_SEEN, None)
        message = "Your session timed out after inactivity; please sign in again."
        if request.path.startswith("/api/") or is_background():
            return _json_401(message)
        flash(message, "error")
        return redirect(url_for("auth.login", next=request.path))
    if not is_background():
        session[LAST_SEEN] = now
    return None


@bp.before_app_request
def _one_time_password():
    """Someone signed in with a password another person chose (a new account, a reset, the
    first admin) replaces it before anything else."""
    if not current_user.is_authenticated or not current_user.actor.must_change_password:
        return None
    if request.endpoint in ONE_TIME_PASSWORD_ALLOWS:
        return None
    message = "Choose your own password first: the one you signed in with was a one-time password."
    if request.path.startswith("/api/") or is_background():
        from pocprint.web.errors import error_json

        return error_json("Forbidden", message, 403, "password_change_required")
    flash(message, "error")
    return redirect(url_for("auth.password"))


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
        session.permanent = True
        session[LAST_SEEN] = time.time()
        if actor_.must_change_password:
            return redirect(url_for("auth.password"))
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
    return render_template("auth/password.html", one_time=actor().must_change_password)
