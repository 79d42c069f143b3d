"""Bad input never corrupts or loses data: each case gets a clear error or a consistent result,
and the store stays valid afterwards (both backends)."""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.experiments.errors import ExperimentError, InvalidTransition
from abcore.experiments.lifecycle import (
    allowed_actions,
    cancel_experiment,
    create_experiment,
    delete_experiment,
    pause_experiment,
    resume_experiment,
    ship_winner,
    start_experiment,
    stop_experiment,
    update_allocations,
)
from abcore.experiments.records import audit_log, get_experiment, get_variants, list_experiments
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.io.configs import export_config, import_config
from abcore.io.csv_export import ExportError
from abcore.store.tables import AuditLog, Experiment, Variant

TEN_KB = "x" * 10_000
NASTY_NAMES = [
    'quote " double',
    "quote ' single",
    "back\\slash; DROP TABLE ab_experiments; --",
    "ünïcødé 用户 🙂",
    "comma, and  two spaces",
    "x" * 200,  # exactly the maximum length
]


def two_variants(a: float = 50, b: float = 50) -> list[VariantCreate]:
    return [VariantCreate(name="control", allocation_pct=a), VariantCreate(name="treatment", allocation_pct=b)]


def assert_store_valid(session: Session) -> None:
    """Invariants of a healthy store: every experiment has >= 2 uniquely named variants summing to 100 %,
    a known status, and an audit trail starting with its creation."""
    session.expire_all()
    for exp in list_experiments(session=session):
        variants = get_variants(session=session, experiment_id=exp.id)  # type: ignore[arg-type]
        assert len(variants) >= 2, exp.name
        assert len({v.name for v in variants}) == len(variants)
        assert all(math.isfinite(v.allocation_pct) and v.allocation_pct >= 0 for v in variants)
        assert math.isclose(sum(v.allocation_pct for v in variants), 100.0, abs_tol=1e-6), exp.name
        assert exp.status in ("draft", "running", "paused", "completed", "cancelled")
        log = audit_log(session=session, experiment_id=exp.id)
        assert log and log[-1].action == "create"
        if exp.winner_variant_id is not None:
            assert exp.winner_variant_id in {v.id for v in variants}


def snapshot(session: Session) -> tuple:
    session.expire_all()
    experiments = session.exec(select(Experiment.name, Experiment.status).order_by(Experiment.id)).all()  # type: ignore[call-overload]
    variants = session.exec(select(Variant.name, Variant.allocation_pct).order_by(Variant.id)).all()  # type: ignore[call-overload]
    audits = session.execute(select(func.count()).select_from(AuditLog)).scalar_one()
    return tuple(map(tuple, experiments)), tuple(map(tuple, variants)), audits


def refused(session: Session, action: Callable[[], object], match: str | None = None) -> ExperimentError:
    """``action`` raises a user-readable ExperimentError and changes nothing in the store."""
    before = snapshot(session)
    with pytest.raises(ExperimentError, match=match) as info:
        action()
    session.rollback()
    assert snapshot(session) == before
    assert_store_valid(session)
    return info.value


# --------------------------------------------------------------------------- names and strings


def test_nasty_names_are_stored_exactly(session: Session) -> None:
    for name in NASTY_NAMES:
        exp = create_experiment(
            session=session,
            data=ExperimentCreate(name=name, description=TEN_KB + ' "ü"', variants=[
                VariantCreate(name=f"{name[:150]} A", allocation_pct=50), VariantCreate(name="B ' \"", allocation_pct=50)
            ]),
        )
        session.expire_all()
        again = get_experiment(session=session, ref=name)
        assert again.id == exp.id and again.name == name and again.description == TEN_KB + ' "ü"'
        assert [v.name for v in get_variants(session=session, experiment_id=exp.id)] == [f"{name[:150]} A", "B ' \""]
        start_experiment(session=session, ref=name)
        assert get_experiment(session=session, ref=name).status == "running"
    assert sorted(e.name for e in list_experiments(session=session)) == sorted(NASTY_NAMES)
    assert_store_valid(session)


# One rule for every name: no C0 / DEL / C1 control characters, no zero-width or bidirectional formatting characters.
FORBIDDEN_IN_NAMES = ["\x1b[31m", "\x07", "\n", "\r", "\t", "\x7f", "\x85", "\x9b", "\u200b", "\u200d", "\u200f",
                      "\u202e", "\u2060", "\u2064", "\u2066", "\u2069", "\ufeff"]


