"""abcore.experiments.lifecycle: validation, the lifecycle state machine, the audit log and targeting."""

from __future__ import annotations

import math

import pytest
from sqlmodel import Session

from abcore.assign.targeting import evaluate_targeting
from abcore.experiments.errors import ExperimentError, ExperimentNotFound, InvalidTransition
from abcore.experiments.lifecycle import (
    allowed_actions,
    cancel_experiment,
    create_experiment,
    delete_experiment,
    pause_experiment,
    resume_experiment,
    set_traffic_allocation,
    ship_winner,
    start_experiment,
    stop_experiment,
    update_allocations,
)
from abcore.experiments.ml_models import create_model, list_models, retire_model, update_model
from abcore.experiments.records import audit_log, get_experiment, get_variants, list_experiments
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.experiments.validation import validate_experiment


def spec(name: str = "ranker_v2", *allocations: float, **fields) -> ExperimentCreate:  # noqa: ANN003
    allocations = allocations or (50.0, 50.0)
    variants = [VariantCreate(name=f"v{i}", allocation_pct=a) for i, a in enumerate(allocations)]
    return ExperimentCreate(name=name, variants=variants, **fields)


def test_create_saves_a_draft_with_control_first_and_a_fixed_salt(session: Session) -> None:
    experiment = create_experiment(session=session, data=spec("a", 20, 30, 50), actor="ada")
    assert experiment.status == "draft" and experiment.created_by == "ada"
    assert experiment.salt and experiment.salt.startswith("a-")
    variants = get_variants(session=session, experiment_id=experiment.id)
    assert [(v.name, v.allocation_pct, v.is_control, v.position) for v in variants] == [
        ("v0", 20.0, True, 0),
        ("v1", 30.0, False, 1),
        ("v2", 50.0, False, 2),
    ]
    assert [(a.action, a.to_status, a.actor) for a in audit_log(session=session, experiment_id=experiment.id)] == [
        ("create", "draft", "ada")
    ]


def test_an_explicit_control_and_salt_are_kept(session: Session) -> None:
    data = ExperimentCreate(
        name="b",
        salt="fixed-salt",
        variants=[VariantCreate(name="new", allocation_pct=50), VariantCreate(name="old", allocation_pct=50, is_control=True)],
    )
    experiment = create_experiment(session=session, data=data)
    assert experiment.salt == "fixed-salt"
    assert [v.is_control for v in get_variants(session=session, experiment_id=experiment.id)] == [False, True]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (spec("", 50, 50), "needs a name"),
        (spec("x", 100), "at least two variants"),
        (spec("x", 50, 40), "sum to exactly 100 %; they sum to 90 %"),
        (spec("x", 60, 60), "they sum to 120 %"),
        (spec("x", -10, 110), "cannot be negative"),
        (spec("x", 0, 100), "more than 0 %"),  # a 0 % variant never gets a user
        (spec("x", 33.333, 33.333, 33.333), "they sum to 99.999 %"),  # every decimal, never rounded to 100
        (spec("x", 33.3334, 33.3334, 33.3333), "they sum to 100.0001 %"),
        (spec("x", math.nan, 100), "finite number"),
        (spec("x", 50, 50, traffic_allocation=0), "traffic share"),
        (spec("x", 50, 50, traffic_allocation=1.5), "traffic share"),
        (spec("x", 50, 50, targeting=[{"attribute": "age", "op": "gt", "value": "old"}]), "needs a number"),
        (spec("x", 50, 50, targeting=[{"attribute": "c", "op": "like", "value": 1}]), "unknown operator"),
        (spec("x", 50, 50, success_criteria={"direction": "sideways"}), "direction"),
        (spec("x", 50, 50, success_criteria={"confidence": 95}), "confidence level"),
        (spec("x" * 201, 50, 50), "at most 200"),
        (spec("x", 50, 50, min_duration_days=-1), "minimum duration"),
    ],
)
def test_validation_explains_every_problem(data: ExperimentCreate, expected: str) -> None:
    problems = validate_experiment(data)
    assert any(expected in p for p in problems), problems


