"""The web side of issue 14: safe redirects after sign-in, security headers and CSP on every
response, cookies and HSTS behind a TLS proxy, background refreshes that never keep an idle
session alive, the case read back through the API, and one error shape everywhere."""

from __future__ import annotations

import re
import time

import jsonschema
import pytest

from pocprint.config import REPO_ROOT
from pocprint.services.tokens import create_api_token
from pocprint.web import create_app
from pocprint.web.auth import BACKGROUND_HEADER, LAST_SEEN

from conftest import PASSWORD, order_json

TEMPLATES = REPO_ROOT / "templates"


@pytest.fixture
def app(lab, people):
    return create_app(lab.settings, lab)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert match, "page has no CSRF token"
    return match.group(1)


def login(client, username: str, password: str = PASSWORD, next_: str | None = None):
    page = client.get("/login").get_data(as_text=True)
    url = "/login" if next_ is None else "/login?" + next_
    return client.post(
        url, data={"username": username, "password": password, "csrf_token": csrf_of(page)}
    )


# ------------------------------------------------------------------ redirects after sign-in


@pytest.mark.parametrize(
    "query",
    [
        "next=/%5Cevil.example",  # /\evil.example: browsers read the backslash as a slash
        "next=//evil.example/x",
        "next=/%09/evil.example",
        "next=https://evil.example/",
        "next=/cases/%0d%0aSet-Cookie:%20x=1",  # a newline would break the header (was a 500)
        "next=/board%0a",
        "next=javascript:alert(1)",
        "next=",
    ],
)
def test_sign_in_never_redirects_off_the_site(app, query):
    response = login(app.test_client(), "tech", next_=query)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_sign_in_returns_to_the_page_asked_for(app):
    response = login(app.test_client(), "tech", next_="next=/cases/%3Fq%3Dx")
    assert response.status_code == 302 and response.headers["Location"] == "/cases/?q=x"


def test_a_newline_in_next_on_the_login_page_is_no_error(app):
    client = app.test_client()
    assert client.get("/login?next=/x%0d%0aLocation:%20http://evil").status_code == 200


# ------------------------------------------------------------------------ security headers


def _check_headers(response, secure: bool = False) -> None:
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "script-src 'self' 'nonce-" in csp and "object-src 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert ("Strict-Transport-Security" in response.headers) is secure


def test_every_kind_of_response_carries_the_security_headers(app, lab):
    client = app.test_client()
    anonymous = [
        client.get("/login"),
        client.get("/board/"),  # redirect to sign-in
        client.get("/static/css/app.css"),
        client.get("/api/v1/cases"),  # 401 JSON
        client.get("/api/openapi.json"),
        client.get("/no/such/page"),
    ]
    login(client, "tech")
    signed_in = [
        client.get("/board/"),
        client.get("/cases/999999"),
        client.post("/board/printers/1/plate-clear"),  # no CSRF token
    ]
    for response in anonymous + signed_in:
        _check_headers(response)


def test_templates_have_no_inline_script_or_event_handler():
    """The CSP allows scripts from pocprint's files only; the one inline element is the 3D
    viewer's import map (JSON, no code), allowed by the response's nonce."""
    found = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            if "src=" not in tag and not ('type="importmap"' in tag and "csp_nonce()" in tag):
                found.append(f"{path.name}: {tag}")
        found += [f"{path.name}: {m}" for m in re.findall(r"\son[a-z]+\s*=", text)]
        found += [f"{path.name}: style attribute" for _ in re.findall(r"\sstyle\s*=", text)]
    assert found == []


def test_cookies_are_secure_and_hsts_is_sent_only_over_tls_through_a_trusted_proxy(lab, people):
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.1.2.3"}
    behind_proxy = create_app(lab.settings.with_(trusted_proxies=1), lab).test_client()
    page = behind_proxy.get("/login", headers=https)
    _check_headers(page, secure=True)
    cookie = page.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # Plain HTTP through the proxy: no Secure flag (the browser would drop the cookie).
    plain = behind_proxy.get("/login", headers={"X-Forwarded-Proto": "http"})
    assert "Secure" not in plain.headers["Set-Cookie"]
    # Reached directly (no trusted proxy): a forged header is not believed.
    direct = create_app(lab.settings, lab).test_client().get("/login", headers=https)
    _check_headers(direct, secure=False)
    assert "Secure" not in direct.headers["Set-Cookie"]


# ---------------------------------------------------------------- idle timeout and refreshes


def test_background_refreshes_do_not_keep_an_idle_session_alive(app, lab):
    client = app.test_client()
    login(client, "tech")
    limit = lab.settings.session_timeout_minutes * 60
    nearly = time.time() - limit + 30
    with client.session_transaction() as s:
        s[LAST_SEEN] = nearly
    background = {BACKGROUND_HEADER: "1"}
    for path in ("/board/live", "/cases/"):  # the board's and the case page's refreshes
        assert client.get(path, headers=background).status_code == 200
    with client.session_transaction() as s:
        assert s[LAST_SEEN] == nearly  # not counted as activity
    with client.session_transaction() as s:
        s[LAST_SEEN] = time.time() - limit - 1
    timed_out = client.get("/board/live", headers=background)
    assert timed_out.status_code == 401 and timed_out.json["code"] == "session_timed_out"
    again = client.get("/board/")
    assert again.status_code == 302 and "/login" in again.headers["Location"]