@pytest.mark.parametrize("bad", FORBIDDEN_IN_NAMES, ids=lambda c: f"U+{ord(c[0]):04X}")
def test_names_with_control_or_invisible_characters_are_refused(session: Session, bad: str) -> None:
    from abcore.experiments.editing import clone_experiment, update_experiment
    from abcore.experiments.ml_models import ModelError, create_model, update_model

    point = re.escape(f"U+{ord(bad[0]):04X}")
    create_experiment(session=session, data=ExperimentCreate(name="base", variants=two_variants()))
    cases = {
        "name": {"name": f"pay{bad}wall"},
        "variant name": {"variants": [VariantCreate(name=f"con{bad}trol", allocation_pct=50),
                                      VariantCreate(name="treatment", allocation_pct=50)]},
        "primary metric": {"primary_metric": f"click{bad}"},
        "secondary metric": {"secondary_metrics": ["ok", f"{bad}revenue"]},
        "guardrail": {"guardrail_metrics": [f"lat{bad}ency"]},
    }
    for label, fields in cases.items():
        data = {"name": "fine", "variants": two_variants(), **fields}
        error = refused(session, lambda d=data: create_experiment(session=session, data=ExperimentCreate(**d)), point)
        assert label.split()[0] in str(error) and bad not in str(error), str(error)
    refused(session, lambda: clone_experiment(session=session, ref="base", name=f"co{bad}py"), point)
    refused(session, lambda: update_experiment(session=session, ref="base", changes={"guardrail_metrics": [f"x{bad}y"]}), point)
    with pytest.raises(ModelError, match=point):
        create_model(session=session, name=f"a{bad}ls")
    model = create_model(session=session, name="als")
    with pytest.raises(ModelError, match=point):
        update_model(session=session, model_id=model.id, name=f"als{bad}v2")
    from abcore.metrics import define_metric

    with pytest.raises(ValueError, match=point):
        define_metric(session=session, data={"name": f"lat{bad}ency", "kind": "mean"})


def test_names_keep_every_other_character(session: Session) -> None:
    for name in ("ünïcødé 用户 🙂", "non\u00a0breaking", "emoji 👩\u200d💻 joiner"[:5], "right-to-left עברית", "a.b:c@d"):
        create_experiment(session=session, data=ExperimentCreate(name=name, variants=two_variants()))
        assert get_experiment(session=session, ref=name).name == name


@pytest.mark.parametrize(
    "fields",
    [{"traffic_allocation": True}, {"min_duration_days": True}, {"min_samples_per_variant": False},
     {"variants": [{"name": "a", "allocation_pct": True}, {"name": "b", "allocation_pct": 99}]},
     {"variants": [{"name": "a", "allocation_pct": 50, "model_id": True}, {"name": "b", "allocation_pct": 50}]}],
)
def test_booleans_are_not_numbers(fields: dict) -> None:
    with pytest.raises(ValueError, match="a number is expected, not true or false"):
        ExperimentCreate.model_validate({"name": "x", "variants": [{"name": "a", "allocation_pct": 50},
                                                                   {"name": "b", "allocation_pct": 50}], **fields})


def test_booleans_are_not_numbers_in_edits(session: Session) -> None:
    from abcore.experiments.editing import update_experiment

    create_experiment(session=session, data=ExperimentCreate(name="e", variants=two_variants()))
    for changes in ({"traffic_allocation": True}, {"allocations": {"control": True, "treatment": 99}},
                    {"min_samples_per_variant": True}):
        refused(session, lambda c=changes: update_experiment(session=session, ref="e", changes=c), "not true or false")


BAD_NAME_CASES = [
        ({"name": TEN_KB}, "characters"),
        ({"name": "   "}, "needs a name"),
        ({"variants": [VariantCreate(name=TEN_KB, allocation_pct=50), VariantCreate(name="b", allocation_pct=50)]}, "at most"),
        ({"variants": [VariantCreate(name="a", allocation_pct=50), VariantCreate(name="a", allocation_pct=50)]}, "unique"),
        ({"variants": [VariantCreate(name="a", allocation_pct=100)]}, "two variants"),
    ]


def test_bad_names_are_refused(session: Session) -> None:
    for fields, match in BAD_NAME_CASES:
        data = {"name": "ok", "variants": two_variants(), **fields}
        refused(session, lambda d=data: create_experiment(session=session, data=ExperimentCreate(**d)), match)


