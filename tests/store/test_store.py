"""The store: migrations, round-trips, constraints and the default URL, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from abcore.config import DATABASE_URL_ENV, PROJECT_ROOT, database_url, default_database_url
from abcore.store.db import current_revision, head_revision, init_db, make_engine, table_names
from abcore.store.tables import AuditLog, Experiment, ExperimentEvent, Model, UserAssignment, Variant
from tests.factories import insert_experiment

TABLES = [
    "ab_audit_log",
    "ab_experiment_results",
    "ab_experiment_variants",
    "ab_experiments",
    "ab_models",
    "ab_user_assignments",
]
TRICKY_JSON = {"quote": 'he said "hi"', "unicode": "Größe ✓ 実験", "nested": {"list": [1, 2.5, None, True]}}


def _filled_experiment(session: Session, name: str = "ranker_v2") -> tuple[Experiment, Variant, Variant]:
    """Rows of an experiment with every JSON column filled; the treatment's config is ``TRICKY_JSON``."""
    experiment, arms = insert_experiment(
        session,
        [("control", 50), ("treatment", 50, TRICKY_JSON)],
        name=name,
        salt=f"{name}-salt",
        targeting=[{"attribute": "country", "op": "in", "value": ["DE", "FR"]}],
        secondary_metrics=["watch_time"],
        guardrail_metrics=["latency_ms"],
        success_criteria={"metric": "conversion", "direction": "increase", "threshold": 0.02, "confidence": 0.95},
    )
    return experiment, arms["control"], arms["treatment"]


def test_migrations_create_every_table_from_empty(db_url: str) -> None:
    engine = make_engine(db_url)
    assert set(TABLES) <= set(table_names(engine))
    assert current_revision(engine) == head_revision()
    init_db(engine)  # idempotent: a second upgrade is a no-op
    assert current_revision(engine) == head_revision()
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("ab_experiment_results")}
    # 0003: the analysis indexes of 0002 replace the two 0001 ones (fewer indexes, cheaper inserts)
    assert {"ix_results_exp_type_metric_user_ts_value", "ix_results_exp_type_user_ts"} <= indexes
    assert not {"ix_results_exp_type_metric_user", "ix_results_exp_ts"} & indexes
    engine.dispose()


def test_every_table_round_trips_including_json(session: Session) -> None:
    model = Model(name="als", version="2.1", description="ALS ranker", config=TRICKY_JSON)
    session.add(model)
    session.commit()
    experiment, control, treatment = _filled_experiment(session)
    treatment.model_id = model.id
    session.add(UserAssignment(user_id="u1", experiment_id=experiment.id, variant_id=treatment.id, attributes={"country": "DE"}))
    session.add(
        ExperimentEvent(
            experiment_id=experiment.id,
            variant_id=treatment.id,
            user_id="u1",
            event_type="conversion",
            metric_name="watch_time",
            value=12.5,
            request_id="r-1",
            properties=TRICKY_JSON,
        )
    )
    session.add(AuditLog(experiment_id=experiment.id, action="start", from_status="draft", to_status="running", actor="ada", details=TRICKY_JSON))
    session.commit()
    session.expunge_all()

    assert session.exec(select(Model)).one().config == TRICKY_JSON
    stored = session.exec(select(Experiment)).one()
    assert stored.targeting == [{"attribute": "country", "op": "in", "value": ["DE", "FR"]}]
    assert stored.secondary_metrics == ["watch_time"] and stored.guardrail_metrics == ["latency_ms"]
    assert stored.success_criteria["threshold"] == 0.02
    assert stored.created_at.tzinfo is not None and stored.created_at.utcoffset().total_seconds() == 0
    variants = session.exec(select(Variant).order_by(Variant.position)).all()
    assert [v.name for v in variants] == ["control", "treatment"]
    assert variants[1].config == TRICKY_JSON and variants[1].model_id == model.id
    assignment = session.exec(select(UserAssignment)).one()
    assert assignment.attributes == {"country": "DE"}
    event = session.exec(select(ExperimentEvent)).one()
    assert (event.metric_name, event.value, event.properties) == ("watch_time", 12.5, TRICKY_JSON)
    audit = session.exec(select(AuditLog)).one()
    assert (audit.action, audit.actor, audit.details) == ("start", "ada", TRICKY_JSON)


