"""The web entry points on a real database: sign-in, CSRF, server-side role checks, forms,
bad uploads through HTTP, and the OpenAPI document."""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from pocprint.services.tokens import create_api_token
from pocprint.store.db import read_session
from pocprint.store.models import Case, Part
from pocprint.web import create_app

from conftest import PASSWORD, order_form, order_json


@pytest.fixture
def app(lab, people):
    return create_app(lab.settings, lab)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert match, "page has no CSRF token"
    return match.group(1)


def login(client, username: str, password: str = PASSWORD):
    page = client.get("/login").get_data(as_text=True)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(page)},
    )


def test_pages_need_sign_in(app):
    client = app.test_client()
    for path in ("/board/", "/cases/", "/cases/new", "/board/live"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


def test_login_without_csrf_token_is_rejected(app):
    client = app.test_client()
    response = client.post("/login", data={"username": "tech", "password": PASSWORD})
    assert response.status_code in (302, 303, 400)
    assert client.get("/board/").status_code == 302  # still not signed in


def test_wrong_password_is_refused(app):
    client = app.test_client()
    assert login(client, "tech", "nope").status_code == 401
    assert client.get("/board/").status_code == 302


def test_technician_creates_a_case_through_the_form(app, lab):
    client = app.test_client()
    assert login(client, "tech").status_code == 302
    page = client.get("/cases/new").get_data(as_text=True)
    response = client.post(
        "/cases/new",
        data=dict(
            order_form(patient_code="PX-77", indication="Complex acetabular fracture"),
            csrf_token=csrf_of(page),
        ),
    )
    assert response.status_code == 303
    detail = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "PX-77" in detail and "Upload a mesh" in detail
    with read_session(lab.engine) as s:
        assert s.exec(select(Case.patient_code)).all() == ["PX-77"]


def test_form_post_without_csrf_changes_nothing(app, lab):
    client = app.test_client()
    login(client, "tech")
    response = client.post(
        "/cases/new",
        data=order_form(patient_code="PX-1"),
    )
    assert response.status_code == 303
    with read_session(lab.engine) as s:
        assert s.exec(select(Case)).all() == []


@pytest.mark.parametrize(
    ("user", "path", "allowed"),
    [
        ("rad", "/cases/new", False),
        ("auditor", "/cases/new", False),
        ("admin", "/cases/new", False),
        ("tech", "/cases/new", True),
        ("presc", "/cases/new", True),
        ("auditor", "/board/", True),
        ("rad", "/cases/", True),
    ],
)
def test_pages_check_the_role_on_the_server(app, user, path, allowed):
    client = app.test_client()
    login(client, user)
    assert (client.get(path).status_code == 200) is allowed


def test_radiologist_cannot_post_a_plate_clear(app, lab):
    client = app.test_client()
    login(client, "rad")
    token = csrf_of(client.get("/board/").get_data(as_text=True))
    assert (
        client.post("/board/printers/1/plate-clear", data={"csrf_token": token}).status_code == 403
    )


def test_bad_upload_through_the_form_shows_the_reason_and_stores_nothing(app, lab):
    client = app.test_client()
    login(client, "tech")
    page = client.get("/cases/new").get_data(as_text=True)
    created = client.post(
        "/cases/new",
        data=dict(
            order_form(patient_code="PX-9", device_type="surgical_guide"),
            csrf_token=csrf_of(page),
        ),
    )
    case_url = created.headers["Location"]
    token = csrf_of(client.get(case_url).get_data(as_text=True))
    import io

    response = client.post(
        case_url + "/parts",
        data={"csrf_token": token, "mesh": (io.BytesIO(b""), "empty.stl")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert "empty" in response.get_data(as_text=True).lower()
    with read_session(lab.engine) as s:
        assert s.exec(select(Part)).all() == []


def test_api_needs_a_token_or_a_session_with_csrf(app, lab):
    client = app.test_client()
    assert client.get("/api/v1/cases").status_code == 401
    assert client.get("/api/v1/cases", headers={"Authorization": "Bearer nope"}).status_code == 401
    token = create_api_token(lab, "tech")
    auth = {"Authorization": f"Bearer {token}"}
    body = order_json(patient_code="PX-5")
    assert client.post("/api/v1/cases", json=body, headers=auth).status_code == 201
    # A signed-in browser session must send the CSRF token for state changes.
    login(client, "tech")
    assert client.post("/api/v1/cases", json=body).status_code == 400
    token = csrf_of(client.get("/board/").get_data(as_text=True))
    assert (
        client.post("/api/v1/cases", json=body, headers={"X-CSRFToken": token}).status_code == 201
    )


def test_api_refuses_bad_bodies_and_wrong_roles(app, lab):
    client = app.test_client()
    rad = {"Authorization": f"Bearer {create_api_token(lab, 'rad')}"}
    tech = {"Authorization": f"Bearer {create_api_token(lab, 'tech')}"}
    body = order_json(patient_code="PX-5")
    assert client.post("/api/v1/cases", json=body, headers=rad).status_code == 403
    bad = dict(body, device_type="implant")
    assert client.post("/api/v1/cases", json=bad, headers=tech).status_code == 422
    response = client.post("/api/v1/cases", json=dict(body, patient_code="Jane Doe"), headers=tech)
    assert response.status_code == 422 and "pseudonymous" in response.json["message"]


def test_openapi_document_lists_the_workflow(app):
    spec = app.test_client().get("/api/openapi.json").json
    assert spec["openapi"].startswith("3.")
    for path in (
        "/api/v1/cases",
        "/api/v1/cases/{case_id}/parts",
        "/api/v1/parts/{part_id}/approval",
        "/api/v1/queue",
        "/api/v1/printers/{printer_id}/plate-clear",
        "/api/v1/jobs/{job_id}/outcome",
        "/api/v1/devices/{serial}",
    ):
        assert path in spec["paths"], path


def test_admin_adds_a_user_who_can_then_sign_in(app, lab):
    client = app.test_client()
    login(client, "admin")
    page = client.get("/admin/users").get_data(as_text=True)
    response = client.post(
        "/admin/users",
        data={
            "csrf_token": csrf_of(page),
            "username": "nurse",
            "full_name": "N. Urse",
            "roles": ["technician", "radiologist"],
        },
    )
    html = response.get_data(as_text=True)
    password = re.search(r'<code class="password">([^<]+)</code>', html).group(1)
    other = app.test_client()
    signed_in = login(other, "nurse", password)
    # The password an admin handed over is one-time: nothing but choosing one's own first.
    assert signed_in.status_code == 302 and signed_in.location.endswith("/account/password")
    refused = other.get("/cases/new")
    assert refused.status_code == 302 and refused.location.endswith("/account/password")
    api = other.get("/api/v1/cases")
    assert api.status_code == 403 and api.json["code"] == "password_change_required"
    form = other.get("/account/password").get_data(as_text=True)
    assert "one-time password" in form
    changed = other.post(
        "/account/password",
        data={
            "csrf_token": csrf_of(form),
            "current": password,
            "new": "quiet harbour lanterns glow",
            "repeat": "quiet harbour lanterns glow",
        },
    )
    assert changed.status_code == 303 and changed.location.endswith("/")
    assert other.get("/cases/new").status_code == 200
    tech = app.test_client()
    login(tech, "tech")
    assert tech.get("/admin/users").status_code == 403


def test_upload_over_the_limit_gets_a_clear_refusal(lab, people):
    import io

    lab.settings = lab.settings.with_(max_upload_bytes=2048)
    app = create_app(lab.settings, lab)
    client = app.test_client()
    token = create_api_token(lab, "tech")
    auth = {"Authorization": f"Bearer {token}"}
    body = order_json(patient_code="PX-5")
    case_id = client.post("/api/v1/cases", json=body, headers=auth).json["id"]
    # Far over the limit: refused by the web server before the body is read.
    huge = io.BytesIO(b"\0" * (2 * 1024 * 1024))
    response = client.post(
        f"/api/v1/cases/{case_id}/parts", data={"mesh": (huge, "big.stl")}, headers=auth
    )
    assert response.status_code == 413 and "upload limit" in response.json["message"]
    # Just over the limit: refused by the mesh check with the same clarity.
    over = io.BytesIO(b"\0" * 80 + (60).to_bytes(4, "little") + b"\0" * 50 * 60)
    response = client.post(
        f"/api/v1/cases/{case_id}/parts", data={"mesh": (over, "big.stl")}, headers=auth
    )
    assert response.status_code == 422 and response.json["code"] == "too_large"
    with read_session(lab.engine) as s:
        assert s.exec(select(Part)).all() == []
    assert not any(p.is_file() for p in lab.blobs.root.rglob("*"))
