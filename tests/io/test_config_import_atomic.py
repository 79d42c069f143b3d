"""``import_config`` writes a file's experiments (and its new metric definitions) in one transaction:
when the store refuses one of them after validation passed, none is stored."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import insert
from sqlmodel import Session, select

from abcore.experiments.errors import ExperimentError
from abcore.io import configs
from abcore.io.configs import import_config
from abcore.store.tables import Experiment, MetricDefinition


def _config(name: str, metric: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"experiment_id": name, "variants": [{"name": "control"}, {"name": "treatment"}]}
    if metric is not None:
        out["primary_metric"] = metric
        out["metric_definitions"] = [{"name": metric, "kind": "mean", "direction": "increase"}]
    return out


def _names(session: Session) -> set[str]:
    session.rollback()
    return set(session.exec(select(Experiment.name)).all())


def test_a_refused_experiment_leaves_none_of_the_file_stored(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two good experiments and a third the store refuses at write time (its name taken by a concurrent create
    between validation and insert, inside the import's transaction): nothing of the file is stored."""
    real_add = configs.add_draft

    def add_draft(session: Session, data: Any, actor: str, *args: Any, **kwargs: Any) -> Experiment:
        if data.name == "third":  # what a concurrent create of the same name does to the insert
            session.execute(insert(Experiment).values(name="third", salt="s", targeting=[], secondary_metrics=[],
                                                      guardrail_metrics=[], success_criteria={}, auto_stop={}))
        return real_add(session, data, actor, *args, **kwargs)

    monkeypatch.setattr(configs, "add_draft", add_draft)
    before = _names(session)
    with pytest.raises(ExperimentError, match="already exists"):
        import_config(session=session, data=[_config("first", "dwell_s"), _config("second"), _config("third")])
    assert _names(session) == before
    assert session.exec(select(MetricDefinition).where(MetricDefinition.name == "dwell_s")).first() is None


def test_a_good_file_is_stored_whole(session: Session) -> None:
    created = import_config(session=session, data=[_config("first", "dwell_s"), _config("second")], actor="ci")
    assert [e.name for e in created] == ["first", "second"] and all(e.id is not None for e in created)
    assert {"first", "second"} <= _names(session)
    assert session.exec(select(MetricDefinition).where(MetricDefinition.name == "dwell_s")).one().kind == "mean"


def test_an_invalid_experiment_among_good_ones_stores_nothing(session: Session) -> None:
    bad = {"experiment_id": "bad", "variants": [{"name": "a", "weight": -1}, {"name": "b"}]}
    before = _names(session)
    with pytest.raises(ExperimentError):
        import_config(session=session, data=[_config("first"), _config("second"), bad])
    assert _names(session) == before
