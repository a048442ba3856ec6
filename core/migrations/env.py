"""Alembic environment: runs against the engine suifang hands over, or the configured URL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import context
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import suifang.core.models  # noqa: F401  -- registers every table on the metadata
from suifang.core.config import load_settings
from suifang.core.db import UTCDateTime, create_db_engine
from suifang.core.security.crypto import EncryptedText

target_metadata = SQLModel.metadata


def _render_item(kind: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render our column types so migration files depend on SQLAlchemy and suifang.core.db only."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("import suifang.core.db")
        return "suifang.core.db.UTCDateTime()"
    if kind == "type" and isinstance(obj, EncryptedText):
        return "sa.Text()"  # ciphertext: the database sees only text
    if kind == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


VACUUM_AFTER = "vacuum_after"
"""Set by a migration that replaced plaintext (0008) to the tables it rewrote."""


def _vacuum(connection, tables: Sequence[str]) -> None:  # type: ignore[no-untyped-def]
    """Rewrite ``tables`` so the plaintext a migration replaced is gone from the files.

    An UPDATE leaves the old row behind — in SQLite's free pages and WAL, in PostgreSQL's dead
    tuples — until the space is reused. VACUUM runs outside a transaction, after the commit.
    """
    if not tables:
        return
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("VACUUM")
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    elif connection.dialect.name == "postgresql":
        autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
        autocommit.exec_driver_sql("VACUUM FULL " + ", ".join(f'"{t}"' for t in tables))


engine = context.config.attributes.get("engine")
if engine is None:
    # A migration may rewrite a large table: no statement timeout for it.
    engine = create_db_engine(load_settings().database_url, statement_timeout=0)
with engine.connect() as conn:
    on_sqlite = conn.dialect.name == "sqlite"
    if on_sqlite:
        # Batch mode rebuilds a SQLite table by copying and dropping it, and with foreign keys
        # on, dropping ``patient`` would cascade to every row that references a patient. The
        # pragma only takes effect outside a transaction: it must be the first statement.
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    _run(conn)
    conn.commit()
    if on_sqlite:
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.commit()
        if broken:
            raise RuntimeError(f"the migration left rows whose references are broken: {broken[:5]}")
    _vacuum(conn, context.config.attributes.pop(VACUUM_AFTER, ()))
