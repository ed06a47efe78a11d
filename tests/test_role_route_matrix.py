"""Every route of the app, for every role and for an anonymous visitor, against the permission
table (domain/roles.py): generated from the app's own `url_map` and its OpenAPI document, not
from a hand-kept list.

Refused: exactly 401 (API) or 403, or for an anonymous page a redirect to the sign-in page.
Allowed: anything but 401, 403, 404 or a server error (a form sent empty may well answer 400,
409 or 422, or redirect back with the problem shown). The path parameters are real rows, so a
404 means the route is broken, not that the row is missing.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from datetime import date, timedelta

import pytest
from PIL import Image
from sqlmodel import select

from pocprint.config import REPO_ROOT
from pocprint.domain.roles import GRANTS, Role
from pocprint.services import materials, outbox, postprocessing, tokens, users
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import BuildJob, Case, Printer, Signature
from pocprint.web import create_app
from pocprint.web.auth import PUBLIC_ENDPOINTS, SIGNED_IN_ENDPOINTS

from conftest import PASSWORD, ROLE_USERS
from trace_helpers import printed_device

ANONYMOUS = "anonymous"
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
RESULTS = REPO_ROOT / "var" / "test-artifacts"


def _rows(lab, people, tmp_path) -> dict[str, str]:
    """Real values for every path parameter the app's routes name."""
    job_id = printed_device(lab, people, tmp_path, device_type="surgical_guide")
    photo = tmp_path / "qa.png"
    Image.new("RGB", (8, 8), "white").save(photo)
    postprocessing.record_measurement(
        lab,
        people["tech"],
        job_id,
        feature="sleeve spacing",
        designed_mm=24.0,
        measured_mm=24.05,
        tolerance_mm=0.2,
        photo=photo,
    )
    lot_id = materials.receive_lot(
        lab,
        people["manager"],
        material="PLA",
        manufacturer="Acme",
        lot_number="L-MATRIX",
        expiry=date.today() + timedelta(days=100),
        quantity_g=1000,
    )
    admin = people["admin"]
    root_id = users.create_user(
        lab, admin, "matrix.target", "Matrix Target", "orchard lamps drift slowly", {Role.AUDITOR}
    )
    token_id, _ = tokens.create_token(lab, admin, "matrix.target", "matrix target token")
    with unit_of_work(lab.engine) as s:
        message_id = outbox.add(
            s, channel="webhook", destination="matrix", subject="matrix", payload={}
        ).id
        # The requesting clinician is the prescriber, so the outcome form is theirs.
        s.get(Case, s.get(BuildJob, job_id).case_id).created_by = people["presc"].user_id
    with read_session(lab.engine) as s:
        job = s.get(BuildJob, job_id)
        case = s.get(Case, job.case_id)
        design = s.exec(
            select(Signature).where(Signature.meaning == "approved design").order_by(Signature.id)
        ).first()
        printer = s.exec(select(Printer).order_by(Printer.id)).first()
    return {
        "case_id": str(case.id),
        "case_code": case.code,
        "part_id": str(job.part_id),
        "job_id": str(job.id),
        "serial": job.serial,
        "printer_id": str(printer.id),
        "signature_id": str(design.id),
        "lot_id": str(lot_id),
        "user_id": str(root_id),
        "token_id": str(token_id),
        "message_id": str(message_id),
        "name": "turnaround",  # a lab metric
        "sha256": hashlib.sha256(photo.read_bytes()).hexdigest(),
        "which": "original",
        "step": "support_removal",
        "filename": "css/app.css",
    }


# Converters with a fixed set of values; the rule's own `fmt` is filled per endpoint.
FORMATS = {"devices.statement": "pdf", "auditor.registry": "json"}


def _path(rule, values: dict[str, str]) -> str:
    def fill(match):
        name = match.group(2)
        if name == "fmt":
            return FORMATS.get(rule.endpoint, "csv")
        return values[name]

    return re.sub(r"<(?:([a-z]+)(?:\([^)]*\))?:)?(\w+)>", fill, rule.rule)


def _expected(view, endpoint: str, role: str) -> bool:
    if endpoint in PUBLIC_ENDPOINTS:
        return True
    if role == ANONYMOUS:
        return False
    if endpoint in SIGNED_IN_ENDPOINTS:
        return True
    granted = set().union(*(GRANTS[r] for r in ROLE_USERS[role]))
    return bool(view.required_permissions & granted)


