"""The app database: one SQLModel engine factory for SQLite and PostgreSQL, sessions, migrations.

SQLite (the embedded default) runs in WAL mode with foreign keys enforced, in files only their
owner can read; PostgreSQL is used in production through the same code by setting
``SUIFANG_DATABASE_URL``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from alembic import command
from alembic.config import Config
from sqlalchemy import DateTime, Engine, Executable, Table, bindparam, event, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool, StaticPool
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

from suifang.core.private_files import PRIVATE_FILE_MODE, private_directory, private_file, tighten

__all__ = [
    "UTCDateTime",
    "check_database",
    "create_db_engine",
    "in_session_thread",
    "in_thread",
    "insert_for",
    "insert_new",
    "migrate",
    "pool_capacity",
    "session_scope",
    "update_by_id",
    "utcnow",
]


def utcnow() -> dt.datetime:
    """Timezone-aware now in UTC (for the API and activities; workflows use ``workflow.now()``)."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite has no timezone type, so values are stored there as naive UTC; PostgreSQL
    gets ``timestamp with time zone``. Naive datetimes are refused: they are ambiguous.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; use a timezone-aware one")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


POOL_SIZE = 10
POOL_MAX_OVERFLOW = 20


def pool_capacity(engine: Engine) -> int | None:
    """How many connections ``engine`` hands out at once (None: one shared connection).

    The API runs its database work on this many threads and admits half as many requests at
    a time, since a request may use two sessions (core/api/limits.py). The worker runs its
    database work in threads too, and never awaits with a connection checked out
    (workflows/worker.py): a thread that finds the pool empty waits in its own thread.
    """
    pool = engine.pool
    if isinstance(pool, QueuePool):
        return pool.size() + POOL_MAX_OVERFLOW
    return None


def _create_private_database_file(path: Path) -> None:
    """Create the SQLite file owner-only before SQLite opens it: SQLite gives the -wal and
    -shm files it creates beside a database that database's permissions, so all three are
    private from their first byte. Files an older version left readable are tightened."""
    private_directory(path.parent, tighten_existing=False)  # its directory may not be ours
    private_file(path)
    for companion in ("-wal", "-shm", "-journal"):
        tighten(path.with_name(path.name + companion), PRIVATE_FILE_MODE)


def create_db_engine(url: str, *, echo: bool = False, statement_timeout: float = 30.0) -> Engine:
    """An engine for ``url`` with the pragmas and pooling that URL's database needs.

    On PostgreSQL every statement is cancelled after ``statement_timeout`` seconds (0: never):
    a statement stuck behind a lock would otherwise hold a request, and with it the event
    loop that runs the request, for as long as the lock is held.
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        kwargs["connect_args"] = {"check_same_thread": False}
        if database in ("", ":memory:"):
            kwargs["poolclass"] = StaticPool
        else:
            _create_private_database_file(Path(database).expanduser())
            kwargs |= {"poolclass": QueuePool, "pool_size": POOL_SIZE}
            kwargs["max_overflow"] = POOL_MAX_OVERFLOW
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs["pool_pre_ping"] = True
    kwargs["pool_timeout"] = 10
    kwargs |= {"poolclass": QueuePool, "pool_size": POOL_SIZE, "max_overflow": POOL_MAX_OVERFLOW}
    if parsed.get_backend_name() == "postgresql":
        # Fail fast when the server is down instead of hanging a request (the URL may say
        # otherwise: ?connect_timeout=N); keepalives notice a server that vanished while a
        # pooled connection sat idle.
        defaults: dict[str, Any] = {
            "connect_timeout": 5,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        connect_args = {k: v for k, v in defaults.items() if k not in parsed.query}
        options = str(parsed.query.get("options", ""))
        if statement_timeout > 0 and "statement_timeout" not in options:
            # Added to the URL's own options (a search_path, say), which it would replace.
            timeout = f"-c statement_timeout={round(statement_timeout * 1000)}"
            connect_args["options"] = f"{options} {timeout}".strip()
        kwargs["connect_args"] = connect_args
    return create_engine(parsed, **kwargs)


def insert_for(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT for ``table`` that takes ON CONFLICT clauses, in the named dialect's flavour.

    SQLite and PostgreSQL spell ``INSERT … ON CONFLICT (…) DO NOTHING / DO UPDATE`` the same
    way and SQLAlchemy gives both the same API; only the construct comes from the dialect.
    """
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no ON CONFLICT insert for the {dialect} dialect")


@functools.cache
def insert_new(dialect: str, model: type[Any], *unique: str) -> Executable:
    """An INSERT into ``model``'s table that leaves alone a row whose ``unique`` columns are
    already taken (the idempotent write of a retried activity); built once per dialect."""
    return insert_for(dialect, model.__table__).on_conflict_do_nothing(index_elements=list(unique))  # type: ignore[attr-defined]


@functools.cache
def update_by_id(model: type[Any], key: str) -> Executable:
    """An UPDATE of the ``model`` row whose id is the parameter ``key``; its SET takes the
    columns the other parameters name, typed as the table's. Built once per model and key."""
    table = model.__table__  # type: ignore[attr-defined]
    return update(table).where(table.c.id == bindparam(key))


T = TypeVar("T")


async def in_thread(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` — blocking database work — in a thread, off the event loop.

    The thread comes from AnyIO's pool, the one FastAPI runs ``def`` routes and dependencies
    in: the API bounds it to the connection pool's capacity (core/api/limits.py), so a
    request's database work waits for a thread rather than for a connection.
    """
    return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs))


async def in_session_thread(
    session: Session, work: Callable[..., T], /, *args: Any, **kwargs: Any
) -> T:
    """``work(session, *args, **kwargs)`` in a thread, then the session's transaction ended (what it
    wrote committed), so that no connection stays checked out while the caller goes on to
    await Temporal or a channel. Load what the caller needs after it inside ``work``."""

    def run() -> T:
        try:
            result = work(session, *args, **kwargs)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        return result

    return await in_thread(run)


@contextlib.contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def check_database(engine: Engine) -> str | None:
    """``None`` if the database answers, else a short reason (for health checks)."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return type(exc.orig or exc).__name__ if hasattr(exc, "orig") else type(exc).__name__
    return None


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (``head`` by default) with the Alembic migrations."""
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