# Found by these tests: abcore.experiments.lifecycle does not check the length of salt / primary_metric / created_by /
# actor / metric names against the 200-character columns, nor NUL characters. PostgreSQL then raises a raw
# sqlalchemy DataError (not an ExperimentError) and SQLite silently stores what PostgreSQL refuses.
# Expected: ExperimentError with a readable message, nothing stored, on both backends.
OVERLONG_OR_NUL = {
    "salt": {"salt": TEN_KB},
    "primary_metric": {"primary_metric": TEN_KB},
    "created_by": {"created_by": TEN_KB},
    "secondary_metric": {"secondary_metrics": [TEN_KB]},
    "nul-name": {"name": "nul\x00byte"},
    "nul-variant": {"variants": [VariantCreate(name="nul\x00", allocation_pct=50), VariantCreate(name="b", allocation_pct=50)]},
}


def _refused_cleanly(session: Session, action: Callable[[], object]) -> str | None:
    """None when ``action`` raised ExperimentError and left the store as it was, else what happened."""
    before = snapshot(session)
    try:
        action()
    except ExperimentError:
        outcome = None
    except Exception as error:  # noqa: BLE001 - the finding is the exception type
        outcome = f"raised {type(error).__name__} instead of ExperimentError"
    else:
        outcome = "was accepted"
    session.rollback()
    if snapshot(session) != before:
        outcome = (outcome or "") + " and changed the store"
    return outcome


def test_overlong_or_nul_fields_are_refused_cleanly(session: Session) -> None:
    problems = {}
    for label, fields in OVERLONG_OR_NUL.items():
        data = {"name": "long-fields", "variants": two_variants(), **fields}
        outcome = _refused_cleanly(session, lambda d=data: create_experiment(session=session, data=ExperimentCreate(**d)))
        if outcome:
            problems[label] = outcome
    create_experiment(session=session, data=ExperimentCreate(name="actor", variants=two_variants()))
    outcome = _refused_cleanly(session, lambda: start_experiment(session=session, ref="actor", actor=TEN_KB))
    if outcome:
        problems["actor"] = outcome
    session.expire_all()
    if get_experiment(session=session, ref="actor").status != "draft":
        problems["actor"] = f"{problems.get('actor', '')}; the experiment started anyway"
    assert_store_valid(session)
    assert problems == {}


# --------------------------------------------------------------------------- allocations


BAD_ALLOCATIONS = [
    (50, 49.99, "sum to exactly 100"),
    (60, 60, "sum to exactly 100"),
    (-10, 110, "negative"),
    (float("nan"), 100, "finite"),
    (float("inf"), 0, "finite"),
    (0, 0, "more than 0 %"),
    (0, 100, "more than 0 %"),  # a 0 % arm would never get a user
]


def test_bad_allocations_are_refused(session: Session) -> None:
    for a, b, match in BAD_ALLOCATIONS:
        refused(
            session,
            lambda a=a, b=b: create_experiment(session=session, data=ExperimentCreate(name="alloc", variants=two_variants(a, b))),
            match,
        )


def test_bad_allocation_updates_change_nothing(session: Session) -> None:
    exp = create_experiment(session=session, data=ExperimentCreate(name="split", variants=two_variants()))
    start_experiment(session=session, ref="split")
    for allocations in (
        {"control": 70},
        {"control": -5, "treatment": 105},
        {"control": float("nan"), "treatment": 50},
        {"nope": 50, "control": 50},
        {"control": 0, "treatment": 100},  # a 0 % arm: refused like at create time
    ):
        refused(session, lambda a=allocations: update_allocations(session=session, ref="split", allocations=a))
        assert [v.allocation_pct for v in get_variants(session=session, experiment_id=exp.id)] == [50, 50]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- status changes

ACTIONS: dict[str, Callable[..., object]] = {
    "start": start_experiment,
    "pause": pause_experiment,
    "resume": resume_experiment,
    "stop": stop_experiment,
    "cancel": cancel_experiment,
    "delete": delete_experiment,
    "ship": lambda *, session, ref: ship_winner(session=session, ref=ref, variant="treatment"),
}
PATHS = {"draft": [], "running": ["start"], "paused": ["start", "pause"], "completed": ["start", "stop"], "cancelled": ["cancel"]}


@pytest.mark.parametrize("status", list(PATHS))
def test_disallowed_status_changes_raise_invalid_transition(session: Session, status: str) -> None:
    create_experiment(session=session, data=ExperimentCreate(name="machine", variants=two_variants()))
    for step in PATHS[status]:
        ACTIONS[step](session=session, ref="machine")
    assert get_experiment(session=session, ref="machine").status == status
    for action, function in ACTIONS.items():
        if action in allowed_actions(status):
            continue
        error = refused(session, lambda f=function: f(session=session, ref="machine"))
        assert isinstance(error, InvalidTransition), action
        assert get_experiment(session=session, ref="machine").status == status


