"""The HTTP entry point: application factory, sign-in, CSRF and error mapping."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, redirect, url_for
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from werkzeug.routing import IntegerConverter

from pocprint.config import REPO_ROOT, Settings, load_settings
from pocprint.domain.roles import Permission
from pocprint.services.lab import Lab, build_lab
from pocprint.services.users import load_actor
from pocprint.web.auth import WebUser

csrf = CSRFProtect()
log = logging.getLogger(__name__)
ROW_ID_MAX = 2**31 - 1  # PostgreSQL INTEGER


class RowId(IntegerConverter):
    """`<int:...>` in every route: a row id from 1 to 2^31-1. A larger number matches no
    route (404) instead of overflowing the database's integer (found by Schemathesis); the
    bounds appear in the OpenAPI document."""

    def __init__(self, url_map, fixed_digits=0, min=1, max=ROW_ID_MAX, signed=False):  # noqa: A002
        super().__init__(url_map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def create_app(settings: Settings | None = None, lab: Lab | None = None) -> Flask:
    settings = settings or load_settings()
    lab = lab or build_lab(settings)
    app = Flask(
        __name__,
        template_folder=str(REPO_ROOT / "templates"),
        static_folder=str(REPO_ROOT / "static"),
    )
    app.url_map.converters["int"] = RowId
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        # Lax, not Strict: a QR code scanned on a label opens the device record signed in.
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_timeout_minutes),
        WTF_CSRF_TIME_LIMIT=None,
        TESTING=settings.testing,
        API_TITLE="pocprint API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
    )
    app.extensions["pocprint.lab"] = lab
    csrf.init_app(app)

    login = LoginManager(app)
    login.login_view = "auth.login"
    login.login_message = "Please sign in."
    login.session_protection = "strong"

    @login.user_loader
    def _load(user_id: str):
        actor = load_actor(lab, int(user_id))
        return WebUser(actor) if actor else None

    from pocprint.web import (
        admin,
        api,
        auth,
        board,
        cases,
        devices,
        errors,
        fhir,  # noqa: F401  (FHIR routes on the API blueprint, issue 11)
        filters,
        parts,
        review,
        security,
    )

    app.register_blueprint(auth.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(cases.bp)
    app.register_blueprint(board.bp)
    app.register_blueprint(devices.bp)
    app.register_blueprint(parts.bp)
    app.register_blueprint(review.bp)
    from pocprint.web import (  # traceability (issue 6)
        auditor,
        materials,
        metrics,
        outbox,  # hospital integration (issue 11)
        outcomes,
        planning,  # planning and outcomes (issue 12)
        postprocessing,
        status,  # scale-out (issue 16)
    )

    app.register_blueprint(outbox.bp)
    app.register_blueprint(status.bp)

    app.register_blueprint(materials.bp)
    app.register_blueprint(postprocessing.bp)
    app.register_blueprint(auditor.bp)
    app.register_blueprint(planning.bp)
    app.register_blueprint(outcomes.bp)
    app.register_blueprint(metrics.bp)
    api.init_api(app, csrf)
    errors.register(app)
    filters.register(app)
    security.install(app, settings.trusted_proxies)

    @app.route("/")
    @auth.requires(Permission.VIEW)
    def index():
        from flask_login import current_user

        if (
            current_user.is_authenticated
            and current_user.can("manage_users")
            and not (current_user.can("view") and current_user.can("operate_printers"))
        ):
            return redirect(url_for("admin.users"))
        return redirect(url_for("board.index"))

    return app
