"""The clinical gate over HTTP: a role x endpoint matrix checked on the server, anonymous
access refused everywhere, CSRF, session timeout, lockout at sign-in, and the review,
sign-off and catalog pages doing what the services say."""

from __future__ import annotations

import io
import re
import time

import pytest
from sqlmodel import select

from pocprint.services import cases as case_service
from pocprint.services import review
from pocprint.services.tokens import create_api_token
from pocprint.store.db import read_session
from pocprint.store.models import AppropriatenessReview, AuditEvent, Case, Signature
from pocprint.web import create_app

from conftest import PASSWORD, ROLE_USERS, USUAL_SCENARIO, order_fields, order_form, order_json

ALL = frozenset(ROLE_USERS)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert match, "page has no CSRF token"
    return match.group(1)


def login(client, username: str, password: str = PASSWORD):
    page = client.get("/login").get_data(as_text=True)
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": csrf_of(page)}
    )


@pytest.fixture
def world(lab, people):
    """One case reviewed by the radiologist (a signature to withdraw) and API tokens."""
    case_id = case_service.create_case(lab, people["tech"], **order_fields())
    review.review_case(
        lab, people["rad"], case_id, decision="approve", scenario=USUAL_SCENARIO, password=PASSWORD
    )
    with read_session(lab.engine) as s:
        signature_id = s.exec(select(Signature.id)).one()
        admin_id = people["admin"].user_id
    tokens = {name: create_api_token(lab, name, "tests") for name in ROLE_USERS}
    return {"case": case_id, "signature": signature_id, "admin": admin_id, "tokens": tokens}


# Pages: (method, path, roles that get through). Form posts carry no valid content: a role
# that gets through meets a validation error or a 404, never a 403.
PAGES = [
    ("GET", "/cases/", ALL),
    ("GET", "/cases/{case}", ALL),
    ("GET", "/cases/new", {"tech", "presc"}),
    ("POST", "/cases/new", {"tech", "presc"}),
    ("POST", "/cases/{case}/parts", {"tech"}),
    ("GET", "/cases/{case}/edit", {"tech", "presc"}),
    ("POST", "/cases/{case}/edit", {"tech", "presc"}),
    ("POST", "/cases/{case}/identifiers", {"presc", "rad"}),
    ("POST", "/cases/parts/999/approve", {"presc", "rad"}),
    ("POST", "/cases/parts/999/units", {"tech"}),
    ("POST", "/cases/parts/999/accept", {"tech"}),
    ("POST", "/cases/parts/999/segmentation", {"rad"}),
    ("GET", "/cases/{case}/review", {"rad"}),
    ("POST", "/cases/{case}/review", {"rad"}),
    ("GET", "/catalog/", ALL),
    ("GET", "/catalog/export.csv", ALL),
    ("POST", "/catalog/rows", {"manager"}),
    ("POST", "/catalog/retire", {"manager"}),
    ("POST", "/catalog/import", {"manager"}),
    ("GET", "/admin/users", {"admin"}),
    ("POST", "/admin/users", {"admin"}),
    ("POST", "/admin/users/{admin}/roles", {"admin"}),
    ("POST", "/admin/users/{admin}/active", {"admin"}),
    ("POST", "/admin/users/{admin}/unlock", {"admin"}),
    ("GET", "/account/password", ALL),
]

# API (bearer token): (method, path, JSON body, roles that get through).
API = [
    ("GET", "/api/v1/cases", None, ALL),
    ("GET", "/api/v1/cases/{case}/clearance", None, ALL),
    ("GET", "/api/v1/catalog", None, ALL),
    ("POST", "/api/v1/cases", "order", {"tech", "presc"}),
    ("PATCH", "/api/v1/cases/{case}", {"ordering_contact": "ext 4411"}, {"tech", "presc"}),
    (
        "POST",
        "/api/v1/cases/{case}/review",
        {"decision": "more_info", "justification": "which side is affected?"},
        {"rad"},
    ),
    ("POST", "/api/v1/parts/999/segmentation", {"password": "x"}, {"rad"}),
    ("POST", "/api/v1/parts/999/approval", {"password": "x"}, {"presc", "rad"}),
    (
        "POST",
        "/api/v1/signatures/{signature}/withdrawal",
        {"password": "not the password", "reason": "matrix test"},
        {"rad"},
    ),
]