def test_bad_rollouts_are_refused(session: Session) -> None:
    create_experiment(session=session, data=ExperimentCreate(name="ship", variants=two_variants()))
    start_experiment(session=session, ref="ship")
    stop_experiment(session=session, ref="ship")
    for rollout in (0, -1, 101, float("nan")):
        refused(session, lambda r=rollout: ship_winner(session=session, ref="ship", variant="treatment", rollout_pct=r), "rollout")
    refused(session, lambda: ship_winner(session=session, ref="ship", variant="ghost"), "no variant")
    assert get_experiment(session=session, ref="ship").winner_variant_id is None


# --------------------------------------------------------------------------- concurrency


@pytest.mark.parametrize("action", ["start", "cancel"])
def test_concurrent_transitions_of_one_draft(engine: Engine, session: Session, action: str) -> None:
    """Four sessions in four threads press the same button at once: exactly one wins, the others get
    InvalidTransition, and the audit log records the change once."""
    exp = create_experiment(session=session, data=ExperimentCreate(name="race", variants=two_variants()))
    barrier = threading.Barrier(4)
    outcomes: list[object] = []
    lock = threading.Lock()

    def press() -> None:
        with Session(engine, expire_on_commit=False) as own:
            get_experiment(session=own, ref="race")  # everybody has read "draft" before anybody writes
            barrier.wait()
            try:
                ACTIONS[action](session=own, ref="race")
                result: object = "ok"
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                result = error
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=press) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes.count("ok") == 1, outcomes
    losers = [o for o in outcomes if o != "ok"]
    assert len(losers) == 3 and all(isinstance(o, InvalidTransition) for o in losers), losers
    session.expire_all()
    assert [e.action for e in audit_log(session=session, experiment_id=exp.id)].count(action) == 1
    assert_store_valid(session)


# --------------------------------------------------------------------------- JSON configs


def test_config_with_quotes_unicode_and_long_strings_round_trips(session: Session) -> None:
    config = {
        "experiment_id": 'cfg "quoted" ü 🙂',
        "salt": "salt ' \" ü",
        "description": TEN_KB,
        "variants": [{"name": 'a "1"', "weight": 1, "config": {"text": TEN_KB}}, {"name": "b, ü", "weight": 2}],
    }
    (exp,) = import_config(session=session, data=json.loads(json.dumps(config)))
    exported = export_config(session=session, experiment=exp.id)
    assert exported["experiment_id"] == config["experiment_id"] and exported["salt"] == config["salt"]
    assert exported["description"] == TEN_KB
    assert [(v["name"], v["weight"]) for v in exported["variants"]] == [('a "1"', 33.33), ("b, ü", 66.67)]
    assert exported["variants"][0]["config"] == {"text": TEN_KB}
    assert_store_valid(session)


BAD_CONFIGS = [
        {"experiment_id": TEN_KB, "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]},
        {"experiment_id": "x", "salt": TEN_KB, "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]},
        {"experiment_id": "x", "variants": [{"name": "a", "weight": -1}, {"name": "b", "weight": 2}]},
        {"experiment_id": "x", "variants": [{"name": "a", "weight": float("nan")}, {"name": "b", "weight": 2}]},
        {"experiment_id": "x", "variants": [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]},
        {"experiment_id": "x", "variants": [{"name": "a", "weight": "heavy"}, {"name": "b", "weight": 1}]},
        {"experiment_id": "x", "variants": []},
        {"experiment_id": "x", "variants": [{"weight": 1}, {"name": "b"}]},
        {"experiment_id": "", "variants": [{"name": "a"}, {"name": "b"}]},
        {"experiment_id": "x", "traffic_allocation": 5, "variants": [{"name": "a"}, {"name": "b"}]},
        {"experiment_id": "x", "min_duration_days": "soon", "variants": [{"name": "a"}, {"name": "b"}]},
        ["not", "objects"],
    ]


def test_bad_configs_are_refused_without_side_effects(session: Session) -> None:
    import_config(session=session, data={"experiment_id": "existing", "variants": [{"name": "a"}, {"name": "b"}]})
    before = snapshot(session)
    for config in [*BAD_CONFIGS, {"experiment_id": "existing", "variants": [{"name": "a"}, {"name": "b"}]}]:
        with pytest.raises((ExportError, ExperimentError)):
            import_config(session=session, data=config)
        session.rollback()
        assert snapshot(session) == before, config
    assert_store_valid(session)
