"""Layered assignment through the store: ``assign_layer``, exclusive experiments, the layer default, holdouts.

Expected answers come from the hash itself (:func:`abcore.assign.layers.layer_unit` and the ranges the
lifecycle reserved), computed independently of the assigner's cached definitions.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore import experiments as ex
from abcore.assign import Assigner
from abcore.assign.hashing import bucket
from abcore.assign.layers import layer_unit
from tests.assign.conftest import count_assignments, lifecycle
from tests.factories import make_experiment

USERS = [f"u{i}" for i in range(600)]


def _setup(engine: Engine, shares: dict[str, float]) -> tuple[str, dict[str, int]]:
    """Layer ``home`` with one running experiment per share; returns its salt and the experiment ids."""
    with Session(engine, expire_on_commit=False) as session:
        salt = ex.create_layer("home", session=session).salt
        ids = {
            name: int(make_experiment(session, name, layer="home", layer_share=share, salt=f"{name}-salt").id)  # type: ignore[arg-type]
            for name, share in shares.items()
        }
    return salt, ids


def _holders(engine: Engine, salt: str) -> dict[str, str | None]:
    """The experiment whose stored ranges hold each user (read from the store, not from the assigner)."""
    with Session(engine) as session:
        holders = ex.layer_usage(session=session, ref="home").holders
    return {
        u: next((h.name for h in holders if any(s <= layer_unit(u, salt) < e for s, e in h.ranges)), None) for u in USERS
    }


@pytest.fixture
def assigner(engine: Engine) -> Iterator[Assigner]:
    """An assigner whose definitions are reloaded only by ``refresh()`` (the tests call it after each change)."""
    client = Assigner(engine, cache_ttl=3600.0, timeout=2.0)
    yield client
    client.close()


def test_a_user_is_in_at_most_one_experiment_of_a_layer(engine: Engine, assigner: Assigner) -> None:
    salt, ids = _setup(engine, {"a": 30.0, "b": 30.0, "c": 20.0})
    where = _holders(engine, salt)
    for user in USERS:
        answers = {name: assigner.assign(user, name, expose=False) for name in ids}
        served = [name for name, a in answers.items() if a is not None]
        assert served == ([where[user]] if where[user] else []), user
        by_layer = assigner.assign_layer(user, "home", expose=False)
        assert (by_layer.experiment_name if by_layer else None) == where[user]
        assert assigner.assign_user_to_variant(user, "home") == (by_layer.variant_id if by_layer else None)
    assert sum(w is None for w in where.values()) > 60  # 20 % of the layer is free: those users get None
    assigner.flush()
    assert sum(count_assignments(engine, i) for i in ids.values()) == sum(w is not None for w in where.values())


def test_unknown_layer_and_bad_arguments(engine: Engine, assigner: Assigner) -> None:
    _setup(engine, {"a": 50.0})
    assert assigner.assign_layer("u1", "nowhere") is None
    for bad, error in ((None, TypeError), ("", ValueError)):
        try:
            assigner.assign_layer("u1", bad)  # type: ignore[arg-type]
        except error:
            pass
        else:
            raise AssertionError(f"{bad!r} accepted")


def test_stopping_one_experiment_moves_nobody_of_another(engine: Engine, assigner: Assigner) -> None:
    salt, ids = _setup(engine, {"a": 40.0, "b": 40.0})
    before = {u: assigner.assign_layer(u, "home") for u in USERS}
    assigner.flush()
    lifecycle(engine, "stop", ids["a"])
    with Session(engine) as session:
        make_experiment(session, "c", layer="home", layer_share=50.0, salt="c-salt")  # takes a's range and the tail
    assigner.refresh()
    where = _holders(engine, salt)
    for user in USERS:
        after = assigner.assign_layer(user, "home")
        if before[user] is not None and before[user].experiment_name == "b":
            assert after is not None and after.variant_id == before[user].variant_id
        else:
            assert after is None or after.experiment_name == "c"
            assert (after is not None) == (where[user] == "c")


def test_a_shipped_winner_is_the_layer_default(engine: Engine, assigner: Assigner) -> None:
    salt, ids = _setup(engine, {"old": 100.0})
    lifecycle(engine, "stop", ids["old"])
    lifecycle(engine, "ship_winner", ids["old"], variant="treatment", rollout_pct=50.0)
    with Session(engine) as session:
        make_experiment(session, "new", layer="home", layer_share=30.0, salt="new-salt")
    from abcore.assign.hashing import traffic_bucket

    assigner.refresh()
    where = _holders(engine, salt)
    for user in USERS:
        answer = assigner.assign_layer(user, "home")
        if where[user] == "new":
            assert answer is not None and answer.experiment_name == "new"
        elif traffic_bucket(user, "old-salt") < 0.5:  # the rollout hash of a shipped winner
            assert answer is not None and (answer.experiment_name, answer.variant_name) == ("old", "treatment")
        else:
            assert answer is None
        direct = assigner.assign(user, "old")  # asked by name, the default answers the same users
        assert (direct is not None) == (answer is not None and answer.experiment_name == "old")


def test_holdout_users_get_none_and_assigned_users_stay(engine: Engine, assigner: Assigner) -> None:
    salt, ids = _setup(engine, {"a": 60.0})
    early = USERS[:100]
    before = {u: assigner.assign_layer(u, "home") for u in early}
    assigner.flush()
    with Session(engine) as session:
        holdout = ex.create_holdout("hold", 20, session=session, layers=["home"])
        ex.start_experiment(session=session, ref=holdout.id)
    held = {u for u in USERS if bucket(u, holdout.salt) < 0.2}  # the holdout arm: first 20 % of its variant hash
    assert 70 < len(held) < 170
    with Session(engine) as session:
        overlap = ex.holdout_overlap(session=session, ref=holdout.id)  # counted separately: stored before the start
    assigned_early = {u for u, a in before.items() if a is not None}
    assert overlap.assigned_before == len(assigned_early)
    assert set(overlap.held_user_ids) == assigned_early & held and overlap.held_before == len(assigned_early & held)
    fresh = Assigner(engine, cache_ttl=3600.0, timeout=2.0)  # a new process: no cached rows, stored rows still win
    where = _holders(engine, salt)
    try:
        for user in USERS:
            answer = fresh.assign_layer(user, "home")
            if user in before:
                assert (answer.variant_id if answer else None) == (before[user].variant_id if before[user] else None)
            elif user in held:
                assert answer is None
            else:
                assert (answer is not None) == (where[user] == "a")
            arm = fresh.assign(user, "hold", expose=False)
            assert arm is not None and arm.variant_name == ("holdout" if user in held else "exposed")
        lifecycle(engine, "stop", ids["a"])
        lifecycle(engine, "ship_winner", ids["a"], variant="treatment")
        fresh.refresh()
        served = [u for u in USERS if u not in before and fresh.assign_layer(u, "home") is not None]
        assert served and not set(served) & held  # 0 holdout users served by the shipped winner either
        lifecycle(engine, "stop", holdout.id)
        fresh.refresh()
        assert any(fresh.assign_layer(u, "home") is not None for u in held - set(early))  # released with the holdout
    finally:
        fresh.close()


def test_experiments_outside_layers_are_untouched(engine: Engine, assigner: Assigner) -> None:
    _setup(engine, {"a": 50.0})
    with Session(engine) as session:
        plain = make_experiment(session, "plain", salt="plain-salt")
    from abcore.assign.hashing import choose_variant, cumulative_allocations

    cumulative = cumulative_allocations([50, 50])
    for user in USERS[:200]:
        answer = assigner.assign(user, plain.id, expose=False)
        assert answer is not None and answer.variant_name == ("control", "treatment")[choose_variant(bucket(user, "plain-salt"), cumulative)]


def test_a_holdout_is_never_the_default_experiment(engine: Engine, assigner: Assigner) -> None:
    with Session(engine, expire_on_commit=False) as session:
        plain = make_experiment(session, "plain", salt="plain-salt")
        holdout = ex.create_holdout("hold", 10, session=session, layers=None)
        ex.start_experiment(session=session, ref=holdout.id)  # started last: still not "the most recent experiment"
    assigner.refresh()
    answers = [assigner.assign(u, expose=False) for u in USERS[:100]]
    assert all(a is None or a.experiment_id == plain.id for a in answers)
    held = [u for u in USERS[:100] if bucket(u, holdout.salt) < 0.1]
    assert held and all(assigner.assign(u, plain.id, expose=False) is None for u in held)  # layers=None: every experiment