def test_every_page_checks_the_role_on_the_server(lab, people, world):
    app = create_app(lab.settings, lab)
    app.config["WTF_CSRF_ENABLED"] = False  # CSRF has its own test; this one is about roles
    for username in ROLE_USERS:
        client = app.test_client()
        assert login(client, username).status_code == 302
        for method, path, allowed in PAGES:
            url = path.format(**world)
            response = client.open(url, method=method, data={})
            through = response.status_code != 403
            assert through is (username in allowed), (username, method, url, response.status_code)


def test_every_api_endpoint_checks_the_role_on_the_server(lab, people, world):
    client = create_app(lab.settings, lab).test_client()
    for username in ROLE_USERS:
        auth = {"Authorization": f"Bearer {world['tokens'][username]}"}
        for method, path, body, allowed in API:
            url = path.format(**world)
            payload = order_json(patient_code=f"PX-M{len(username)}") if body == "order" else body
            response = client.open(url, method=method, json=payload, headers=auth)
            through = response.status_code != 403
            assert through is (username in allowed), (username, method, url, response.status_code)
            assert response.status_code != 500, response.get_data(as_text=True)


def test_no_endpoint_lets_an_anonymous_visitor_through(lab, people, world):
    app = create_app(lab.settings, lab)
    app.config["WTF_CSRF_ENABLED"] = False
    client = app.test_client()
    public = {"static", "auth.login", "api-docs.openapi_json", "index"}
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in public or rule.endpoint.startswith("api-docs."):
            continue
        values = {
            arg: "1" if "id" in arg else "csv" if arg == "fmt" else "x" for arg in rule.arguments
        }
        if "which" in values:
            values["which"] = "original"
        url = rule.build(values)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method)
            assert response.status_code in (302, 401), (method, url, response.status_code)
            if response.status_code == 302:
                assert "/login" in response.headers["Location"]
            checked += 1
    assert checked > 40


def test_review_form_without_csrf_token_records_nothing(lab, people, world):
    client = create_app(lab.settings, lab).test_client()
    login(client, "rad")
    case_id = case_service.create_case(lab, people["tech"], **order_fields(patient_code="PX-C1"))
    response = client.post(
        f"/cases/{case_id}/review",
        data={"decision": "approve", "scenario": USUAL_SCENARIO, "password": PASSWORD},
    )
    assert response.status_code == 303
    with read_session(lab.engine) as s:
        assert (
            s.exec(
                select(AppropriatenessReview).where(AppropriatenessReview.case_id == case_id)
            ).all()
            == []
        )
    # the API with a browser session needs the token in a header
    assert client.post(f"/api/v1/cases/{case_id}/review", json={"decision": "x"}).status_code == 400


