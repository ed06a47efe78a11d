"""Mapping failures to answers: one JSON error shape for the whole API (the `Error` schema of
the OpenAPI document), pages for the browser.

Every API error is `{"error", "code", "message"}` plus `fields` for input problems: `error`
names the kind (NotFound, Invalid, AuthFailed...), `code` is a stable snake_case code a
script can test, `message` says what to do in the lab's words.
"""

from __future__ import annotations

import logging
import re

import marshmallow as ma
from flask import Flask, flash, jsonify, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from pocprint.services.errors import Forbidden, ServiceError
from pocprint.store.blobs import StoreFull

log = logging.getLogger(__name__)


class ErrorOut(ma.Schema):
    """The body of every API error answer."""

    class Meta:
        unknown = ma.RAISE  # documented with additionalProperties: false

    error = ma.fields.String(
        required=True, metadata={"description": "kind: NotFound, Invalid, AuthFailed..."}
    )
    code = ma.fields.String(required=True, metadata={"description": "stable snake_case code"})
    message = ma.fields.String(required=True, metadata={"description": "what to do"})
    fields = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        metadata={"description": "problems by input field"},
    )


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def error_json(
    kind: str, message: str, status: int, code: str | None = None, fields=None, headers=None
):
    body = {"error": kind, "code": code or snake(kind), "message": message}
    if fields:
        body["fields"] = fields
    return jsonify(body), status, headers or {}


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _flat_fields(messages) -> dict[str, list[str]]:
    """webargs' nested validation messages as field -> sentences ("anatomy.0.region")."""
    out: dict[str, list[str]] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            out.setdefault(prefix or "body", []).extend(value)
        elif isinstance(value, list | tuple):
            for i, inner in enumerate(value):
                walk(f"{prefix}.{i}", inner)
        else:
            out.setdefault(prefix or "body", []).append(str(value))

    for location in (messages or {}).values():  # {"json": {...}} / {"files": {...}}
        walk("", location)
    return out


def http_error(exc: HTTPException):
    """Werkzeug's HTTP errors (404, 405, webargs' 422...) and unhandled exceptions (500)."""
    if not wants_json():
        return exc
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    if status == 422 and (data.get("messages") or data.get("errors")):
        fields = _flat_fields(data.get("messages") or data.get("errors"))
        message = "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items())
        return error_json("Invalid", message, 422, "invalid_request", fields)
    if status >= 500:
        return error_json("InternalError", "pocprint failed on this request", status)
    message = data.get("message") or exc.description or exc.name
    return error_json(exc.__class__.__name__, message, status, headers=data.get("headers"))


def _unavailable(title: str, message: str, status: int):
    page = render_template("errors/unavailable.html", title=title, message=message)
    return page, status, {"Retry-After": "10"}


def register(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        if wants_json():
            return error_json(
                type(exc).__name__,
                str(exc),
                exc.http_status,
                getattr(exc, "code", None),
                getattr(exc, "fields", None),
            )
        if isinstance(exc, Forbidden):
            # Not a problem to fix in the form: the page's role check and the service's
            # disagreed, or a narrower rule applied. Answer 403, never a redirect.
            return exc.args[0] if exc.args else "Forbidden", 403
        flash(str(exc), "error")
        return redirect(request.referrer or url_for("board.index")), 303

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        message = "The form expired or did not come from this site; reload the page and try again."
        if wants_json():
            return error_json("CSRFError", message, 400, "csrf")
        flash(message, "error")
        return redirect(request.referrer or url_for("board.index")), 303

    @app.errorhandler(StoreFull)
    def _store_full(exc: StoreFull):
        log.error("file store full: %s", exc)
        message = (
            "The file store is full, so nothing was stored. Ask the administrator to free space."
        )
        if wants_json():
            return error_json("StoreFull", message, 507, "store_full")
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
        if wants_json():
            return error_json(
                "DatabaseUnavailable",
                message,
                503,
                "database_unavailable",
                None,
                {"Retry-After": "10"},
            )
        return _unavailable("The database is not answering", message, 503)

    @app.errorhandler(413)
    def _too_large(_exc):
        lab = app.extensions["pocprint.lab"]
        limit = lab.settings.max_upload_bytes // (1024 * 1024)
        message = f"The file is larger than the upload limit of {limit} MB; nothing was stored."
        if wants_json():
            return error_json("TooLarge", message, 413, "too_large")
        flash(message, "error")
        return redirect(request.referrer or url_for("board.index")), 303