def test_duplicate_variant_names_and_duplicate_experiment_names_are_refused(session: Session) -> None:
    data = ExperimentCreate(
        name="dup", variants=[VariantCreate(name="a", allocation_pct=50), VariantCreate(name=" a ", allocation_pct=50)]
    )
    assert any("unique" in p for p in validate_experiment(data))
    create_experiment(session=session, data=spec("taken"))
    with pytest.raises(ExperimentError, match="already exists"):
        create_experiment(session=session, data=spec("taken"))
    assert len(list_experiments(session=session)) == 1


def test_unknown_model_is_refused(session: Session) -> None:
    data = spec("m")
    data.variants[0].model_id = 12345
    with pytest.raises(ExperimentError, match="Unknown model"):
        create_experiment(session=session, data=data)


def test_full_lifecycle_writes_the_audit_log(session: Session) -> None:
    experiment = create_experiment(session=session, data=spec("life"))
    assert allowed_actions("draft") == ["start", "delete", "cancel"]
    started = start_experiment(session=session, ref="life", actor="ada")
    assert started.status == "running" and started.started_at is not None
    assert pause_experiment(session=session, ref=experiment.id).status == "paused"
    assert resume_experiment(session=session, ref=str(experiment.id)).status == "running"
    stopped = stop_experiment(session=session, ref="life", actor="bob")
    assert stopped.status == "completed" and stopped.stopped_at is not None
    shipped = ship_winner(session=session, ref="life", variant="v1", rollout_pct=25, actor="cy")
    variants = get_variants(session=session, experiment_id=experiment.id)
    assert shipped.winner_variant_id == variants[1].id and shipped.rollout_pct == 25
    log = audit_log(session=session, experiment_id=experiment.id)
    assert [(a.action, a.from_status, a.to_status) for a in reversed(log)] == [
        ("create", None, "draft"),
        ("start", "draft", "running"),
        ("pause", "running", "paused"),
        ("resume", "paused", "running"),
        ("stop", "running", "completed"),
        ("ship", "completed", "completed"),
    ]
    assert log[0].actor == "cy" and log[0].details["winner"] == "v1"


@pytest.mark.parametrize(
    ("status_path", "action"),
    [
        ([], pause_experiment),
        ([], resume_experiment),
        ([], stop_experiment),
        ([start_experiment], start_experiment),
        ([start_experiment], resume_experiment),
        ([start_experiment, pause_experiment], pause_experiment),
        ([start_experiment, stop_experiment], cancel_experiment),
        ([start_experiment, stop_experiment], start_experiment),
        ([cancel_experiment], start_experiment),
        ([cancel_experiment], cancel_experiment),
    ],
)
def test_invalid_transitions_are_refused_and_change_nothing(session: Session, status_path, action) -> None:  # noqa: ANN001
    experiment = create_experiment(session=session, data=spec("t"))
    for step in status_path:
        step(session=session, ref=experiment.id)
    before = get_experiment(session=session, ref=experiment.id).status
    entries = len(audit_log(session=session))
    with pytest.raises(InvalidTransition, match="Cannot"):
        action(session=session, ref=experiment.id)
    assert get_experiment(session=session, ref=experiment.id).status == before
    assert len(audit_log(session=session)) == entries
    assert action.__name__.split("_")[0] not in allowed_actions(before)


