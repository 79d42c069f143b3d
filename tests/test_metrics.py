"""Metric registry: define / update / get / list / archive, validation, import, migration 0004 backfill."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlmodel import Session

from abcore.metrics import (
    DEFAULT_KIND,
    MetricCreate,
    MetricNotFound,
    MetricSpec,
    archive_metric,
    define_metric,
    get_metric,
    import_metrics,
    list_metrics,
    metric_to_dict,
    update_metric,
    validate_metric,
)
from abcore.store.db import alembic_config, make_engine


def test_define_get_list_update_archive(session: Session) -> None:
    row = define_metric(session=session, data=MetricCreate(name="latency_ms", kind="mean", direction="decrease"))
    assert row.id is not None and row.kind == "mean" and row.direction == "decrease"
    assert get_metric(session=session, name="latency_ms").id == row.id
    define_metric(session=session, data={"name": "clicks", "kind": "count"})
    assert [m.name for m in list_metrics(session=session)] == ["clicks", "latency_ms"]
    updated = update_metric(session=session, name="latency_ms", changes={"cap": "percentile", "cap_upper": 0.99})
    assert (updated.cap, updated.cap_upper, updated.kind) == ("percentile", 0.99, "mean")
    archive_metric(session=session, name="clicks")
    assert [m.name for m in list_metrics(session=session)] == ["latency_ms"]
    assert [m.name for m in list_metrics(session=session, include_archived=True)] == ["clicks", "latency_ms"]
    archive_metric(session=session, name="clicks", archived=False)
    assert len(list_metrics(session=session)) == 2
    with pytest.raises(MetricNotFound):
        get_metric(session=session, name="nope")


def test_duplicate_name_is_rejected(session: Session) -> None:
    define_metric(session=session, data=MetricCreate(name="conversion"))
    with pytest.raises(ValueError, match="already exists"):
        define_metric(session=session, data=MetricCreate(name="conversion"))
    define_metric(session=session, data=MetricCreate(name="other"))
    with pytest.raises(ValueError, match="already exists"):
        update_metric(session=session, name="other", changes={"name": "conversion"})


def test_validation_lists_every_problem() -> None:
    problems = validate_metric(
        {"name": "", "kind": "ratio", "direction": "up", "window_hours": -1, "delay_hours": -2,
         "cap": "percentile", "cap_upper": 1.5, "min_detectable_effect": -0.1, "quantile": 0.5}
    )
    text = " ".join(problems)
    for needle in ("name", "direction", "numerator", "denominator", "quantile is only", "window_hours",
                   "delay_hours", "cap_upper", "min_detectable_effect"):
        assert needle in text, needle
    assert validate_metric({"name": "q", "kind": "quantile"})  # quantile missing
    assert validate_metric({"name": "b", "kind": "binomial", "cap": "absolute", "cap_upper": 3})  # not cappable
    assert validate_metric({"name": "m", "kind": "mean", "cap": "absolute", "cap_upper": 1, "cap_lower": 2})
    assert validate_metric({"name": "r", "kind": "ratio", "numerator": "a", "denominator": "b"}) == []
    assert validate_metric({"name": "q", "kind": "quantile", "quantile": 0.95}) == []


@pytest.mark.parametrize(("upper", "lower"), [(1.0, None), (0.99, 0.0), (0.0, None)])
def test_a_percentile_cap_the_analysis_refuses_is_refused_when_defined(
    session: Session, upper: float, lower: float | None
) -> None:
    # The 100th / 0th percentile is no cap: the analysis query refuses it, so defining it must fail too.
    data = MetricCreate(name="revenue", kind="mean", cap="percentile", cap_upper=upper, cap_lower=lower)
    with pytest.raises(ValueError, match=r"percentile cap must be in \(0, 1\)"):
        define_metric(session=session, data=data)
    with pytest.raises(ValueError, match=r"percentile cap must be in \(0, 1\)"):
        MetricSpec(name="revenue", kind="mean", cap="percentile", cap_upper=upper, cap_lower=lower)
    assert list_metrics(session=session) == []
    define_metric(session=session, data=MetricCreate(name="revenue", kind="mean", cap="percentile", cap_upper=0.99))
    with pytest.raises(ValueError, match=r"percentile cap must be in \(0, 1\)"):
        update_metric(session=session, name="revenue", changes={"cap_upper": 1.0})


def test_one_default_kind_for_every_definition() -> None:
    # The registry, the analysis and `abcore stats` share one MetricSpec: no kind means a conversion.
    assert DEFAULT_KIND == "binomial"
    assert MetricCreate(name="x").kind == MetricSpec(name="x").kind == DEFAULT_KIND


def test_invalid_definition_raises_with_all_problems(session: Session) -> None:
    with pytest.raises(ValueError) as info:
        define_metric(session=session, data=MetricCreate(name="x", kind="weird", direction="sideways"))
    assert "kind" in str(info.value) and "direction" in str(info.value)
    define_metric(session=session, data=MetricCreate(name="m", kind="mean"))
    with pytest.raises(ValueError, match="numerator"):
        update_metric(session=session, name="m", changes={"kind": "ratio"})
    assert get_metric(session=session, name="m").kind == "mean"  # nothing written


def test_import_is_all_or_nothing_and_round_trips(session: Session) -> None:
    items = [
        {"name": "watch_per_session", "kind": "ratio", "numerator": "watch_min", "denominator": "sessions"},
        {"name": "p95_latency", "kind": "quantile", "quantile": 0.95, "direction": "decrease"},
    ]
    import_metrics(session=session, items=items)
    assert get_metric(session=session, name="p95_latency").quantile == 0.95
    with pytest.raises(ValueError):
        import_metrics(session=session, items=[{"name": "ok"}, {"name": "bad", "kind": "nope"}])
    with pytest.raises(MetricNotFound):
        get_metric(session=session, name="ok")
    exported = [metric_to_dict(m) for m in list_metrics(session=session)]
    import_metrics(session=session, items=[{**exported[0], "description": "changed"}])
    assert get_metric(session=session, name=exported[0]["name"]).description == "changed"


def test_migration_0004_backfills_definitions(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    now = "2026-01-01 00:00:00"
    with engine.begin() as c:
        c.execute(sa.text(
            "INSERT INTO ab_experiments (id, name, description, hypothesis, status, salt, traffic_allocation, "
            "targeting, primary_metric, secondary_metrics, guardrail_metrics, success_criteria, min_duration_days, "
            "min_samples_per_variant, created_by, created_at, updated_at) VALUES (1, 'e', '', '', 'running', 's', 1, "
            "'[]', 'conversion', '[\"revenue\"]', '[\"latency_ms\", \"ctr\"]', "
            "'{\"guardrail_directions\": {\"ctr\": \"increase\"}}', 0, 0, '', :now, :now)"
        ), {"now": now})
        c.execute(sa.text("INSERT INTO ab_experiment_variants (id, experiment_id, name, allocation_pct, config, "
                          "is_control, position) VALUES (1, 1, 'control', 100, '{}', 1, 0)"))
        for metric, value in (("conversion", 1.0), ("conversion", None), ("revenue", 12.5), ("latency_ms", 80.0),
                              ("ctr", 1.0)):
            c.execute(sa.text(
                "INSERT INTO ab_experiment_results (experiment_id, user_id, event_type, metric_name, value, "
                "properties, ts) VALUES (1, 'u', 'conversion', :m, :v, '{}', :now)"
            ), {"m": metric, "v": value, "now": now})
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with Session(engine) as s:
        got = {m.name: (m.kind, m.direction) for m in list_metrics(session=s)}
    # Expected by hand from the rows above: 0/1/NULL values -> binomial, others -> mean (the old rule);
    # guardrails "must not increase" -> decrease unless guardrail_directions says increase.
    assert got == {
        "conversion": ("binomial", "increase"),
        "revenue": ("mean", "increase"),
        "latency_ms": ("mean", "decrease"),
        "ctr": ("binomial", "increase"),
    }
    engine.dispose()
