"""``interleave`` against a real store: deterministic per request, entry as ``assign`` (targeting, traffic, pause,
stop), nothing written on the request path, the impression stored one row per position, clicks tracked with it."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

import abcore
from abcore import experiments as ex
from abcore.assign import Assigner, Interleaving
from abcore.assign.interleaving import merge, request_seed
from abcore.store.tables import ExperimentEvent
from tests.factories import make_experiment

from .conftest import count_assignments, count_events, lifecycle

A = [f"a{k}" for k in range(10)]
B = [f"a{k}" for k in range(5, 15)]


def rankers(engine: Engine, name: str = "rank", *, method: str | None = None, n: int = 2, **fields: object) -> int:
    arms = [ex.VariantCreate(name=f"r{i}", allocation_pct=100 / n if i < n - 1 else 100 - (n - 1) * (100 / n)) for i in range(n)]
    exp = make_experiment(engine, name, arms, kind="interleaving", interleaving_method=method, salt=f"{name}-salt", **fields)
    return int(exp.id)


def test_merged_list_is_the_method_on_the_request_seed(engine: Engine, assigner: Assigner) -> None:
    exp_id = rankers(engine)
    shown = assigner_interleave(assigner, "u1", {"r0": A, "r1": B}, request_id="req-1")
    assert isinstance(shown, Interleaving) and shown.experiment_id == exp_id and shown.method == "team_draft"
    # Independently: the pure method on the seed of ("rank-salt", "u1", "req-1").
    items, owners = merge("team_draft", [A, B], 10, request_seed("rank-salt", "u1", "req-1"))
    assert list(shown.items) == items
    assert list(shown.owners) == [None if o is None else f"r{o}" for o in owners]
    assert shown.impression_id == f"{request_seed('rank-salt', 'u1', 'req-1'):032x}"
    again = assigner_interleave(assigner, "u1", {"r1": B, "r0": A}, request_id="req-1")
    assert again == shown  # same request: same list, whatever the mapping's order
    page2 = assigner_interleave(assigner, "u1", {"r0": A, "r1": B}, request_id="req-1", length=15)
    assert page2 is not None and page2.items[:10] == shown.items and len(page2.items) == 15
    assert shown.owner_of(shown.items[0]) == shown.owners[0] and shown.owner_of("zz") is None


def assigner_interleave(assigner: Assigner, user: str, rankings: dict, **kw: object) -> Interleaving | None:
    from abcore.assign.interleave import interleave

    return interleave(assigner, user, "rank", rankings, **kw)  # type: ignore[arg-type]


def test_nothing_written_on_the_request_path_and_one_row_per_position_after_flush(engine: Engine, assigner: Assigner) -> None:
    exp_id = rankers(engine)
    shown = assigner_interleave(assigner, "u1", {"r0": A, "r1": B}, request_id="req-1", length=6)
    assert shown is not None
    assert count_assignments(engine, exp_id) == 0 and count_events(engine, exp_id, "impression") == 0
    assert assigner.track("u1", "rank", "click", properties={"item": shown.items[2], "impression": shown.impression_id})
    assigner.flush()
    assert count_assignments(engine, exp_id, "u1") == 1
    with engine.connect() as connection:
        rows = connection.execute(
            select(ExperimentEvent.value, ExperimentEvent.properties, ExperimentEvent.request_id)
            .where(ExperimentEvent.event_type == "impression")
            .order_by(ExperimentEvent.value)
        ).all()
    assert [r[0] for r in rows] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert [r[1]["item"] for r in rows] == list(shown.items)
    assert [r[1]["owner"] for r in rows] == list(shown.owners)
    assert {r[1]["impression"] for r in rows} == {shown.impression_id} and {r[2] for r in rows} == {"req-1"}
    assert count_events(engine, exp_id, "conversion") == 1


def test_methods_and_multileaving(engine: Engine, assigner: Assigner) -> None:
    rankers(engine, "bal", method="balanced")
    rankers(engine, "multi", n=3)
    from abcore.assign.interleave import interleave

    bal = interleave(assigner, "u", "bal", {"r0": A, "r1": B}, request_id="x")
    assert bal is not None and bal.method == "balanced"
    multi = interleave(assigner, "u", "multi", {"r0": A, "r1": B, "r2": A[::-1]}, request_id="x")
    assert multi is not None and set(multi.owners) <= {"r0", "r1", "r2", None} and len(multi.items) == 10  # the longest ranking


def test_entry_follows_assign_targeting_traffic_pause_stop(engine: Engine, assigner: Assigner) -> None:
    from abcore.assign.interleave import interleave

    rankers(engine, "half", traffic_allocation=0.5)
    served = [interleave(assigner, f"u{k}", "half", {"r0": A, "r1": B}) is not None for k in range(200)]
    entered = [assigner.assign(f"u{k}", "half") is not None for k in range(200)]
    assert served == entered and 60 < sum(served) < 140
    exp_id = rankers(engine)
    assert assigner_interleave(assigner, "old", {"r0": A, "r1": B}) is not None
    lifecycle(engine, "pause", exp_id)
    assert assigner_interleave(assigner, "old", {"r0": A, "r1": B}) is not None  # already in: still served
    assert assigner_interleave(assigner, "new", {"r0": A, "r1": B}) is None
    lifecycle(engine, "resume", exp_id)
    lifecycle(engine, "stop", exp_id)
    assert assigner_interleave(assigner, "old", {"r0": A, "r1": B}) is None
    assert assigner_interleave(assigner, "u", {"r0": A, "r1": B}) is None
    assert interleave(assigner, "u", "no-such", {"r0": A, "r1": B}) is None


def test_caller_errors_raise_and_store_trouble_does_not(engine: Engine, assigner: Assigner) -> None:
    from abcore.assign.interleave import interleave

    rankers(engine)
    make_experiment(engine, "plain")
    with pytest.raises(ValueError, match="exactly the rankers"):
        assigner_interleave(assigner, "u", {"r0": A})
    with pytest.raises(ValueError, match="interleaving one"):
        interleave(assigner, "u", "plain", {"control": A, "treatment": B})
    with pytest.raises(TypeError, match="item ids"):
        assigner_interleave(assigner, "u", {"r0": [1.5], "r1": B})
    with pytest.raises(TypeError, match="mapping"):
        assigner_interleave(assigner, "u", [A, B])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="length"):
        assigner_interleave(assigner, "u", {"r0": A, "r1": B}, length=True)
    broken = Assigner("postgresql+psycopg://nobody@127.0.0.1:1/none", timeout=0.05, first_load_timeout=0.1)
    try:
        assert interleave(broken, "u", "rank", {"r0": A, "r1": B}) is None
    finally:
        broken.close(timeout=0.1)


def test_public_name() -> None:
    from abcore.assign import interleave

    assert abcore.interleave is interleave


def test_assign_without_experiment_skips_interleaving_ones(engine: Engine, assigner: Assigner) -> None:
    make_experiment(engine, "plain")
    rankers(engine, "later")  # started after: still not the default of assign(user)
    answer = assigner.assign("u1")
    assert answer is not None and answer.experiment_name == "plain"


def test_expand_impressions_keeps_other_events_in_order() -> None:
    from abcore.assign.interleave import expand_impressions

    ts = object()
    click = (1, 2, "u", "conversion", "click", 1.0, None, {"item": "x"}, ts)
    buffered = (1, 2, "u", "impression", None, None, "r", {"impression": "i", "items": ["x", 7], "owners": ["a", None]}, ts)
    stored = (1, 2, "u", "impression", None, 1.0, "r", {"impression": "j", "item": "y", "owner": "b"}, ts)
    assert expand_impressions([click]) == [click]
    assert expand_impressions([click, buffered, stored]) == [
        click,
        (1, 2, "u", "impression", None, 1.0, "r", {"impression": "i", "item": "x", "owner": "a"}, ts),
        (1, 2, "u", "impression", None, 2.0, "r", {"impression": "i", "item": 7, "owner": None}, ts),
        stored,
    ]
