"""Alembic environment: runs on the connection handed in by abcore.store.db.init_db, or on sqlalchemy.url."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from abcore.store.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds tables, keeping the rows
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as new_connection:
        _run(new_connection)
