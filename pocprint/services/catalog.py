"""The appropriateness catalog: rows the lab edits (audited), CSV import and export, and
the shipped rows under config/appropriateness/ loaded into an empty catalog."""

from __future__ import annotations

import csv
import io

import sqlalchemy as sa
from sqlmodel import Session, func, select

from pocprint.domain.appropriateness import COLUMNS, clean_row
from pocprint.domain.roles import Permission
from pocprint.services import audit
from pocprint.services.actors import Actor
from pocprint.services.errors import Invalid, NotFound
from pocprint.services.lab import Lab
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import AppropriatenessScenario, utcnow

MAX_IMPORT_ROWS = 5000


def _as_dict(row: AppropriatenessScenario) -> dict:
    return {name: getattr(row, name) for name in COLUMNS}


def _find(session: Session, scenario_id: str, version: str) -> AppropriatenessScenario | None:
    return session.exec(
        select(AppropriatenessScenario).where(
            AppropriatenessScenario.scenario_id == scenario_id,
            AppropriatenessScenario.catalog_version == version,
        )
    ).first()


def _upsert(session: Session, actor: Actor | str, values: dict, user_id: int | None) -> str:
    row = _find(session, values["scenario_id"], values["catalog_version"])
    key = f"{values['scenario_id']}@{values['catalog_version']}"
    if row is None:
        row = AppropriatenessScenario(**values, updated_by=user_id)
        session.add(row)
        session.flush()
        audit.record(session, actor, "catalog.row_added", "scenario", key, after=values)
        return "added"
    before = _as_dict(row)
    if before == values and row.active:
        return "unchanged"
    for name, value in values.items():
        setattr(row, name, value)
    row.active = True
    row.updated_by = user_id
    row.updated_at = utcnow()
    changed = [k for k in values if before[k] != values[k]]
    audit.record(
        session,
        actor,
        "catalog.row_changed",
        "scenario",
        key,
        before={k: before[k] for k in changed},
        after={k: values[k] for k in changed},
    )
    return "changed"


def save_row(lab: Lab, actor: Actor, raw: dict) -> str:
    """Add or edit one row (the band follows the rating). Returns added/changed/unchanged."""
    actor.require(Permission.MANAGE_CATALOG)
    values, problems = clean_row(raw)
    if problems:
        raise Invalid("; ".join(problems))
    with unit_of_work(lab.engine) as session:
        return _upsert(session, actor, values, actor.user_id)


def retire_row(lab: Lab, actor: Actor, scenario_id: str, version: str, reason: str) -> None:
    """Rows are never deleted (reviews point at them); a retired row is no longer offered."""
    actor.require(Permission.MANAGE_CATALOG)
    if not (reason or "").strip():
        raise Invalid("retiring a scenario needs a reason")
    with unit_of_work(lab.engine) as session:
        row = _find(session, scenario_id, version)
        if row is None:
            raise NotFound(f"no scenario {scenario_id}@{version}")
        row.active = False
        row.updated_by = actor.user_id
        row.updated_at = utcnow()
        audit.record(
            session,
            actor,
            "catalog.row_retired",
            "scenario",
            f"{scenario_id}@{version}",
            reason=reason.strip(),
        )


def parse_csv(text: str) -> list[dict]:
    """Every row validated; any problem refuses the whole file, naming the line."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("scenario_id", "catalog_version") if c not in (reader.fieldnames or [])]
    if missing:
        raise Invalid(f"the CSV has no {', '.join(missing)} column (expected: {','.join(COLUMNS)})")
    unknown = set(reader.fieldnames or []) - set(COLUMNS)
    if unknown:
        raise Invalid(f"unknown CSV columns: {', '.join(sorted(unknown))}")
    rows, problems, seen = [], [], set()
    for line, raw in enumerate(reader, start=2):
        if len(rows) >= MAX_IMPORT_ROWS:
            raise Invalid(f"more than {MAX_IMPORT_ROWS} rows")
        values, row_problems = clean_row(raw)
        key = (values["scenario_id"], values["catalog_version"])
        if key in seen:
            row_problems.append("the same scenario_id and catalog_version appear twice")
        seen.add(key)
        problems += [f"line {line}: {p}" for p in row_problems]
        rows.append(values)
    if problems:
        raise Invalid("; ".join(problems[:20]) + ("; ..." if len(problems) > 20 else ""))
    if not rows:
        raise Invalid("the CSV holds no rows")
    return rows


def import_csv(lab: Lab, actor: Actor, text: str) -> dict[str, int]:
    """All rows or none: one transaction, each added or changed row audited."""
    actor.require(Permission.MANAGE_CATALOG)
    rows = parse_csv(text)
    counts = {"added": 0, "changed": 0, "unchanged": 0}
    with unit_of_work(lab.engine) as session:
        for values in rows:
            counts[_upsert(session, actor, values, actor.user_id)] += 1
        audit.record(session, actor, "catalog.imported", "catalog", "csv", after=counts)
    return counts


def export_csv(lab: Lab) -> str:
    with read_session(lab.engine) as session:
        rows = session.exec(
            select(AppropriatenessScenario)
            .where(AppropriatenessScenario.active.is_(True))
            .order_by(
                AppropriatenessScenario.catalog_version,
                AppropriatenessScenario.specialty,
                AppropriatenessScenario.scenario_id,
            )
        ).all()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            values = _as_dict(row)
            values["disagreement"] = "true" if values["disagreement"] else "false"
            writer.writerow({k: "" if v is None else v for k, v in values.items()})
        return out.getvalue()


def scenarios(session: Session, active_only: bool = True) -> list[AppropriatenessScenario]:
    query = select(AppropriatenessScenario).order_by(
        AppropriatenessScenario.specialty, AppropriatenessScenario.scenario_text
    )
    if active_only:
        query = query.where(AppropriatenessScenario.active.is_(True))
    return list(session.exec(query).all())


def load_shipped(lab: Lab) -> int:
    """Load config/appropriateness/*.csv into an empty catalog (first start); 0 otherwise."""
    if not sa.inspect(lab.engine).has_table("appropriateness_scenario"):
        return 0
    files = sorted(lab.settings.catalog_dir.glob("*.csv"))
    if not files:
        return 0
    try:
        return _load_files(lab, files)
    except sa.exc.IntegrityError:  # another process loaded them at the same moment
        return 0


def _load_files(lab: Lab, files: list) -> int:
    with unit_of_work(lab.engine) as session:
        if session.exec(select(func.count()).select_from(AppropriatenessScenario)).one():
            return 0
        count = 0
        for path in files:
            for values in parse_csv(path.read_text(encoding="utf-8")):
                _upsert(session, "catalog-loader", values, None)
                count += 1
        audit.record(
            session,
            "catalog-loader",
            "catalog.loaded",
            "catalog",
            "shipped",
            after={"rows": count, "files": [p.name for p in files]},
        )
        return count


def row_dict(row: AppropriatenessScenario) -> dict:
    return {**_as_dict(row), "active": row.active}
