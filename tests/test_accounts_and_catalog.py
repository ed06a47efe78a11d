"""Account security (lockout, password rules, audited administration) and the
appropriateness catalog (derived bands, audited edits, CSV import/export round trip)."""

from __future__ import annotations

import csv
import io

import pytest
from sqlmodel import select

from pocprint.domain.appropriateness import COLUMNS, band_of, clean_row
from pocprint.domain.roles import Role
from pocprint.services import catalog, users
from pocprint.services.errors import AuthFailed, Forbidden, Invalid
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import AppropriatenessScenario, AuditEvent, User

from conftest import PASSWORD


def actions(lab, prefix: str) -> list[AuditEvent]:
    with read_session(lab.engine) as s:
        return [
            e
            for e in s.exec(select(AuditEvent).order_by(AuditEvent.id)).all()
            if e.action.startswith(prefix)
        ]


def user_id(lab, username: str) -> int:
    with read_session(lab.engine) as s:
        return s.exec(select(User.id).where(User.username == username)).one()


# ----------------------------------------------------------------------------- accounts


def test_repeated_failures_lock_the_account_and_are_audited(lab, people):
    attempts = lab.settings.lockout_attempts
    for _ in range(attempts):
        with pytest.raises(AuthFailed, match="wrong password"):
            users.authenticate(lab, "tech", "not the password")
    with pytest.raises(AuthFailed, match="locked"):
        users.authenticate(lab, "tech", PASSWORD)  # even the right password is refused now
    trail = [e.action for e in actions(lab, "user.")]
    assert trail.count("user.login_failed") == attempts
    assert "user.locked" in trail and trail[-1] == "user.login_refused_locked"
    with pytest.raises(Forbidden):
        users.unlock(lab, people["tech"], user_id(lab, "tech"))
    users.unlock(lab, people["admin"], user_id(lab, "tech"))
    assert users.authenticate(lab, "tech", PASSWORD).username == "tech"
    assert actions(lab, "user.unlocked")[0].actor == "admin"


def test_a_good_sign_in_resets_the_failure_count(lab, people):
    for _ in range(lab.settings.lockout_attempts - 1):
        with pytest.raises(AuthFailed):
            users.authenticate(lab, "rad", "nope nope nope")
    users.authenticate(lab, "rad", PASSWORD)
    with pytest.raises(AuthFailed, match="wrong password"):
        users.authenticate(lab, "rad", "nope nope nope")
    assert users.authenticate(lab, "rad", PASSWORD).username == "rad"


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "at least 12"),
        ("aaaaaaaaaaaaaaaa", "repetition"),
        ("nurse.ratched-2026", "username"),
        ("my Ratchedsecret 1", "name"),
        # zxcvbn, not a short word list: common passwords, keyboard walks, dates
        ("password1234567", "too easy to guess"),
        ("sunshine123456", "too easy to guess"),
        ("qwertyuiop1234", "too easy to guess"),
        ("Mildred1975xyz", "name"),
        ("at St Elsewhere Lab today", "site's name"),
    ],
)
def test_password_rules(lab, password, problem):
    settings = lab.settings.with_(site_name="St Elsewhere Lab")
    found = users.password_problem(password, "nurse.ratched", "Mildred Ratched", settings)
    assert found and problem in found


def test_a_passphrase_is_accepted(lab):
    assert users.password_problem(PASSWORD, "tech", "Tech Tester", lab.settings) is None
    # what the service generates as a one-time password passes its own rules
    one_time = users.generate_password()
    assert users.password_problem(one_time, "tech", "Tech Tester", lab.settings) is None


def test_user_administration_is_audited_and_keeps_an_admin(lab, people):
    admin = people["admin"]
    new_id = users.create_user(
        lab, admin, "dr.who", "Dr Who", "tardis blue box 1963", {Role.PRESCRIBER}
    )
    with pytest.raises(Forbidden):
        users.set_roles(lab, people["manager"], new_id, {Role.ADMIN})
    users.set_roles(lab, admin, new_id, {Role.PRESCRIBER, Role.RADIOLOGIST})
    temporary = users.reset_password(lab, admin, new_id)
    assert users.authenticate(lab, "dr.who", temporary).roles == {
        Role.PRESCRIBER,
        Role.RADIOLOGIST,
    }
    with pytest.raises(Invalid, match="why"):
        users.set_active(lab, admin, new_id, False, "")
    users.set_active(lab, admin, new_id, False, "left the hospital")
    with pytest.raises(AuthFailed):
        users.authenticate(lab, "dr.who", temporary)
    with pytest.raises(Invalid, match="last active administrator"):
        users.set_roles(lab, admin, user_id(lab, "admin"), {Role.AUDITOR})
    with pytest.raises(Invalid, match="your own account"):
        users.set_active(lab, admin, user_id(lab, "admin"), False, "testing")
    trail = [(e.action, e.actor) for e in actions(lab, "user.") if e.entity_id == str(new_id)]
    assert ("user.created", "admin") in trail
    assert ("user.roles_changed", "admin") in trail
    assert ("user.password_reset", "admin") in trail
    assert ("user.deactivated", "admin") in trail
    assert all(temporary not in str(e.after) for e in actions(lab, "user."))


