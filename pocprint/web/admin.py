"""User administration for the admin role: accounts, roles, one-time passwords, unlocking,
deactivation and API tokens. Every action goes through services.users or services.tokens,
which audit it."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from pocprint.domain.roles import Permission, Role
from pocprint.reads.tokens import token_rows
from pocprint.services import tokens as token_service
from pocprint.services import users as user_service
from pocprint.store.db import read_session
from pocprint.store.models import utcnow
from pocprint.web.auth import actor, lab, requires

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _roles_from_form() -> set[Role]:
    known = {r.value for r in Role}
    return {Role(r) for r in request.form.getlist("roles") if r in known}


def _page(created: dict | None = None, status: int = 200):
    with read_session(lab().engine) as session:
        rows = user_service.user_list(session)
    return (
        render_template(
            "admin/users.html", users=rows, roles=list(Role), created=created, now=utcnow()
        ),
        status,
    )


@bp.route("/users", methods=["GET", "POST"])
@requires(Permission.MANAGE_USERS)
def users():
    created = None
    if request.method == "POST":
        password = user_service.generate_password()
        username = request.form.get("username", "").strip()
        user_service.create_user(
            lab(),
            actor(),
            username,
            request.form.get("full_name", ""),
            password,
            _roles_from_form(),
        )
        created = {"username": username, "password": password}
    return _page(created)


@bp.route("/users/<int:user_id>/roles", methods=["POST"])
@requires(Permission.MANAGE_USERS)
def roles(user_id: int):
    user_service.set_roles(lab(), actor(), user_id, _roles_from_form())
    flash("Roles changed.", "ok")
    return redirect(url_for("admin.users"), 303)


@bp.route("/users/<int:user_id>/active", methods=["POST"])
@requires(Permission.MANAGE_USERS)
def active(user_id: int):
    make_active = request.form.get("active") == "true"
    user_service.set_active(lab(), actor(), user_id, make_active, request.form.get("reason", ""))
    flash("Account activated." if make_active else "Account deactivated.", "ok")
    return redirect(url_for("admin.users"), 303)


@bp.route("/users/<int:user_id>/unlock", methods=["POST"])
@requires(Permission.MANAGE_USERS)
def unlock(user_id: int):
    user_service.unlock(lab(), actor(), user_id)
    flash("Account unlocked.", "ok")
    return redirect(url_for("admin.users"), 303)


@bp.route("/users/<int:user_id>/password", methods=["POST"])
@requires(Permission.MANAGE_USERS)
def reset_password(user_id: int):
    password = user_service.reset_password(lab(), actor(), user_id)
    with read_session(lab().engine) as session:
        username = next(u.username for u in user_service.user_list(session) if u.id == user_id)
    return _page({"username": username, "password": password})


@bp.route("/tokens", methods=["GET", "POST"])
@requires(Permission.MANAGE_USERS)
def tokens():
    created = None
    if request.method == "POST":
        username = request.form.get("username", "")
        name = request.form.get("name", "")
        days = request.form.get("days", "")
        _id, token = token_service.create_token(
            lab(), actor(), username, name, int(days) if days.strip().isdigit() else 0
        )
        created = {"username": username, "name": name.strip(), "token": token}
    with read_session(lab().engine) as session:
        rows, people = token_rows(session), user_service.user_list(session)
    settings = lab().settings
    return render_template(
        "admin/tokens.html",
        tokens=rows,
        users=people,
        created=created,
        default_days=settings.token_days,
        max_days=settings.token_max_days,
    )


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@requires(Permission.MANAGE_USERS)
def revoke_token(token_id: int):
    token_service.revoke_token(lab(), actor(), token_id, request.form.get("reason", ""))
    flash(f"Token {token_id} revoked.", "ok")
    return redirect(url_for("admin.tokens"), 303)
