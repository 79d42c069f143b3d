"""``commit_unique``: a row the store's unique constraint refuses raises the caller's error and stores nothing."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from abcore.store.db import commit_unique
from abcore.store.tables import AuditLog, Layer


def test_a_refused_commit_raises_the_given_error_and_stores_nothing_of_the_request(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(first := _layer("home"))  # the caller adds the rows; commit_unique commits them
        commit_unique(session, first, ValueError("unused"))
        assert first.id is not None and first.name == "home"  # refreshed after the commit
    with Session(engine) as session:  # as a concurrent create would: the check passed, the constraint refuses
        session.add(AuditLog(experiment_id=None, action="add_layer", actor="t", details={}))
        session.add(again := _layer("home"))
        refusal = LookupError("A layer named 'home' already exists.")
        with pytest.raises(LookupError) as raised:
            commit_unique(session, again, refusal)
        assert raised.value is refusal and raised.value.__cause__ is not None
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Layer)).one() == 1
        assert session.exec(select(func.count()).select_from(AuditLog)).one() == 0  # the other pending row too


def _layer(name: str) -> Layer:
    return Layer(name=name, description="", salt=f"salt-{name}", created_by="t")
