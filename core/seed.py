"""First-start data: the default departments (``templates/departments.yaml``)."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy import Engine
from sqlmodel import Session, select

from suifang.core.db import migrate
from suifang.core.models import Department, DepartmentCreate

__all__ = ["prepare_database", "seed_departments"]

DEPARTMENTS_FILE = Path(__file__).resolve().parent.parent / "templates" / "departments.yaml"


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
    """Migrate (to the newest schema by default) and add missing default departments."""
    migrate(engine, revision)
    if revision == "head":
        seed_departments(engine)
