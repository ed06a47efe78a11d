"""Directory sign-in against a real slapd started by the test (its own slapd.conf on a free
loopback port): groups give roles, local accounts still work, the same lockout and audit rules
hold, and signatures re-authenticate against the directory."""

from __future__ import annotations

import os

import ldap3
import pytest
from sqlmodel import select

from pocprint.domain.roles import Role
from pocprint.hospital.errors import ConfigError
from pocprint.hospital.links import hospital_links
from pocprint.services import review
from pocprint.services.actors import Actor
from pocprint.services.cases import create_case
from pocprint.services.catalog import load_shipped
from pocprint.services.directory import DIRECTORY_ACCOUNT, DirectoryUnavailable, sync_account
from pocprint.services.errors import AuthFailed, Invalid
from pocprint.services.fleet import sync_printers
from pocprint.services.lab import build_lab
from pocprint.services.users import authenticate, create_user, reset_password
from pocprint.store.db import read_session, upgrade
from pocprint.store.models import AuditEvent, User
from pocprint.web import create_app

from conftest import PASSWORD, USUAL_SCENARIO, make_settings, order_fields
from peer_servers import (
    BASE_DN,
    ROOT_DN,
    ROOT_PASSWORD,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SlapdServer,
    directory_ldif,
)

RITA_PASSWORD = "rita's directory passphrase"
TOM_PASSWORD = "tom's directory passphrase"
PEOPLE = {
    "rrad": ("Rita Radiologist", RITA_PASSWORD, ["radiologists"]),
    "ttech": ("Tom Technician", TOM_PASSWORD, ["technicians", "3d-lab"]),
    "ooutsider": ("Otto Outsider", "otto's directory passphrase", ["cafeteria"]),
}
GROUPS = f"ou=groups,{BASE_DN}"


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    server = SlapdServer(tmp_path_factory.mktemp("slapd")).start(directory_ldif(PEOPLE))
    yield server
    server.stop()


def directory_section(url: str) -> dict:
    return {
        "url": url,
        "bind_dn": SERVICE_DN,
        "bind_password_env": "POCPRINT_TEST_DIRECTORY_PASSWORD",
        "user_base": f"ou=people,{BASE_DN}",
        "group_base": GROUPS,
        "roles": {
            f"cn=radiologists,{GROUPS}": ["radiologist"],
            f"cn=technicians,{GROUPS}": ["technician"],
            f"cn=3d-lab,{GROUPS}": "technician",
        },
        "timeout_s": 3,
    }


@pytest.fixture
def dlab(tmp_path, database_url, printers_dir, slapd, monkeypatch):
    monkeypatch.setenv("POCPRINT_TEST_DIRECTORY_PASSWORD", SERVICE_PASSWORD)
    settings = make_settings(
        tmp_path, database_url, printers_dir, directory=directory_section(slapd.url)
    )
    upgrade(settings.database_url)
    lab = build_lab(settings)
    sync_printers(lab)
    load_shipped(lab)
    yield lab
    lab.engine.dispose()


def _client(lab):
    app = create_app(lab.settings, lab)
    app.config["WTF_CSRF_ENABLED"] = False
    return app.test_client()


def _login(client, username, password):
    return client.post("/login", data={"username": username, "password": password})


def _user(lab, username) -> User | None:
    with read_session(lab.engine) as session:
        return session.exec(select(User).where(User.username == username)).first()


def _events(lab, action):
    with read_session(lab.engine) as session:
        return session.exec(select(AuditEvent).where(AuditEvent.action == action)).all()


def test_directory_person_signs_in_with_roles_from_groups(dlab):
    client = _client(dlab)
    response = _login(client, "ttech", TOM_PASSWORD)
    assert response.status_code == 302, response.get_data(as_text=True)
    user = _user(dlab, "ttech")
    assert user.full_name == "Tom Technician"
    assert user.roles == "technician"  # two groups map to the same role: held once
    assert user.password_hash == DIRECTORY_ACCOUNT  # no local password exists
    created = _events(dlab, "user.created")
    assert [e.actor for e in created] == ["directory"]
    assert "Otto" not in str([e.after for e in created])
    assert [e.actor for e in _events(dlab, "user.login")] == ["ttech"]
    # The account is usable for pages its role may see, and refused for others.
    assert client.get("/cases/new").status_code == 200
    assert client.get("/admin/users").status_code == 403


def test_person_in_no_mapped_group_is_not_let_in(dlab):
    response = _login(_client(dlab), "ooutsider", "otto's directory passphrase")
    assert response.status_code == 401
    assert _user(dlab, "ooutsider") is None
    assert "unknown user or wrong password" in response.get_data(as_text=True)


def test_wrong_directory_passwords_lock_the_account_like_a_local_one(dlab):
    client = _client(dlab)
    for _ in range(dlab.settings.lockout_attempts):
        assert _login(client, "rrad", "not rita's password").status_code == 401
    locked = _login(client, "rrad", RITA_PASSWORD)
    assert locked.status_code == 401
    assert "locked" in locked.get_data(as_text=True)
    assert len(_events(dlab, "user.login_failed")) == dlab.settings.lockout_attempts
    assert len(_events(dlab, "user.locked")) == 1
    assert len(_events(dlab, "user.login_refused_locked")) == 1


def test_empty_password_is_refused_although_ldap_would_accept_it(dlab):
    sync_account(dlab, "rrad")
    with pytest.raises(AuthFailed):
        authenticate(dlab, "rrad", "")