def test_what_the_user_does_still_counts_as_activity(app, lab):
    client = app.test_client()
    login(client, "tech")
    old = time.time() - 60
    with client.session_transaction() as s:
        s[LAST_SEEN] = old
    assert client.get("/board/").status_code == 200
    with client.session_transaction() as s:
        assert s[LAST_SEEN] > old


def test_the_page_scripts_mark_their_requests_as_background():
    for name in ("board.js", "refresh.js"):
        text = (REPO_ROOT / "static" / "js" / name).read_text()
        assert f'"{BACKGROUND_HEADER}": "1"' in text, name


# --------------------------------------------------------------- the API: case, error shape


def _error_schema(client) -> dict:
    spec = client.get("/api/openapi.json").get_json()
    ref = spec["components"]["responses"]["DEFAULT_ERROR"]["content"]["application/json"]
    schema = spec["components"]["schemas"][ref["schema"]["$ref"].rsplit("/", 1)[1]]
    assert schema["additionalProperties"] is False
    return schema


def test_a_case_is_read_back_through_the_api(app, lab):
    client = app.test_client()
    auth = {"Authorization": f"Bearer {create_api_token(lab, 'tech')}"}
    created = client.post("/api/v1/cases", json=order_json(), headers=auth)
    assert created.status_code == 201, created.get_data(as_text=True)
    case_id = created.json["id"]
    read = client.get(f"/api/v1/cases/{case_id}", headers=auth)
    assert read.status_code == 200, read.get_data(as_text=True)
    body = read.json
    assert body["id"] == case_id and body["patient_code"] == "PX-0001"
    assert body["needed_by"] == order_json()["needed_by"]
    assert body["parts"] == [] and body["jobs"] == []
    assert "accession_number" not in body and "patient_identifiers" not in body


def test_every_api_error_has_the_documented_shape(app, lab):
    client = app.test_client()
    schema = _error_schema(client)
    tech = {"Authorization": f"Bearer {create_api_token(lab, 'tech')}"}
    auditor = {"Authorization": f"Bearer {create_api_token(lab, 'auditor')}"}
    answers = {
        401: client.get("/api/v1/cases"),
        "bad token": client.get("/api/v1/cases", headers={"Authorization": "Bearer pp_nope"}),
        403: client.post("/api/v1/cases", json=order_json(), headers=auditor),
        404: client.get("/api/v1/cases/424242", headers=tech),
        "no route": client.get("/api/v1/no-such-thing", headers=tech),
        405: client.delete("/api/v1/cases", headers=tech),
        422: client.post("/api/v1/cases", json={"patient_code": 5}, headers=tech),
        "service 422": client.post(
            "/api/v1/cases", json=order_json(patient_code="DoeJane"), headers=tech
        ),
        400: client.get("/api/v1/audit/devices?date_from=yesterday", headers=auditor),
    }
    for what, response in answers.items():
        assert response.status_code >= 400, what
        assert response.is_json, what
        jsonschema.validate(response.json, schema)
        assert response.json["code"] and response.json["message"], what
    assert answers[422].json["fields"]["patient_code"]
    assert "pseudonymous" in answers["service 422"].json["message"]


def test_unknown_names_get_the_lock_message_of_known_ones_on_the_page(app, lab):
    def last_answer(name):
        client = app.test_client()
        for _ in range(lab.settings.lockout_attempts + 1):
            response = login(client, name, "a wrong password again")
        return response.status_code, re.sub(r"\d\d:\d\d", "HH:MM", response.get_data(as_text=True))

    known, unknown = last_answer("tech"), last_answer("nobody.here")
    assert known[0] == unknown[0] == 401
    assert "locked until HH:MM" in known[1] and "locked until HH:MM" in unknown[1]


def test_the_admin_page_lists_creates_and_revokes_tokens(app, lab):
    admin = app.test_client()
    login(admin, "admin")
    page = admin.get("/admin/tokens").get_data(as_text=True)
    made = admin.post(
        "/admin/tokens",
        data={"csrf_token": csrf_of(page), "username": "tech", "name": "ward script", "days": "7"},
    ).get_data(as_text=True)
    token = re.search(r'<code class="password">(pp_[^<]+)</code>', made).group(1)
    api = app.test_client()
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/cases", headers=bearer).status_code == 200
    listed = admin.get("/admin/tokens").get_data(as_text=True)
    assert "ward script" in listed and token not in listed
    token_id = re.search(r'id="token-(\d+)"><td>\d+</td><td>ward script', listed).group(1)
    admin.post(
        f"/admin/tokens/{token_id}/revoke",
        data={"csrf_token": csrf_of(listed), "reason": "script retired"},
    )
    refused = api.get("/api/v1/cases", headers=bearer)
    assert refused.status_code == 401 and refused.json["code"] == "bad_token"
    assert "revoked (script retired)" in admin.get("/admin/tokens").get_data(as_text=True)


def test_ids_beyond_the_database_integer_are_not_found_not_a_server_error(app, lab):
    """Found by Schemathesis: /api/v1/jobs/50226655529813300740096 overflowed the database."""
    client = app.test_client()
    auth = {"Authorization": f"Bearer {create_api_token(lab, 'tech')}"}
    for path in ("/api/v1/jobs/50226655529813300740096", "/api/v1/jobs/2147483648/slices"):
        response = client.get(path, headers=auth)
        assert response.status_code == 404 and response.json["code"] == "not_found", path
    assert client.get("/api/v1/jobs/2147483647", headers=auth).status_code == 404
    login(client, "tech")
    assert client.get("/cases/99999999999999999999").status_code == 404
