"""Transport and browser security: the reverse proxy, cookies, and the headers every response
carries.

pocprint serves plain HTTP; TLS ends at a reverse proxy (config/nginx/pocprint.conf). The
proxy's X-Forwarded-* headers are believed only from the number of proxies the site trusts
(`[proxy] trusted_proxies`), so a browser cannot claim to be on HTTPS or at another address.
When the request came over TLS the session cookie is `Secure` and HSTS is sent.
"""

from __future__ import annotations

import secrets

from flask import Flask, g, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

HSTS = "max-age=31536000; includeSubDomains"


def content_security_policy(nonce: str) -> str:
    """Scripts only from pocprint's own files. The one inline element allowed is the 3D
    viewer's import map (JSON naming the vendored three.js files, no code), by a per-response
    nonce; inline event handlers and injected scripts never run. No framing by other sites."""
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def csp_nonce() -> str:
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


class TlsAwareSessionInterface(SecureCookieSessionInterface):
    """The session cookie is `Secure` whenever the request came over TLS (directly or through
    a trusted proxy), so it never travels back over plain HTTP."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def install(app: Flask, trusted_proxies: int) -> None:
    if trusted_proxies > 0:
        n = trusted_proxies
        # No X-Forwarded-Prefix: pocprint is served at the root of its host name.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)
    app.session_interface = TlsAwareSessionInterface()
    app.jinja_env.globals["csp_nonce"] = csp_nonce

    @app.after_request
    def _security_headers(response):
        headers = response.headers
        headers["Content-Security-Policy"] = content_security_policy(csp_nonce())
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "same-origin"
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(self), microphone=(), geolocation=()")
        if request.is_secure:
            headers["Strict-Transport-Security"] = HSTS
        if request.endpoint != "static":
            # Pages and answers hold patient-related data: never kept by shared caches.
            headers.setdefault("Cache-Control", "no-store")
        return response