def test_users_change_their_own_password(lab, people):
    with pytest.raises(AuthFailed):
        users.change_password(lab, people["tech"], "wrong", "a brand new passphrase")
    with pytest.raises(Invalid, match="at least"):
        users.change_password(lab, people["tech"], PASSWORD, "short")
    users.change_password(lab, people["tech"], PASSWORD, "a brand new passphrase")
    assert users.authenticate(lab, "tech", "a brand new passphrase").username == "tech"
    assert actions(lab, "user.password_changed")[0].actor == "tech"


# ----------------------------------------------------------------------------- catalog


def test_bands_follow_the_rating():
    assert [band_of(r).value for r in (1, 3, 4, 6, 7, 9)] == [
        "usually_not",
        "usually_not",
        "may",
        "may",
        "usually",
        "usually",
    ]
    row, problems = clean_row(
        {
            "scenario_id": "x-1",
            "catalog_version": "v1",
            "specialty": "Vascular",
            "scenario_text": "t",
            "source_doi": "d",
            "rating": "8",
            "band": "may",
        }
    )
    assert "contradicts rating 8" in problems[0]


def test_shipped_rows_are_loaded_with_their_source(lab):
    with read_session(lab.engine) as s:
        rows = s.exec(select(AppropriatenessScenario)).all()
    assert len(rows) == 20
    assert {r.band for r in rows} == {"usually"} and {r.rating for r in rows} == {None}
    assert all(r.source_doi == "10.1186/s41205-024-00243-w" for r in rows)
    assert catalog.load_shipped(lab) == 0  # only into an empty catalog


def test_catalog_csv_round_trip_and_audited_edits(lab, people):
    manager = people["manager"]
    exported = catalog.export_csv(lab)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert len(rows) == 20 and list(rows[0]) == list(COLUMNS)
    hip = next(r for r in rows if r["scenario_id"] == "complex-hip-dysplasia")
    hip.update(rating="8", band="", rating_driven_by="literature", evidence_category="2")
    hip["status"] = "transcribed"
    rows.append(
        dict(
            dict.fromkeys(COLUMNS, ""),
            scenario_id="lab-guide-fibula",
            catalog_version="lab-2026",
            specialty="Craniomaxillofacial",
            scenario_text="Fibula free flap cutting guide",
            rating="5",
            rating_driven_by="expert",
            source_doi="10.0000/lab",
            source_table="Table 2",
        )
    )
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    edited = out.getvalue()
    with pytest.raises(Forbidden):
        catalog.import_csv(lab, people["tech"], edited)
    counts = catalog.import_csv(lab, manager, edited)
    assert counts == {"added": 1, "changed": 1, "unchanged": 19}
    again = catalog.export_csv(lab)
    assert catalog.import_csv(lab, manager, again) == {"added": 0, "changed": 0, "unchanged": 21}
    assert catalog.export_csv(lab) == again  # export -> import -> export is stable
    assert "Fibula free flap cutting guide,5,may," in again
    with read_session(lab.engine) as s:
        fibula = s.exec(
            select(AppropriatenessScenario).where(
                AppropriatenessScenario.scenario_id == "lab-guide-fibula"
            )
        ).one()
    assert fibula.band == "may"  # derived from the rating
    changed = actions(lab, "catalog.row_changed")[0]
    assert changed.actor == "manager" and changed.after["rating"] == 8
    assert changed.before == {
        "rating": None,
        "rating_driven_by": None,
        "evidence_category": None,
        "status": "band_only",
    }


def test_a_bad_csv_changes_nothing(lab, people):
    before = catalog.export_csv(lab)
    bad = before + "bad row,v1,Vascular,,text,12,,,,,,doi,,,\n"
    with pytest.raises(Invalid, match="line 22") as refused:
        catalog.import_csv(lab, people["manager"], bad)
    assert "rating must be between 1 and 9" in str(refused.value)
    assert "scenario_id must be a slug" in str(refused.value)
    with pytest.raises(Invalid, match="unknown CSV columns"):
        catalog.import_csv(lab, people["manager"], "scenario_id,catalog_version,colour\n")
    assert catalog.export_csv(lab) == before
    assert actions(lab, "catalog.imported") == []


def test_retired_rows_are_not_offered(lab, people):
    with pytest.raises(Invalid):
        catalog.retire_row(
            lab, people["manager"], "complex-hip-dysplasia", "sig-complexity-2024", ""
        )
    catalog.retire_row(
        lab, people["manager"], "complex-hip-dysplasia", "sig-complexity-2024", "superseded"
    )
    with unit_of_work(lab.engine) as s:
        keys = {r.scenario_id for r in catalog.scenarios(s)}
    assert "complex-hip-dysplasia" not in keys and len(keys) == 19


def test_catalog_command_line_export_and_import(lab, tmp_path):
    import os
    import subprocess
    import sys

    env = dict(
        os.environ,
        POCPRINT_DATABASE_URL=lab.settings.database_url,
        POCPRINT_DATA_DIR=str(lab.settings.data_dir),
        POCPRINT_PRINTERS_DIR=str(lab.settings.printers_dir),
        POCPRINT_PROFILES_DIR=str(lab.settings.profiles_dir),
    )
    out = tmp_path / "catalog.csv"
    run = [sys.executable, "-m", "pocprint.cli", "catalog"]
    done = subprocess.run([*run, "export", str(out)], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == catalog.export_csv(lab)
    out.write_text(out.read_text().replace("Complex hip dysplasia,,usually", "Hip,,maybe"))
    refused = subprocess.run(
        [*run, "import", str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 1 and "nothing imported" in refused.stderr
