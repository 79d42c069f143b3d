"""Engines, migrations, and the commit of rows a unique constraint guards.

Engines are built by :func:`make_engine`, never at import. SQLite engines run
with WAL journaling, foreign keys on and a busy timeout; PostgreSQL URLs use
psycopg 3 (``postgresql+psycopg://``). :func:`init_db` upgrades the schema to
the newest Alembic revision shipped inside the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, create_engine

from abcore.config import database_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000


def _normalise_url(url: str) -> str:
    """Plain ``postgresql://`` and ``postgres://`` URLs are served by psycopg 3, the driver abcore ships."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """Build an engine for ``url`` (default: :func:`abcore.config.database_url`).

    For a SQLite file the parent folder is created; every SQLite connection gets
    ``journal_mode=WAL`` (file databases), ``foreign_keys=ON`` and a busy timeout.
    Extra keyword arguments go to :func:`sqlalchemy.create_engine`.
    """
    url = _normalise_url(url or database_url())
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if not in_memory:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        connect_args.update(kwargs.pop("connect_args", {}))
        engine = create_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def alembic_config(engine: Engine | None = None) -> Any:
    """An Alembic ``Config`` pointing at the migrations shipped in the package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return config


def init_db(engine: Engine | None = None) -> Engine:
    """Upgrade the database to the newest schema (Alembic ``upgrade head``) and return the engine.

    Safe to call on every start: an up-to-date database is left as it is, and
    migrations only add (they never drop user data).
    """
    from alembic import command

    engine = engine or make_engine()
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return engine


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest Alembic revision shipped in the package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def table_names(engine: Engine) -> list[str]:
    """Names of the tables present in the database (for health checks and tests)."""
    return sorted(inspect(engine).get_table_names())


Row = TypeVar("Row")


def commit_unique(session: Session, row: Row, refused: Exception) -> Row:
    """Commit the session's pending writes and return ``row`` refreshed. The caller checked uniqueness first; when
    the store's unique constraint still refuses (a concurrent write took the name between the check and the
    commit), everything pending is rolled back and ``refused`` is raised: nothing of the request is stored."""
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise refused from error
    session.refresh(row)
    return row
