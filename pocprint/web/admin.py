"""User administration for the admin role: list accounts, add one with a one-time password."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from sqlmodel import select

from pocprint.domain.roles import Permission, Role
from pocprint.services.users import create_user, generate_password
from pocprint.store.db import read_session
from pocprint.store.models import User
from pocprint.web.auth import actor, lab, requires

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _users() -> list[User]:
    with read_session(lab().engine) as session:
        return session.exec(select(User).order_by(User.username)).all()


@bp.route("/users", methods=["GET", "POST"])
@requires(Permission.MANAGE_USERS)
def users():
    created = None
    if request.method == "POST":
        roles = {Role(r) for r in request.form.getlist("roles") if r in {x.value for x in Role}}
        password = generate_password()
        username = request.form.get("username", "").strip()
        create_user(lab(), actor(), username, request.form.get("full_name", ""), password, roles)
        created = {"username": username, "password": password}
    return render_template("admin/users.html", users=_users(), roles=list(Role), created=created)
