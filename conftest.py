"""Shared fixtures: a fresh, migrated database per test, on SQLite and (when configured) on PostgreSQL.

* ``db_url`` / ``engine`` / ``session`` run a test on both backends. The Postgres run
  uses its own schema (``search_path`` in the URL, so subprocesses and the dashboard can
  use the same URL) and is skipped, with the reason, when ``ABCORE_TEST_POSTGRES_URL`` is
  unset. When CI sets it and Postgres is unreachable, the test errors instead.
* ``sqlite_url`` / ``sqlite_engine`` are for tests that need only one backend.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.store.db import init_db, make_engine

POSTGRES_ENV = "ABCORE_TEST_POSTGRES_URL"

# Never let a test touch the developer's data/abcore.db: point the default at a throwaway file.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="abcore-tests-"))
os.environ["ABCORE_DATABASE_URL"] = f"sqlite:///{_SESSION_DIR / 'default.db'}"


def postgres_base_url() -> str | None:
    return os.environ.get(POSTGRES_ENV, "").strip() or None


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'abcore.db'}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh, migrated SQLite file database."""
    url = _sqlite_url(tmp_path)
    engine = init_db(make_engine(url))
    engine.dispose()
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh, migrated schema in the test Postgres (dropped afterwards)."""
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (CI sets it; e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    url = f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    engine = init_db(make_engine(url))
    engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated database on each backend in turn."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session
