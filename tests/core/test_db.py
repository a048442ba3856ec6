from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import StatementError
from sqlmodel import Session, select

from suifang.core.db import create_db_engine, current_revision, migrate
from suifang.core.models import Department, metadata


def test_migrations_produce_exactly_the_declared_schema(db_url: str) -> None:
    engine = create_db_engine(db_url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
        assert differences == []
        tables = set(inspect(engine).get_table_names())
        assert set(metadata.tables) <= tables
        assert current_revision(engine) is not None
        migrate(engine)  # idempotent: a second upgrade changes nothing
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'nested' / 'app.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert (tmp_path / "nested" / "app.db").exists()
    engine.dispose()


def test_timestamps_round_trip_as_aware_utc(session: Session) -> None:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    created = dt.datetime(2026, 11, 1, 9, 30, tzinfo=shanghai)
    session.add(
        Department(code="cardiology", name_zh="心内科", name_en="Cardiology", created_at=created)
    )
    session.commit()
    session.expunge_all()
    loaded = session.exec(select(Department)).one()
    assert loaded.created_at == created
    assert loaded.created_at.tzinfo == dt.UTC
    assert loaded.created_at.hour == 1


def test_naive_timestamps_are_refused(session: Session) -> None:
    session.add(Department(code="x", name_zh="x", name_en="x", created_at=dt.datetime(2026, 1, 1)))
    with pytest.raises(StatementError, match="naive datetime"):
        session.commit()