def test_ship_needs_a_completed_experiment_a_known_variant_and_a_valid_rollout(session: Session) -> None:
    create_experiment(session=session, data=spec("s"))
    with pytest.raises(InvalidTransition, match="stop the experiment first"):
        ship_winner(session=session, ref="s", variant="v0")
    start_experiment(session=session, ref="s")
    stop_experiment(session=session, ref="s")
    with pytest.raises(ExperimentError, match="no variant 'nope'"):
        ship_winner(session=session, ref="s", variant="nope")
    with pytest.raises(ExperimentError, match="rollout"):
        ship_winner(session=session, ref="s", variant="v0", rollout_pct=0)
    assert ship_winner(session=session, ref="s", variant="v0").rollout_pct == 100


def test_a_reference_of_digits_is_always_an_id_and_names_cannot_be_all_digits(session: Session) -> None:
    from tests.factories import insert_experiment

    legacy, _ = insert_experiment(session, name="2", salt="s", status="draft")  # stored before the rule: id 1
    second = create_experiment(session=session, data=spec("two"))  # id 2
    assert (legacy.id, second.id) == (1, 2)
    for ref in ("2", " 2 ", "02", 2):
        assert get_experiment(session=session, ref=ref).id == 2  # never the experiment named "2"
    assert get_experiment(session=session, ref="1").name == "2"
    for ref in ("3", "99999999999999999999999", "9" * 5000):
        with pytest.raises(ExperimentNotFound, match="made of digits is an id"):
            get_experiment(session=session, ref=ref)
    for name in ("20", " 007 ", "2147483648"):
        with pytest.raises(ExperimentError, match="all digits"):
            create_experiment(session=session, data=spec(name))
    for name in ("exp-20", "20x", "٢٠", "2.0", "-20"):  # letters, other scripts' digits, signs and dots are names
        assert get_experiment(session=session, ref=create_experiment(session=session, data=spec(name)).name).name == name


def test_ship_with_stop_checks_everything_first_then_stops_and_ships_in_one_transaction(session: Session) -> None:
    create_experiment(session=session, data=spec("s"))
    with pytest.raises(InvalidTransition, match="stop the experiment first"):
        ship_winner(session=session, ref="s", variant="v0", stop=True)  # a draft is not stopped
    start_experiment(session=session, ref="s")
    for bad in ({"variant": "nope"}, {"variant": "v0", "rollout_pct": 0}, {"variant": "v0", "rollout_pct": math.nan}):
        with pytest.raises(ExperimentError):
            ship_winner(session=session, ref="s", stop=True, **bad)  # type: ignore[arg-type]
    running = get_experiment(session=session, ref="s")
    assert (running.status, running.stopped_at, running.winner_variant_id) == ("running", None, None)
    assert [a.action for a in audit_log(session=session, experiment_id=running.id)] == ["start", "create"]
    shipped = ship_winner(session=session, ref="s", variant="v1", rollout_pct=30, stop=True, actor="cy")
    assert (shipped.status, shipped.rollout_pct) == ("completed", 30) and shipped.stopped_at is not None
    entries = audit_log(session=session, experiment_id=running.id)
    assert [(a.action, a.actor) for a in entries][:2] == [("ship", "cy"), ("stop", "cy")]


def test_only_drafts_can_be_deleted_and_the_audit_keeps_the_name(session: Session) -> None:
    draft = create_experiment(session=session, data=spec("gone"))
    delete_experiment(session=session, ref=draft.id, actor="ada")
    with pytest.raises(ExperimentNotFound):
        get_experiment(session=session, ref="gone")
    assert any(a.action == "delete" and a.details["name"] == "gone" for a in audit_log(session=session))
    create_experiment(session=session, data=spec("live"))
    start_experiment(session=session, ref="live")
    with pytest.raises(InvalidTransition, match="only drafts"):
        delete_experiment(session=session, ref="live")


