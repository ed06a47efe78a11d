"""The Alembic migrations build exactly the schema the models describe, on SQLite and
PostgreSQL, and can be rolled back and re-applied."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from pocprint.store import models  # noqa: F401  (registers the tables)
from pocprint.store.db import alembic_config, upgrade


def test_migrations_match_the_models_and_roll_back(database_url):
    upgrade(database_url)
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], diff
    command.downgrade(alembic_config(database_url), "base")
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}
    upgrade(database_url)
    with engine.connect() as conn:
        head = conn.exec_driver_sql("SELECT head_hash, events FROM audit_chain_head").one()
    assert head == ("0" * 64, 0)
    engine.dispose()