@pytest.fixture
def matrix_lab(lab, people, tmp_path):
    # Empty forms sent to signature routes must not lock the test accounts part-way through.
    lab.settings = lab.settings.with_(lockout_attempts=10_000)
    return lab, people, _rows(lab, people, tmp_path)


def _clients(app, lab):
    out = {}
    for role in [ANONYMOUS, *ROLE_USERS]:
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        if role != ANONYMOUS:
            signed = client.post(
                "/login", data={"username": role, "password": PASSWORD, "csrf_token": csrf}
            )
            assert signed.status_code == 302, role
            csrf = re.search(
                r'name="csrf-token" content="([^"]+)"', client.get("/board/").get_data(as_text=True)
            ).group(1)
        token = tokens.create_api_token(lab, role, "matrix") if role != ANONYMOUS else None
        out[role] = (client, csrf, token)
    return out


def test_every_route_answers_every_role_as_the_permission_table_says(matrix_lab):
    lab, people, values = matrix_lab
    app = create_app(lab.settings, lab)
    spec = app.test_client().get("/api/openapi.json").get_json()
    documented = {
        (re.sub(r"\{(\w+)\}", r"<\1>", path), method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method.upper() in METHODS
    }
    served = set()
    clients = _clients(app, lab)
    checked, failures = 0, []
    rules = sorted(app.url_map.iter_rules(), key=lambda r: r.rule)
    for rule in rules:
        view = app.view_functions[rule.endpoint]
        declared = getattr(view, "required_permissions", None)
        if rule.endpoint not in PUBLIC_ENDPOINTS | SIGNED_IN_ENDPOINTS and not declared:
            failures.append(f"{rule.rule} ({rule.endpoint}) declares no permission")
            continue
        api = rule.rule.startswith("/api/v1/")
        for method in sorted(set(rule.methods) & set(METHODS)):
            if api:
                served.add((re.sub(r"<(?:[^:>]+:)?(\w+)>", r"<\1>", rule.rule), method))
            if rule.endpoint == "auth.logout":
                continue  # would end the session the rest of the matrix uses
            path = _path(rule, values)
            for role, (client, csrf, token) in clients.items():
                allowed = _expected(view, rule.endpoint, role)
                if api:
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    response = client.open(path, method=method, headers=headers, json={})
                else:
                    data = {"csrf_token": csrf} if method != "GET" else None
                    response = client.open(path, method=method, data=data)
                checked += 1
                status = response.status_code
                location = response.headers.get("Location", "")
                if (rule.endpoint, method, status) == ("auth.login", "POST", 401):
                    status = 200  # an empty sign-in form is a wrong password, by design
                refused = status in (401, 403) or (
                    not api and role == ANONYMOUS and status == 302 and "/login" in location
                )
                broken = status == 404 or status >= 500
                if allowed and (refused or broken):
                    failures.append(f"{role} {method} {path}: {status} (should be allowed)")
                if not allowed and not refused:
                    failures.append(f"{role} {method} {path}: {status} (should be refused)")
                if api and not allowed and role == ANONYMOUS and status != 401:
                    failures.append(f"{role} {method} {path}: {status} (API: 401 expected)")
    api_prefix = {(p, m) for p, m in documented if p.startswith("/api/v1/")}
    assert served == api_prefix, (
        f"routes not documented: {served - api_prefix}; documented, not served: "
        f"{api_prefix - served}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"role-route-matrix-{lab.engine.dialect.name}.json").write_text(
        json.dumps(
            {
                "routes": len(rules),
                "route_methods": checked // len(clients),
                "roles": len(clients),
                "requests": checked,
                "api_operations": len(api_prefix),
                "failures": failures,
            },
            indent=1,
        )
    )
    assert failures == [], "\n".join(failures)
    assert checked >= 90 * len(clients)


def test_an_upload_needs_its_own_permission_even_with_a_bad_file(matrix_lab):
    """The permission is checked before the body is read: a refused role learns nothing
    about the upload's validation."""
    lab, _people, values = matrix_lab
    client = create_app(lab.settings, lab).test_client()
    token = tokens.create_api_token(lab, "auditor", "matrix")
    response = client.post(
        f"/api/v1/cases/{values['case_id']}/parts",
        data={"mesh": (io.BytesIO(b"not a mesh"), "x.stl")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403 and response.json["code"] == "forbidden"