def test_a_user_holds_at_most_one_assignment_per_experiment(session: Session) -> None:
    experiment, control, treatment = _filled_experiment(session)
    session.add(UserAssignment(user_id="u1", experiment_id=experiment.id, variant_id=control.id))
    session.commit()
    session.add(UserAssignment(user_id="u1", experiment_id=experiment.id, variant_id=treatment.id))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    other, other_control, _ = _filled_experiment(session, name="other")
    session.add(UserAssignment(user_id="u1", experiment_id=other.id, variant_id=other_control.id))
    session.commit()  # the same user in another experiment is fine
    assert len(session.exec(select(UserAssignment)).all()) == 2


def test_unique_names_and_event_keys(session: Session) -> None:
    _filled_experiment(session)
    session.add(Experiment(name="ranker_v2", salt="x"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    experiment = session.exec(select(Experiment)).one()
    session.add(ExperimentEvent(experiment_id=experiment.id, user_id="u", event_type="exposure", event_key="k1"))
    session.commit()
    session.add(ExperimentEvent(experiment_id=experiment.id, user_id="u", event_type="exposure", event_key="k1"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    # NULL keys never collide
    session.add_all([ExperimentEvent(experiment_id=experiment.id, user_id="u", event_type="exposure") for _ in range(2)])
    session.commit()


def test_deleting_an_experiment_cascades_and_keeps_models_and_audit(session: Session) -> None:
    model = Model(name="popgen")
    session.add(model)
    session.commit()
    experiment, control, treatment = _filled_experiment(session)
    control.model_id = model.id
    session.add(UserAssignment(user_id="u1", experiment_id=experiment.id, variant_id=control.id))
    session.add(ExperimentEvent(experiment_id=experiment.id, variant_id=control.id, user_id="u1", event_type="exposure"))
    session.add(AuditLog(experiment_id=experiment.id, action="create", actor="ada", details={"name": experiment.name}))
    session.commit()

    session.execute(text("DELETE FROM ab_experiments WHERE id = :id"), {"id": experiment.id})
    session.commit()
    session.expunge_all()
    assert session.exec(select(Variant)).all() == []
    assert session.exec(select(UserAssignment)).all() == []
    assert session.exec(select(ExperimentEvent)).all() == []
    audit = session.exec(select(AuditLog)).one()
    assert audit.experiment_id is None and audit.details == {"name": "ranker_v2"}
    assert session.exec(select(Model)).one().name == "popgen"


def test_retiring_a_model_row_nulls_the_variant_reference(session: Session) -> None:
    model = Model(name="als")
    session.add(model)
    session.commit()
    _, control, _ = _filled_experiment(session)
    control.model_id = model.id
    session.commit()
    session.execute(text("DELETE FROM ab_models WHERE id = :id"), {"id": model.id})
    session.commit()
    session.expunge_all()
    assert session.get(Variant, control.id).model_id is None


def test_foreign_keys_are_enforced(session: Session) -> None:
    session.add(Variant(experiment_id=999_999, name="orphan", allocation_pct=100))
    with pytest.raises(IntegrityError):
        session.commit()


def test_sqlite_runs_with_wal_and_foreign_keys(sqlite_engine) -> None:  # noqa: ANN001
    with sqlite_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_default_url_is_the_project_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    expected = f"sqlite:///{PROJECT_ROOT / 'data' / 'abcore.db'}"
    assert database_url() == default_database_url() == expected
    assert (PROJECT_ROOT / "pyproject.toml").exists()
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql+psycopg://u@h/db")
    assert database_url() == "postgresql+psycopg://u@h/db"


def test_default_url_from_another_working_directory_in_a_fresh_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != DATABASE_URL_ENV}
    output = subprocess.run(
        [sys.executable, "-c", "from abcore.config import database_url; print(database_url())"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert output == f"sqlite:///{PROJECT_ROOT / 'data' / 'abcore.db'}"


def test_a_later_migration_keeps_rows(sqlite_url: str) -> None:
    """Re-running the upgrade on a database holding data leaves every row in place."""
    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        _filled_experiment(session)
    init_db(engine)
    with Session(engine) as session:
        assert len(session.exec(select(Variant)).all()) == 2
    engine.dispose()


def test_timestamps_are_utc(session: Session) -> None:
    experiment, _, _ = _filled_experiment(session)
    naive_now = datetime.now(UTC)
    session.expunge_all()
    stored = session.get(Experiment, experiment.id)
    assert abs((stored.created_at - naive_now).total_seconds()) < 60


def test_a_model_name_may_have_several_versions_but_each_version_once(session: Session) -> None:
    # migration 0009: (name, version) is the unique key of ab_models, not the name alone
    session.add_all([Model(name="als", version="1"), Model(name="als", version="2")])
    session.commit()
    assert sorted(m.version for m in session.exec(select(Model)).all()) == ["1", "2"]
    session.add(Model(name="als", version="2"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
