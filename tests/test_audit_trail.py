"""The audit trail is append-only in the database itself, and an edit made behind the
services' back (by someone able to drop the guard) is caught by `pocprint audit verify`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlmodel import select

from pocprint.reads.audit import chain_head, verify_chain
from pocprint.services import cases as case_service
from pocprint.services import signatures
from pocprint.store.db import is_sqlite, read_session, unit_of_work
from pocprint.store.models import AuditEvent, Signature

from conftest import PASSWORD
from trace_helpers import order


def some_history(lab, people, n: int = 3) -> list[AuditEvent]:
    for _ in range(n):
        case_service.create_case(lab, people["tech"], **order())
    with unit_of_work(lab.engine) as s:
        signatures.sign(
            s,
            people["rad"],
            PASSWORD,
            settings=lab.settings,
            meaning="reviewed",
            entity="case",
            entity_id="C-test",
            content={"x": 1},
        )
    with read_session(lab.engine) as s:
        return s.exec(select(AuditEvent).order_by(AuditEvent.id)).all()


def as_attacker(engine, statement: str, params: dict) -> None:
    """What a database administrator could do: switch the guard off, then edit."""
    with engine.begin() as conn:
        if is_sqlite(engine):
            conn.exec_driver_sql("DROP TRIGGER audit_event_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_event_no_delete")
        else:
            conn.exec_driver_sql("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        conn.execute(sa.text(statement), params)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_event SET actor = 'mallory' WHERE id = :id",
        "DELETE FROM audit_event WHERE id = :id",
        "UPDATE signature SET signer_name = 'Mallory' WHERE id = :sig",
        "DELETE FROM signature WHERE id = :sig",
    ],
)
def test_the_database_refuses_to_change_audit_events_and_signatures(lab, people, statement):
    evs = some_history(lab, people)
    with read_session(lab.engine) as s:
        sig = s.exec(select(Signature)).one()
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), lab.engine.begin() as conn:
        conn.execute(sa.text(statement), {"id": evs[1].id, "sig": sig.id})
    after = verify_chain(lab.engine)
    assert after.ok and after.events == len(evs)
    with read_session(lab.engine) as s:
        assert s.get(Signature, sig.id).signer_name == "Rad Tester"


def test_truncate_is_refused_on_postgresql(lab, people):
    if is_sqlite(lab.engine):
        pytest.skip(
            "not applicable: SQLite has no TRUNCATE; DELETE without WHERE is covered by the trigger"
        )
    some_history(lab, people, 1)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), lab.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE audit_event CASCADE")


def test_an_edit_behind_the_services_back_is_found_at_its_event(lab, people):
    evs = some_history(lab, people, 4)
    assert verify_chain(lab.engine).ok
    victim = evs[len(evs) // 2]
    as_attacker(
        lab.engine, "UPDATE audit_event SET reason = 'edited' WHERE id = :id", {"id": victim.id}
    )
    broken = verify_chain(lab.engine)
    assert not broken.ok and broken.broken_at == victim.id
    assert broken.problem == "event content does not match its hash"
    assert broken.events == evs.index(victim)


def test_a_deleted_event_breaks_the_next_link(lab, people):
    evs = some_history(lab, people, 4)
    victim = evs[2]
    as_attacker(lab.engine, "DELETE FROM audit_event WHERE id = :id", {"id": victim.id})
    broken = verify_chain(lab.engine)
    assert not broken.ok and broken.broken_at == evs[3].id
    assert broken.problem == "previous-hash link does not match"


def test_chain_head_matches_the_verified_chain(lab, people):
    evs = some_history(lab, people, 2)
    check = verify_chain(lab.engine)
    with read_session(lab.engine) as s:
        head = chain_head(s)
    assert (head.hash, head.events) == (check.head, check.events) == (evs[-1].hash, len(evs))


def test_audit_verify_command_names_the_first_broken_link(lab, people):
    evs = some_history(lab, people, 2)
    env = dict(
        os.environ,
        POCPRINT_DATABASE_URL=lab.settings.database_url,
        POCPRINT_DATA_DIR=str(lab.settings.data_dir),
        POCPRINT_PRINTERS_DIR=str(lab.settings.printers_dir),
    )
    command = [sys.executable, "-m", "pocprint.cli", "audit", "verify"]
    ok = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert f"audit chain intact: {len(evs)} events, head {evs[-1].hash}" in ok.stdout
    head = subprocess.run(
        [sys.executable, "-m", "pocprint.cli", "audit", "head"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert head.stdout.strip() == f"{len(evs)} events, head {evs[-1].hash}", head.stderr
    victim = evs[1]
    as_attacker(
        lab.engine, "UPDATE audit_event SET actor = 'mallory' WHERE id = :id", {"id": victim.id}
    )
    broken = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1
    assert f"BROKEN at event {victim.id}" in broken.stderr


def test_fast_sqlite_walk_agrees_with_the_reference_walk(lab, people):
    """The SQLite fast path (stored text, worker ranges) and the reference walk over ORM rows
    accept the same chain and name the same broken event, wherever it sits."""
    if not is_sqlite(lab.engine):
        pytest.skip(
            "not applicable: the fast path reads SQLite files; PostgreSQL uses the reference walk"
        )
    from pocprint.services import audit
    from pocprint.trace.audit_chain import verify, verify_sqlite_file

    with unit_of_work(lab.engine) as s:  # awkward values: unicode, floats, nesting, nulls
        for i in range(30):
            audit.record(
                s,
                people["tech"],
                "test.values",
                "case",
                f"C-{i}",
                before=None if i % 2 else {"ü": [1.5, None, {"z": 1, "a": 'x"y'}]},
                after={"Größe ✓": i / 7, "list": list(range(i % 4)), "nested": {"b": {}, "a": []}},
                reason="Grund: «geprüft»" if i % 3 else None,
            )
    path = lab.engine.url.database

    def reference():
        with read_session(lab.engine) as s:
            return verify(s.exec(select(AuditEvent).order_by(AuditEvent.id)).all())

    fast = verify_sqlite_file(path, workers=3, min_chunk=5)
    assert fast.ok and (fast.events, fast.head) == (reference().events, reference().head)
    with read_session(lab.engine) as s:
        ids = s.exec(select(AuditEvent.id).order_by(AuditEvent.id)).all()
    victim = ids[len(ids) // 3 + 1]  # in the second worker's range
    as_attacker(
        lab.engine,
        "UPDATE audit_event SET after = :after WHERE id = :id",
        {"after": '{"Größe ✓": 0}', "id": victim},
    )
    fast = verify_sqlite_file(path, workers=3, min_chunk=5)
    assert (fast.ok, fast.broken_at) == (False, victim) == (reference().ok, reference().broken_at)