def test_idle_session_times_out_on_the_server(lab, people):
    client = create_app(lab.settings, lab).test_client()
    login(client, "tech")
    assert client.get("/cases/").status_code == 200
    with client.session_transaction() as session:
        session["last_seen"] = time.time() - lab.settings.session_timeout_minutes * 60 - 5
    response = client.get("/cases/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client.get("/cases/").status_code == 302  # signed out, not just bounced once
    assert client.get("/api/v1/cases").status_code == 401


def test_sign_in_page_locks_after_repeated_failures(lab, people):
    client = create_app(lab.settings, lab).test_client()
    for _ in range(lab.settings.lockout_attempts):
        assert login(client, "presc", "wrong wrong wrong").status_code == 401
    response = login(client, "presc")
    assert response.status_code == 401 and "locked" in response.get_data(as_text=True)
    with read_session(lab.engine) as s:
        locked = s.exec(select(AuditEvent).where(AuditEvent.action == "user.locked")).all()
    assert len(locked) == 1


def test_order_form_review_and_sign_off_pages(lab, people):
    app = create_app(lab.settings, lab)
    tech, rad = app.test_client(), app.test_client()
    login(tech, "tech")
    login(rad, "rad")
    token = csrf_of(tech.get("/cases/new").get_data(as_text=True))
    bad = tech.post("/cases/new", data=dict(order_form(icd10_code="nope"), csrf_token=token))
    assert bad.status_code == 422 and "ICD-10" in bad.get_data(as_text=True)
    assert 'value="PX-0001"' in bad.get_data(as_text=True)  # what was typed is kept
    created = tech.post(
        "/cases/new",
        data=dict(
            order_form(slice_thickness_mm=3.0),
            csrf_token=token,
            identifier_name="Jane Testpatient",
        ),
    )
    assert created.status_code == 303
    case_url = created.headers["Location"]
    case_id = int(case_url.rsplit("/", 1)[1])
    detail = tech.get(case_url).get_data(as_text=True)
    assert "above 2 mm" in detail and "Jane Testpatient" not in detail
    assert "Review appropriateness" not in detail  # not a radiologist

    page = rad.get(f"/cases/{case_id}/review").get_data(as_text=True)
    assert "Complex abdominal aortic aneurysm" in page and "Usually appropriate" in page
    token = csrf_of(page)
    refused = rad.post(
        f"/cases/{case_id}/review",
        data={"csrf_token": token, "decision": "approve", "scenario": "none", "password": PASSWORD},
        follow_redirects=True,
    )
    assert "needs a written justification" in refused.get_data(as_text=True)
    done = rad.post(
        f"/cases/{case_id}/review",
        data={
            "csrf_token": token,
            "decision": "approve",
            "scenario": USUAL_SCENARIO,
            "password": PASSWORD,
        },
        follow_redirects=True,
    )
    html = done.get_data(as_text=True)
    assert "Reviewed appropriateness" in html and "Rad Tester" in html
    with read_session(lab.engine) as s:
        assert s.get(Case, case_id).review_status == "approved"

    shown = rad.post(f"/cases/{case_id}/identifiers", data={"csrf_token": token})
    assert "Jane Testpatient" in shown.get_data(as_text=True)
    with read_session(lab.engine) as s:
        viewed = s.exec(
            select(AuditEvent).where(AuditEvent.action == "case.identifiers_viewed")
        ).one()
    assert viewed.actor == "rad" and "Jane" not in str(viewed.after)


def test_catalog_pages_import_and_export(lab, people):
    app = create_app(lab.settings, lab)
    manager = app.test_client()
    login(manager, "manager")
    exported = manager.get("/catalog/export.csv")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    text = exported.get_data(as_text=True)
    token = csrf_of(manager.get("/catalog/").get_data(as_text=True))
    response = manager.post(
        "/catalog/import",
        data={"csrf_token": token, "csv": (io.BytesIO(text.encode()), "catalog.csv")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert "0 added, 0 changed, 20 unchanged" in response.get_data(as_text=True)
    response = manager.post(
        "/catalog/rows",
        data={
            "csrf_token": token,
            "scenario_id": "lab-mandible-guide",
            "catalog_version": "lab-2026",
            "specialty": "Craniomaxillofacial",
            "scenario_text": "Mandible resection guide",
            "rating": "3",
            "source_doi": "10.0000/lab",
        },
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert "Scenario added" in html and "Usually not appropriate" in html


def test_answering_a_question_through_the_edit_page_and_the_api(lab, people):
    app = create_app(lab.settings, lab)
    case_id = case_service.create_case(lab, people["tech"], **order_fields())
    review.review_case(
        lab,
        people["rad"],
        case_id,
        decision="more_info",
        scenario=None,
        justification="which procedure date?",
    )
    presc = app.test_client()
    login(presc, "presc")
    detail = presc.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "which procedure date?" in detail and "Answer the question" in detail
    page = presc.get(f"/cases/{case_id}/edit").get_data(as_text=True)
    assert 'value="Dr A. Vascular"' in page and 'Abdomen|Vessels|" selected' in page
    form = dict(order_form(procedure_date=order_fields()["needed_by"]), csrf_token=csrf_of(page))
    response = presc.post(f"/cases/{case_id}/edit", data=form)
    assert response.status_code == 303
    with read_session(lab.engine) as s:
        case = s.get(Case, case_id)
        assert case.review_status == "awaiting_review" and case.procedure_date is not None
    review.review_case(
        lab, people["rad"], case_id, decision="approve", scenario=USUAL_SCENARIO, password=PASSWORD
    )
    auth = {"Authorization": f"Bearer {create_api_token(lab, 'presc')}"}
    changed = presc.patch(
        f"/api/v1/cases/{case_id}", json={"indication": "Thoracic instead"}, headers=auth
    )
    assert changed.status_code == 200 and changed.json["review_status"] == "awaiting_review"
    steps = presc.get(f"/api/v1/cases/{case_id}/clearance", headers=auth).json
    assert steps[0]["state"] == "void" and steps[0]["signature"]["signer"] == "Rad Tester"
