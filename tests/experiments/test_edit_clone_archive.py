"""Editing (update_experiment), cloning and archiving, on SQLite and PostgreSQL (``session`` runs both).

Expected values are the inputs themselves (hand derivation: what was written must be read back),
and the before/after pairs of the audit log are compared with the values read before the edit.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import Session

from abcore import experiments as ex
from abcore.store.tables import AuditLog, Experiment, Model


def _draft(session: Session, name: str = "exp", **extra: object) -> Experiment:
    data = ex.ExperimentCreate(
        name=name,
        description="first",
        primary_metric="conversion",
        secondary_metrics=["watch_time"],
        guardrail_metrics=["latency_ms"],
        targeting=[{"attribute": "country", "op": "in", "value": ["DE"]}],
        traffic_allocation=0.5,
        success_criteria={"metric": "conversion", "direction": "increase", "threshold": 0.02, "confidence": 0.95},
        variants=[ex.VariantCreate(name="control", allocation_pct=50), ex.VariantCreate(name="treatment", allocation_pct=50)],
        auto_stop={"guardrails": "pause"},
        **extra,  # type: ignore[arg-type]
    )
    return ex.create_experiment(session=session, data=data, actor="author")


def _last(session: Session, experiment_id: int, action: str) -> AuditLog:
    return next(a for a in ex.audit_log(session=session, experiment_id=experiment_id) if a.action == action)


# --------------------------------------------------------------------------- edit


def test_a_draft_accepts_every_field_and_the_audit_keeps_before_and_after(session: Session) -> None:
    exp = _draft(session)
    model = Model(name="als", version="1")
    session.add(model)
    session.commit()
    changes = {
        "description": "second",
        "hypothesis": "more clicks",
        "primary_metric": "clicks",
        "secondary_metrics": ["watch_time", " revenue ", "revenue"],
        "guardrail_metrics": ["errors"],
        "targeting": [{"attribute": "platform", "op": "eq", "value": "ios"}],
        "traffic_allocation": 0.25,
        "allocations": {"control": 30, "treatment": 70},
        "variant_models": {"treatment": model.id},
        "variant_configs": {"treatment": {"boost": 2}},
        "min_duration_days": 14,
        "auto_stop": {"srm": "pause"},
    }
    after = ex.update_experiment(session=session, ref="exp", changes=changes, actor="editor")
    assert (after.description, after.hypothesis, after.primary_metric) == ("second", "more clicks", "clicks")
    assert after.secondary_metrics == ["watch_time", "revenue"]  # stripped and deduplicated
    assert after.guardrail_metrics == ["errors"]
    assert after.targeting == [{"attribute": "platform", "op": "eq", "value": "ios"}]
    assert after.traffic_allocation == 0.25
    assert after.min_duration_days == 14
    assert after.auto_stop == ex.normalize_auto_stop({"srm": "pause"})
    # the success criteria named the old primary metric: they follow the new one
    assert after.success_criteria["metric"] == "clicks"
    variants = {v.name: v for v in ex.get_variants(session=session, experiment_id=exp.id)}
    assert (variants["control"].allocation_pct, variants["treatment"].allocation_pct) == (30.0, 70.0)
    assert variants["treatment"].model_id == model.id and variants["treatment"].config == {"boost": 2}
    assert variants["control"].model_id is None and variants["control"].config == {}
    entry = _last(session, exp.id, "update")
    assert entry.actor == "editor"
    recorded = entry.details["changes"]
    assert recorded["description"] == {"before": "first", "after": "second"}
    assert recorded["traffic_allocation"] == {"before": 0.5, "after": 0.25}
    assert recorded["allocations"] == {"before": {"control": 50.0, "treatment": 50.0},
                                       "after": {"control": 30, "treatment": 70}}
    assert recorded["success_criteria"]["before"]["metric"] == "conversion"
    assert set(recorded) == set(changes) | {"success_criteria"}


def test_unchanged_values_are_not_changes(session: Session) -> None:
    exp = _draft(session)
    ex.update_experiment(session=session, ref=exp.id, changes={"description": "first", "traffic_allocation": 0.5})
    assert not [a for a in ex.audit_log(session=session, experiment_id=exp.id) if a.action == "update"]
    assert ex.planned_changes(session=session, ref=exp.id, changes={"description": "x"}) == {
        "description": {"before": "first", "after": "x"}
    }


def test_edits_are_validated_with_the_creation_rules_and_every_problem_is_listed(session: Session) -> None:
    exp = _draft(session)
    with pytest.raises(ex.ExperimentError) as info:
        ex.update_experiment(session=session, ref=exp.id, changes={
            "allocations": {"control": 10},  # 10 + 50 = 60 %
            "traffic_allocation": 0,
            "targeting": [{"attribute": "age", "op": "gt", "value": "old"}],
            "variant_models": {"control": 999},
        })
    text_ = " ".join(info.value.problems)
    assert "sum to exactly 100" in text_ and "traffic share" in text_ and "needs a number" in text_
    assert "Unknown model id(s): 999" in text_
    with pytest.raises(ex.ExperimentError) as info:
        ex.update_experiment(session=session, ref=exp.id, changes={"colour": "red", "allocations": {"nope": 1}})
    assert any("colour" in p for p in info.value.problems)
    with pytest.raises(ex.ExperimentError, match="no variant"):
        ex.update_experiment(session=session, ref=exp.id, changes={"allocations": {"nope": 100}})
    fresh = ex.get_experiment(session=session, ref=exp.id)
    assert fresh.traffic_allocation == 0.5 and fresh.description == "first"  # nothing saved


@pytest.mark.parametrize("status", ["running", "paused"])
def test_a_started_experiment_takes_only_the_safe_fields(session: Session, status: str) -> None:
    exp = _draft(session)
    ex.start_experiment(session=session, ref=exp.id)
    if status == "paused":
        ex.pause_experiment(session=session, ref=exp.id)
    after = ex.update_experiment(session=session, ref=exp.id, changes={
        "description": "d2", "hypothesis": "h2", "secondary_metrics": ["revenue"], "traffic_allocation": 0.8,
    }, actor="ed")
    assert (after.description, after.hypothesis, after.secondary_metrics, after.traffic_allocation) == (
        "d2", "h2", ["revenue"], 0.8)
    assert after.status == status
    with pytest.raises(ex.InvalidTransition) as info:
        ex.update_experiment(session=session, ref=exp.id, changes={
            "description": "d3",  # safe, but the whole edit is refused
            "primary_metric": "clicks",
            "guardrail_metrics": [],
            "targeting": [],
            "traffic_allocation": 0.6,  # down
            "allocations": {"control": 40, "treatment": 60},
            "variant_models": {"control": None, "treatment": None},  # unchanged: not refused
            "variant_configs": {"treatment": {"x": 1}},
            "min_samples_per_variant": 10,
        })
    refused = info.value.problems
    fields = sorted(p.split(":")[0] for p in refused)
    assert fields == ["allocations", "guardrail_metrics", "min_samples_per_variant", "primary_metric", "targeting",
                      "traffic_allocation", "variant_configs"]
    assert all(len(p.split(": ", 1)[1]) > 20 for p in refused)  # each with its reason
    assert any("only go up" in p for p in refused)
    fresh = ex.get_experiment(session=session, ref=exp.id)
    assert fresh.description == "d2" and fresh.traffic_allocation == 0.8


def test_a_finished_experiment_is_not_edited(session: Session) -> None:
    exp = _draft(session)
    ex.cancel_experiment(session=session, ref=exp.id)
    with pytest.raises(ex.InvalidTransition, match="clone it"):
        ex.update_experiment(session=session, ref=exp.id, changes={"description": "late"})


# --------------------------------------------------------------------------- clone


@pytest.mark.parametrize("keep_salt", [False, True])
def test_clone_copies_the_configuration_into_a_new_draft(session: Session, keep_salt: bool) -> None:
    source = _draft(session, min_samples_per_variant=500)
    ex.update_experiment(session=session, ref=source.id, changes={
        "allocations": {"control": 20, "treatment": 80}, "variant_configs": {"treatment": {"k": [1, 2]}}})
    ex.start_experiment(session=session, ref=source.id)
    ex.stop_experiment(session=session, ref=source.id)
    source = ex.get_experiment(session=session, ref=source.id)
    copy = ex.clone_experiment(session=session, ref=source.id, name="exp v2", keep_salt=keep_salt, actor="cl")
    assert copy.status == "draft" and copy.id != source.id and copy.started_at is None
    for field in ("description", "hypothesis", "traffic_allocation", "targeting", "primary_metric",
                  "secondary_metrics", "guardrail_metrics", "success_criteria", "min_duration_days",
                  "min_samples_per_variant", "auto_stop"):
        assert getattr(copy, field) == getattr(source, field), field
    assert (copy.salt == source.salt) is keep_salt
    shape = [(v.name, v.allocation_pct, v.model_id, v.config, v.is_control, v.position)
             for v in ex.get_variants(session=session, experiment_id=copy.id)]
    assert shape == [("control", 20.0, None, {}, True, 0), ("treatment", 80.0, None, {"k": [1, 2]}, False, 1)]
    created = _last(session, copy.id, "create")
    assert created.details["cloned_from"] == {"id": source.id, "name": source.name}
    assert created.details["keep_salt"] is keep_salt
    assert _last(session, source.id, "clone").details["clone"] == {"id": copy.id, "name": "exp v2"}


def test_clone_needs_a_free_valid_name(session: Session) -> None:
    _draft(session)
    with pytest.raises(ex.ExperimentError, match="already exists"):
        ex.clone_experiment(session=session, ref="exp", name="exp")
    with pytest.raises(ex.ExperimentError, match="needs a name"):
        ex.clone_experiment(session=session, ref="exp", name="  ")
    assert len(ex.list_experiments(session=session)) == 1


# --------------------------------------------------------------------------- archive


def test_archive_hides_finished_experiments_from_listings(session: Session) -> None:
    done = _draft(session, "done")
    ex.start_experiment(session=session, ref=done.id)
    ex.stop_experiment(session=session, ref=done.id)
    dropped = _draft(session, "dropped")
    ex.cancel_experiment(session=session, ref=dropped.id)
    live = _draft(session, "live")
    for ref in ("done", "dropped"):
        assert ex.archive_experiment(session=session, ref=ref, actor="arch").archived_at is not None
    assert [e.name for e in ex.list_experiments(session=session)] == ["live"]
    assert {e.name for e in ex.list_experiments(session=session, include_archived=True)} == {"done", "dropped", "live"}
    assert [e.name for e in ex.list_experiments(session=session, status="completed", include_archived=True)] == ["done"]
    assert ex.get_experiment(session=session, ref="done").name == "done"  # still readable
    assert _last(session, done.id, "archive").actor == "arch"
    with pytest.raises(ex.InvalidTransition, match="already archived"):
        ex.archive_experiment(session=session, ref="done")
    with pytest.raises(ex.InvalidTransition, match="only completed or cancelled"):
        ex.archive_experiment(session=session, ref=live.id)
    restored = ex.archive_experiment(session=session, ref="done", archived=False, actor="arch")
    assert restored.archived_at is None
    assert _last(session, done.id, "unarchive").actor == "arch"
    assert {e.name for e in ex.list_experiments(session=session)} == {"done", "live"}


def test_migration_0008_adds_the_columns_and_the_settings_table(session: Session) -> None:
    _draft(session)
    row = session.execute(text("SELECT archived_at, approval_status, approved_by FROM ab_experiments")).one()
    assert tuple(row) == (None, "", None)
    assert session.execute(text("SELECT COUNT(*) FROM ab_settings")).scalar_one() == 0


def test_migration_0008_downgrades_and_upgrades_with_data(sqlite_url: str) -> None:
    from alembic import command

    from abcore.store.db import alembic_config, current_revision, make_engine

    engine = make_engine(sqlite_url)
    with Session(engine, expire_on_commit=False) as session:
        exp = _draft(session)
        ex.cancel_experiment(session=session, ref=exp.id)
        ex.archive_experiment(session=session, ref=exp.id)
        ex.set_require_approval(session=session, required=True)
    config = alembic_config(engine)
    command.downgrade(config, "0007")
    assert current_revision(engine) == "0007"
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name, status FROM ab_experiments")).one() == ("exp", "cancelled")
    command.upgrade(config, "head")
    with Session(engine, expire_on_commit=False) as session:
        back = ex.get_experiment(session=session, ref="exp")
        assert back.archived_at is None and back.approval_status == ""  # the added columns start empty
        assert ex.require_approval(session=session) is False
    engine.dispose()
