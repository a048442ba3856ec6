"""First-start data: the default departments, routing table and HIS department codes
(``templates/departments.yaml``, ``routing.yaml``, ``his_departments.yaml``)."""

from __future__ import annotations

from pathlib import Path

import yaml
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlmodel import Session, select

from suifang.core.db import alembic_config, current_revision, migrate
from suifang.core.errors import StartupError
from suifang.core.models import Department, DepartmentCreate, HisDepartmentCode, RoutingRule

__all__ = [
    "default_routing",
    "ensure_schema",
    "prepare_database",
    "seed_departments",
    "seed_his_departments",
    "seed_routing",
]

DEPARTMENTS_FILE = Path(__file__).resolve().parent.parent / "templates" / "departments.yaml"
ROUTING_FILE = DEPARTMENTS_FILE.with_name("routing.yaml")
HIS_DEPARTMENTS_FILE = DEPARTMENTS_FILE.with_name("his_departments.yaml")


def seed_departments(engine: Engine, path: Path = DEPARTMENTS_FILE) -> int:
    """Add the listed departments that do not exist yet; never change existing ones."""
    entries = [DepartmentCreate.model_validate(e) for e in yaml.safe_load(path.read_text("utf-8"))]
    with Session(engine) as session:
        existing = set(session.exec(select(Department.code)).all())
        new = [Department.model_validate(e) for e in entries if e.code not in existing]
        session.add_all(new)
        session.commit()
    return len(new)


def prepare_database(engine: Engine, revision: str = "head") -> None:
    """Migrate (to the newest schema by default); add missing default departments and routes."""
    migrate(engine, revision)
    if revision == "head":
        seed_departments(engine)
        seed_routing(engine)
        seed_his_departments(engine)


def default_routing() -> dict[str, str]:
    """The default routing table (``templates/routing.yaml``): category → department."""
    return yaml.safe_load(ROUTING_FILE.read_text("utf-8")) or {}


def seed_routing(engine: Engine) -> int:
    """The default routing table (``templates/routing.yaml``), into an empty table only: once
    administrators have a table, a rule they deleted stays deleted."""
    table = default_routing()
    with Session(engine) as session:
        if session.exec(select(RoutingRule.category).limit(1)).first() is not None:
            return 0
        known = set(session.exec(select(Department.code)).all())
        rules = [
            RoutingRule(category=category, department_code=department)
            for category, department in table.items()
            if department in known
        ]
        session.add_all(rules)
        session.commit()
    return len(rules)


def seed_his_departments(engine: Engine, path: Path = HIS_DEPARTMENTS_FILE) -> int:
    """The example HIS department codes (``templates/his_departments.yaml``), into an empty
    table only: once staff have mapped codes, a mapping they removed stays removed."""
    table = yaml.safe_load(path.read_text("utf-8")) or {}
    with Session(engine) as session:
        if session.exec(select(HisDepartmentCode.his_code).limit(1)).first() is not None:
            return 0
        known = set(session.exec(select(Department.code)).all())
        rows = [
            HisDepartmentCode(his_code=str(code), department_code=department)
            for code, department in table.items()
            if department in known
        ]
        session.add_all(rows)
        session.commit()
    return len(rows)


def ensure_schema(engine: Engine) -> None:
    """A SQLite database (the embedded default) is migrated on first use; any other one must
    already be at the newest schema (``suifang db upgrade``), so several processes never race."""
    if engine.dialect.name == "sqlite":
        prepare_database(engine)
        return
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    current = current_revision(engine)
    if current != head:
        raise StartupError(
            f"the database is at schema {current or 'none'}, suifang needs {head}: "
            "run `suifang db upgrade`"
        )
