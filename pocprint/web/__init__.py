"""The HTTP entry point: application factory, sign-in, CSRF and error mapping."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, flash, jsonify, redirect, render_template, request, url_for
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import exc as sa_exc

from pocprint.config import REPO_ROOT, Settings, load_settings
from pocprint.services.errors import ServiceError
from pocprint.services.lab import Lab, build_lab
from pocprint.services.users import load_actor
from pocprint.store.blobs import StoreFull
from pocprint.web.auth import WebUser

csrf = CSRFProtect()
log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, lab: Lab | None = None) -> Flask:
    settings = settings or load_settings()
    lab = lab or build_lab(settings)
    app = Flask(
        __name__,
        template_folder=str(REPO_ROOT / "templates"),
        static_folder=str(REPO_ROOT / "static"),
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
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
        fhir,  # noqa: F401  (FHIR routes on the API blueprint, issue 11)
        filters,
        parts,
        review,
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
        outbox,  # hospital integration (issue 11)
        postprocessing,
    )

    app.register_blueprint(outbox.bp)

    app.register_blueprint(materials.bp)
    app.register_blueprint(postprocessing.bp)
    app.register_blueprint(auditor.bp)
    api.init_api(app, csrf)
    _register_errors(app)
    filters.register(app)

    @app.route("/")
    def index():
        from flask_login import current_user

        if (
            current_user.is_authenticated
            and current_user.can("manage_users")
            and not (current_user.can("view") and current_user.can("operate_printers"))
        ):
            return redirect(url_for("admin.users"))
        return redirect(url_for("board.index"))

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return app


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _unavailable(title: str, message: str, status: int):
    page = render_template("errors/unavailable.html", title=title, message=message)
    return page, status, {"Retry-After": "10"}


def _register_errors(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        if _wants_json():
            body = {"error": type(exc).__name__, "message": str(exc)}
            if getattr(exc, "code", None):
                body["code"] = exc.code
            return jsonify(body), exc.http_status
        flash(str(exc), "error")
        return redirect(request.referrer or url_for("board.index")), 303

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        message = "The form expired or did not come from this site; reload the page and try again."
        if _wants_json():
            return jsonify({"error": "CSRFError", "message": message}), 400
        flash(message, "error")
        return redirect(request.referrer or url_for("board.index")), 303

    @app.errorhandler(StoreFull)
    def _store_full(exc: StoreFull):
        log.error("file store full: %s", exc)
        message = (
            "The file store is full, so nothing was stored. Ask the administrator to free space."
        )
        if _wants_json():
            return jsonify({"error": "StoreFull", "code": "store_full", "message": message}), 507
        return _unavailable("The file store is full", message, 507)

    @app.errorhandler(sa_exc.OperationalError)
    @app.errorhandler(sa_exc.InterfaceError)
    def _database_unreachable(exc):
        # A lost connection or a locked-out database: say so, never a stack trace; the
        # connection pool reconnects (pre-ping) as soon as the database answers again.
        log.error("database unreachable: %s", type(exc.orig).__name__ if exc.orig else exc)
        message = (
            "The database is not answering. Nothing you sent was saved; pocprint keeps trying "
            "and this page works again as soon as the database is back."
        )
        if _wants_json():
            body = {"error": "DatabaseUnavailable", "code": "database_unavailable"}
            return jsonify({**body, "message": message}), 503, {"Retry-After": "10"}
        return _unavailable("The database is not answering", message, 503)

    @app.errorhandler(413)
    def _too_large(_exc):
        lab: Lab = app.extensions["pocprint.lab"]
        limit = lab.settings.max_upload_bytes // (1024 * 1024)
        message = f"The file is larger than the upload limit of {limit} MB; nothing was stored."
        if _wants_json():
            return jsonify({"error": "TooLarge", "code": "too_large", "message": message}), 413
        flash(message, "error")
        return redirect(request.referrer or url_for("board.index")), 303