def test_allocations_and_traffic_can_change_while_running(session: Session) -> None:
    create_experiment(session=session, data=spec("ramp"))
    start_experiment(session=session, ref="ramp")
    update_allocations(session=session, ref="ramp", allocations={"v0": 30, "v1": 70})
    experiment = get_experiment(session=session, ref="ramp")
    assert [v.allocation_pct for v in get_variants(session=session, experiment_id=experiment.id)] == [30.0, 70.0]
    with pytest.raises(ExperimentError, match="sum to exactly 100"):
        update_allocations(session=session, ref="ramp", allocations={"v0": 10})
    with pytest.raises(ExperimentError, match="no variant"):
        update_allocations(session=session, ref="ramp", allocations={"zz": 100})
    assert set_traffic_allocation(session=session, ref="ramp", traffic_allocation=0.25).traffic_allocation == 0.25
    assert set_traffic_allocation(session=session, ref="ramp", traffic_allocation=0).traffic_allocation == 0
    with pytest.raises(ExperimentError, match="between 0 and 1"):
        set_traffic_allocation(session=session, ref="ramp", traffic_allocation=1.01)


def test_unknown_experiment_is_reported_by_name(session: Session) -> None:
    with pytest.raises(ExperimentNotFound, match="'missing'"):
        start_experiment(session=session, ref="missing")


@pytest.mark.parametrize(
    ("rules", "user", "attributes", "eligible"),
    [
        ([], "u", None, True),
        ([{"attribute": "country", "op": "eq", "value": "DE"}], "u", {"country": "DE"}, True),
        ([{"attribute": "country", "op": "eq", "value": "DE"}], "u", {"country": "FR"}, False),
        ([{"attribute": "country", "op": "eq", "value": "DE"}], "u", {}, False),
        ([{"attribute": "country", "op": "neq", "value": "DE"}], "u", {}, True),
        ([{"attribute": "country", "op": "in", "value": ["DE", "FR"]}], "u", {"country": "FR"}, True),
        ([{"attribute": "country", "op": "not_in", "value": ["DE", "FR"]}], "u", {"country": "FR"}, False),
        ([{"attribute": "country", "op": "not_in", "value": ["DE"]}], "u", {"country": "US"}, True),
        ([{"attribute": "age", "op": "gte", "value": 18}], "u", {"age": 18}, True),
        ([{"attribute": "age", "op": "gt", "value": 18}], "u", {"age": "18"}, False),
        ([{"attribute": "age", "op": "lt", "value": 18}], "u", {"age": "17.5"}, True),
        ([{"attribute": "age", "op": "lte", "value": 18}], "u", {"age": "n/a"}, False),
        ([{"attribute": "tier", "op": "eq", "value": 2}], "u", {"tier": "2"}, True),
        ([{"op": "user_ids", "value": ["a", "b"]}], "b", {}, True),
        ([{"op": "user_ids", "value": ["a", "b"]}], "c", {}, False),
        (
            [{"attribute": "country", "op": "eq", "value": "DE"}, {"attribute": "age", "op": "gte", "value": 18}],
            "u",
            {"country": "DE", "age": 16},
            False,
        ),
    ],
)
def test_targeting_rules(rules, user, attributes, eligible) -> None:  # noqa: ANN001
    assert evaluate_targeting(rules, user, attributes) is eligible


def test_model_registry(session: Session) -> None:
    als = create_model(session=session, name="als", version="1.0", config={"factors": 64})
    create_model(session=session, name="popgen")
    with pytest.raises(ExperimentError, match="already registered"):
        create_model(session=session, name="als", version="1.0")  # (name, version) is the identity (migration 0009)
    with pytest.raises(ExperimentError, match="needs a name"):
        create_model(session=session, name="  ")
    update_model(session=session, model_id=als.id, version="1.1", description="better")
    retire_model(session=session, model_id=als.id)
    assert [m.name for m in list_models(session=session)] == ["popgen"]
    everything = list_models(session=session, active_only=False)
    assert [(m.name, m.version, m.is_active) for m in everything] == [("als", "1.1", False), ("popgen", "1", True)]
    with pytest.raises(ExperimentError, match="Unknown model field"):
        update_model(session=session, model_id=als.id, colour="red")