def test_local_accounts_still_sign_in_also_while_the_directory_is_down(dlab, slapd):
    root = Actor(None, "test-setup", "test setup", frozenset({Role.ADMIN}))
    create_user(dlab, root, "localadmin", "Local Admin", PASSWORD, {Role.ADMIN})
    assert _login(_client(dlab), "localadmin", PASSWORD).status_code == 302
    slapd.stop()
    try:
        client = _client(dlab)
        assert _login(client, "localadmin", PASSWORD).status_code == 302
        down = _login(_client(dlab), "rrad", RITA_PASSWORD)
        assert down.status_code == 401
        assert "does not answer" in down.get_data(as_text=True)
        assert _events(dlab, "user.login_failed") == []  # an outage is nobody's failure
    finally:
        slapd.restart()


def test_signatures_reauthenticate_against_the_directory(dlab, slapd, people_dir):
    sync_account(dlab, "rrad")
    rita = authenticate(dlab, "rrad", RITA_PASSWORD)
    case_id = create_case(dlab, people_dir["tech"], **order_fields())
    with pytest.raises(AuthFailed):
        review.review_case(
            dlab, rita, case_id, decision="approve", scenario=USUAL_SCENARIO, password=PASSWORD
        )
    slapd.set_password("rrad", "rita's new directory passphrase")
    try:
        with pytest.raises(AuthFailed):  # the old directory password no longer signs
            review.review_case(
                dlab,
                rita,
                case_id,
                decision="approve",
                scenario=USUAL_SCENARIO,
                password=RITA_PASSWORD,
            )
        signed = review.review_case(
            dlab,
            rita,
            case_id,
            decision="approve",
            scenario=USUAL_SCENARIO,
            password="rita's new directory passphrase",
        )
        assert signed
    finally:
        slapd.set_password("rrad", RITA_PASSWORD)
    signed_events = [e for e in _events(dlab, "signature.signed") if e.actor == "rrad"]
    assert signed_events and signed_events[0].after["signer"] == "Rita Radiologist"


@pytest.fixture
def people_dir(dlab):
    root = Actor(None, "test-setup", "test setup", frozenset({Role.ADMIN}))
    create_user(dlab, root, "tech", "Tech Tester", PASSWORD, {Role.TECHNICIAN})
    return {"tech": authenticate(dlab, "tech", PASSWORD)}


def test_a_directory_account_gets_no_local_password(dlab):
    sync_account(dlab, "rrad")
    root = Actor(None, "test-setup", "test setup", frozenset({Role.ADMIN}))
    with pytest.raises(Invalid, match="directory"):
        reset_password(dlab, root, _user(dlab, "rrad").id)
    assert _user(dlab, "rrad").password_hash == DIRECTORY_ACCOUNT


def test_directory_outage_during_sync_is_a_clear_refusal(tmp_path, monkeypatch):
    from pocprint.demo.octoprint_server import free_port

    monkeypatch.setenv("POCPRINT_TEST_DIRECTORY_PASSWORD", SERVICE_PASSWORD)
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'x.db'}",
        tmp_path / "printers",
        directory=directory_section(f"ldap://127.0.0.1:{free_port()}"),
    )
    (tmp_path / "printers").mkdir()
    upgrade(settings.database_url)
    lab = build_lab(settings)
    with pytest.raises(DirectoryUnavailable, match="does not answer"):
        sync_account(lab, "rrad")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bind_password": "inline"}, "never written in the configuration"),
        ({"url": "http://dc1"}, "ldap://"),
        ({"roles": {f"cn=x,{GROUPS}": ["surgeon"]}}, "surgeon is not a role"),
        ({"user_filter": "(uid=fixed)"}, "{username}"),
        ({"bind_password_env": "POCPRINT_UNSET_VARIABLE_FOR_TEST"}, "is empty"),
    ],
)
def test_bad_directory_settings_stop_the_start_naming_the_option(
    tmp_path, monkeypatch, change, message
):
    monkeypatch.setenv("POCPRINT_TEST_DIRECTORY_PASSWORD", SERVICE_PASSWORD)
    monkeypatch.delenv("POCPRINT_UNSET_VARIABLE_FOR_TEST", raising=False)
    section = {**directory_section("ldap://127.0.0.1:1"), **change}
    settings = make_settings(tmp_path, "sqlite://", tmp_path, directory=section)
    with pytest.raises(ConfigError, match=message):
        hospital_links(settings)
    assert os.environ.get("POCPRINT_UNSET_VARIABLE_FOR_TEST") is None


def test_a_person_removed_from_every_group_loses_the_roles_and_cannot_sign_in(dlab, slapd):

    assert _login(_client(dlab), "rrad", RITA_PASSWORD).status_code == 302
    conn = ldap3.Connection(ldap3.Server(slapd.url), ROOT_DN, ROOT_PASSWORD, auto_bind=True)
    group, person = f"cn=radiologists,{GROUPS}", f"uid=rrad,ou=people,{BASE_DN}"
    conn.modify(group, {"member": [(ldap3.MODIFY_ADD, [f"uid=ttech,ou=people,{BASE_DN}"])]})
    conn.modify(group, {"member": [(ldap3.MODIFY_DELETE, [person])]})
    try:
        refused = _login(_client(dlab), "rrad", RITA_PASSWORD)
        assert refused.status_code == 401
        assert _user(dlab, "rrad").roles == ""  # any open session loses its permissions too
        (synced,) = _events(dlab, "user.directory_synced")
        assert synced.before["roles"] == "radiologist" and synced.after["roles"] == ""
    finally:
        conn.modify(group, {"member": [(ldap3.MODIFY_ADD, [person])]})
        conn.unbind()
