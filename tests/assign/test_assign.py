"""Sticky assignment against a real database (SQLite and PostgreSQL): statuses, targeting, writes, track."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

import abcore.assign as assign_module
from abcore.assign import Assigner, Assignment, bucket, choose_variant, cumulative_allocations, traffic_bucket
from abcore.errors import Invalid
from abcore.store.tables import ExperimentEvent, UserAssignment

from .conftest import count_assignments, count_events, lifecycle, new_experiment

USERS = [f"user-{i}" for i in range(80)]


def expected_variant(user_id: str, salt: str, weights: list[float]) -> str:
    return f"v{choose_variant(bucket(user_id, salt), cumulative_allocations(weights))}"


def test_first_assignment_writes_row_and_events(engine: Engine, assigner: Assigner) -> None:
    exp_id = new_experiment(engine, salt="s-1")
    a = assigner.assign("user-42", "ranker_v2", attributes={"country": "DE", "age": 31})
    assert isinstance(a, Assignment)
    assert a.experiment_id == exp_id and a.experiment_name == "ranker_v2"
    assert a.variant_name == expected_variant("user-42", "s-1", [50, 50])
    assert a.is_new and a.config == {"arm": int(a.variant_name[1:])}
    assert a.is_control == (a.variant_name == "v0")
    again = assigner.assign("user-42", exp_id)  # by id
    assert again is not None and not again.is_new and again.variant_id == a.variant_id
    assert assigner.flush() == 3  # user_assignment + 2 exposures
    with engine.connect() as connection:
        row = connection.execute(select(UserAssignment.__table__)).mappings().one()
    assert row["user_id"] == "user-42" and row["variant_id"] == a.variant_id
    assert row["attributes"] == {"country": "DE", "age": 31}
    assert count_events(engine, exp_id, "user_assignment") == 1
    assert count_events(engine, exp_id, "exposure") == 2
    assigner.assign("user-42", "ranker_v2", expose=False)
    assigner.flush()
    assert count_events(engine, exp_id, "exposure") == 2


def test_config_is_read_only(engine: Engine, assigner: Assigner) -> None:
    new_experiment(engine)
    a = assigner.assign("u1", "ranker_v2")
    assert a is not None
    with pytest.raises(TypeError):
        a.config["arm"] = 99  # type: ignore[index]
    assert dict(a.config) == {"arm": int(a.variant_name[1:])}


def test_sticky_after_allocation_change(engine: Engine, assigner: Assigner) -> None:
    new_experiment(engine, allocations=(50, 50), salt="sticky")
    before = {u: assigner.assign(u, "ranker_v2").variant_name for u in USERS}  # type: ignore[union-attr]
    # rows are written behind the answer: they are in the store once flushed (<= flush_interval);
    # an allocation change inside that window is the corrected case (test_writer_corrects_a_lost_race)
    assigner.flush()
    lifecycle(engine, "update_allocations", "ranker_v2", allocations={"v0": 5, "v1": 95})
    fresh = Assigner(engine, cache_ttl=0.0, timeout=2.0)  # another process: no in-memory cache
    try:
        after = {u: fresh.assign(u, "ranker_v2").variant_name for u in USERS}  # type: ignore[union-attr]
        assert after == before
        # new users follow the new split
        newcomers = [f"new-{i}" for i in range(80)]
        got = [fresh.assign(u, "ranker_v2").variant_name for u in newcomers]  # type: ignore[union-attr]
        assert got == [expected_variant(u, "sticky", [5, 95]) for u in newcomers]
    finally:
        fresh.close()
    assert count_assignments(engine, _id(engine)) == len(USERS) + len(newcomers)


def _id(engine: Engine, name: str = "ranker_v2") -> int:
    from abcore.store.tables import Experiment

    with engine.connect() as connection:
        return int(connection.execute(select(Experiment.id).where(Experiment.name == name)).scalar_one())


def test_traffic_ramp_keeps_assigned_users(engine: Engine, assigner: Assigner) -> None:
    new_experiment(engine, salt="ramp", traffic=0.3)
    first = {u: assigner.assign(u, "ranker_v2") for u in USERS}
    admitted = {u for u, a in first.items() if a is not None}
    # traffic_bucket decides who enters (independent hash)
    assert admitted == {u for u in USERS if traffic_bucket(u, "ramp") < 0.3}
    lifecycle(engine, "set_traffic_allocation", "ranker_v2", traffic_allocation=0.7)
    second = {u: assigner.assign(u, "ranker_v2") for u in USERS}
    for u in admitted:
        assert second[u] is not None and second[u].variant_id == first[u].variant_id  # type: ignore[union-attr]
    assert {u for u, a in second.items() if a is not None} == {u for u in USERS if traffic_bucket(u, "ramp") < 0.7}
    # lowering the share never drops a stored user either (stored assignment wins)
    lifecycle(engine, "set_traffic_allocation", "ranker_v2", traffic_allocation=0.1)
    assigner.flush()  # rows are written behind the answer: another process finds them once flushed
    third = Assigner(engine, cache_ttl=0.0, timeout=2.0)
    try:
        assert all(third.assign(u, "ranker_v2") is not None for u in admitted)
    finally:
        third.close()


def test_status_behaviour(engine: Engine, assigner: Assigner) -> None:
    exp_id = new_experiment(engine, start=False, salt="status")
    assert assigner.assign("u1", "ranker_v2") is None  # draft
    lifecycle(engine, "start", exp_id)
    early = {u: assigner.assign(u, "ranker_v2") for u in USERS[:50]}
    assert all(a is not None for a in early.values())
    lifecycle(engine, "pause", exp_id)
    assigner.flush()
    rows_before = count_assignments(engine, exp_id)
    assignment_events = count_events(engine, exp_id, "user_assignment")
    for u in USERS[:50]:  # existing users keep their variant
        a = assigner.assign(u, "ranker_v2")
        assert a is not None and a.variant_id == early[u].variant_id  # type: ignore[union-attr]
    other = Assigner(engine, cache_ttl=0.0, timeout=2.0)  # a process that never saw them still finds them
    try:
        assert other.assign(USERS[0], "ranker_v2").variant_id == early[USERS[0]].variant_id  # type: ignore[union-attr]
    finally:
        other.close()
    assert all(assigner.assign(u, "ranker_v2") is None for u in USERS[50:100])  # no new users enter
    assigner.flush()
    assert count_assignments(engine, exp_id) == rows_before
    assert count_events(engine, exp_id, "user_assignment") == assignment_events
    lifecycle(engine, "resume", exp_id)
    assert assigner.assign(USERS[60], "ranker_v2") is not None
    lifecycle(engine, "stop", exp_id)
    assert assigner.assign(USERS[0], "ranker_v2") is None  # completed without a winner
    assert assigner.assign_user_to_variant(USERS[0]) is None
    lifecycle(engine, "ship_winner", exp_id, variant="v1", rollout_pct=40.0)
    answers = {u: assigner.assign(u, "ranker_v2") for u in USERS}
    served = {u for u, a in answers.items() if a is not None}
    assert served == {u for u in USERS if traffic_bucket(u, "status") < 0.40}
    assert all(a.variant_name == "v1" for a in answers.values() if a is not None)
    assert 0.25 < len(served) / len(USERS) < 0.55  # ~40 % of 80 users (binomial sd ~5.5 %)
    assigner.flush()
    assert count_assignments(engine, exp_id) == rows_before + 1  # completed: nothing written
    lifecycle(engine, "ship_winner", exp_id, variant="v1", rollout_pct=100.0)
    assert all(assigner.assign(u, "ranker_v2") is not None for u in USERS)


def test_cancelled_and_unknown_experiments(engine: Engine, assigner: Assigner) -> None:
    exp_id = new_experiment(engine)
    assert assigner.assign("u1", "ranker_v2") is not None
    lifecycle(engine, "cancel", exp_id)
    assert assigner.assign("u1", "ranker_v2") is None
    assert assigner.assign("u1", "no_such_experiment") is None
    assert assigner.assign("u1", 987654) is None
    assert assigner.assign("u1") is None  # nothing running
    assert assigner.track("u1", "ranker_v2", "click") is False


def test_default_experiment_is_most_recently_started(engine: Engine, assigner: Assigner) -> None:
    new_experiment(engine, "older")
    time.sleep(0.01)
    newer = new_experiment(engine, "newer")
    a = assigner.assign("user-1")
    assert a is not None and a.experiment_name == "newer"
    assert assigner.assign_user_to_variant("user-1") == a.variant_id
    lifecycle(engine, "pause", newer)
    assert assigner.assign("user-2").experiment_name == "older"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("rule", "attributes", "eligible"),
    [
        ({"attribute": "country", "op": "eq", "value": "DE"}, {"country": "DE"}, True),
        ({"attribute": "country", "op": "eq", "value": "DE"}, {"country": "FR"}, False),
        ({"attribute": "country", "op": "eq", "value": "DE"}, {}, False),
        ({"attribute": "country", "op": "in", "value": ["DE", "AT"]}, {"country": "AT"}, True),
        ({"attribute": "country", "op": "not_in", "value": ["DE", "AT"]}, {"country": "AT"}, False),
        ({"attribute": "country", "op": "not_in", "value": ["DE", "AT"]}, {"country": "US"}, True),
        ({"attribute": "age", "op": "gte", "value": 18}, {"age": 18}, True),
        ({"attribute": "age", "op": "gt", "value": 18}, {"age": 18}, False),
        ({"attribute": "age", "op": "lt", "value": 18}, {"age": 17.5}, True),
        ({"op": "user_ids", "value": ["user-42"]}, {}, True),
        ({"op": "user_ids", "value": ["someone-else"]}, {}, False),
    ],
)
def test_targeting_decides_eligibility_before_bucketing(
    sqlite_engine: Engine, rule: dict, attributes: dict, eligible: bool
) -> None:
    exp_id = new_experiment(sqlite_engine, targeting=[rule])
    client = Assigner(sqlite_engine, cache_ttl=0.0, timeout=2.0)
    try:
        a = client.assign("user-42", "ranker_v2", attributes=attributes)
        assert (a is not None) == eligible
        client.flush()
        assert count_assignments(sqlite_engine, exp_id) == int(eligible)
        assert count_events(sqlite_engine, exp_id, "exposure") == int(eligible)
        many = client.assign_many(["user-42"], "ranker_v2", attributes=attributes)
        assert (many[0] is not None) == eligible
    finally:
        client.close()


def test_targeting_on_both_backends(engine: Engine, assigner: Assigner) -> None:
    rules = [{"attribute": "country", "op": "in", "value": ["DE", "AT"]}, {"attribute": "age", "op": "gte", "value": 18}]
    exp_id = new_experiment(engine, targeting=rules)
    assert assigner.assign("a", "ranker_v2", attributes={"country": "DE", "age": 30}) is not None
    assert assigner.assign("b", "ranker_v2", attributes={"country": "DE", "age": 12}) is None
    assert assigner.assign("c", "ranker_v2", attributes={"country": "US", "age": 30}) is None
    assert assigner.assign("d", "ranker_v2") is None
    # a stored user keeps the variant even when later attributes would no longer match (sticky)
    assert assigner.assign("a", "ranker_v2", attributes={"country": "US"}) is not None
    assigner.flush()  # rows are written behind the answer
    assert count_assignments(engine, exp_id) == 1


def test_track(engine: Engine, assigner: Assigner) -> None:
    exp_id = new_experiment(engine)
    assert assigner.track("user-42", "ranker_v2", "watch_completion", 1.0) is False  # never assigned
    a = assigner.assign("user-42", "ranker_v2")
    assert a is not None
    assert assigner.track("user-42", "ranker_v2", "watch_completion", 0.75) is True
    assert assigner.track("user-42", "ranker_v2", "click") is True  # conversion without value counts 1.0
    assert assigner.track(
        "user-42", "ranker_v2", "feedback", properties={"sentiment": "positive"}, event_type="feedback"
    ) is True
    assigner.flush()  # the background writer may already have written some: count what is stored
    with engine.connect() as connection:
        stored = connection.execute(
            select(func.count()).select_from(ExperimentEvent.__table__).where(ExperimentEvent.user_id == "user-42")
        ).scalar_one()
    assert stored == 5  # user_assignment, exposure, 3 tracked events
    other = Assigner(engine, cache_ttl=0.0, timeout=2.0)  # a process that never assigned the user finds the row
    try:
        assert other.track("user-42", "ranker_v2", "watch_completion", 1.0, request_id="r-1") is True
        assert other.flush() == 1
    finally:
        other.close()
    assigner.flush()
    with engine.connect() as connection:
        rows = connection.execute(
            select(ExperimentEvent.__table__).where(ExperimentEvent.event_type.in_(["conversion", "feedback"]))
            .order_by(ExperimentEvent.id)
        ).mappings().all()
    assert [(r["metric_name"], r["value"], r["event_type"]) for r in rows] == [
        ("watch_completion", 0.75, "conversion"),
        ("click", 1.0, "conversion"),
        ("feedback", None, "feedback"),
        ("watch_completion", 1.0, "conversion"),
    ]
    assert all(r["variant_id"] == a.variant_id and r["experiment_id"] == exp_id for r in rows)
    assert rows[2]["properties"] == {"sentiment": "positive"}
    assert rows[3]["request_id"] == "r-1"
    assert rows[0]["ts"].tzinfo is not None


def test_assign_many_matches_assign_and_persists(engine: Engine, assigner: Assigner) -> None:
    exp_id = new_experiment(engine, allocations=(20, 30, 50), salt="many", traffic=0.8)
    single = {u: assigner.assign(u, "ranker_v2") for u in USERS[:100]}
    users = USERS + USERS[:10]  # duplicates allowed
    pure = assigner.assign_many(users, "ranker_v2", persist=False)
    assigner.flush()
    assert count_assignments(engine, exp_id) == sum(a is not None for a in single.values())  # persist=False wrote nothing
    batch = assigner.assign_many(users, "ranker_v2")
    for u, p, b in zip(users, pure, batch, strict=True):
        assert (p is None) == (b is None)
        if b is not None:
            assert b.variant_id == p.variant_id  # type: ignore[union-attr]
            assert b.variant_name == expected_variant(u, "many", [20, 30, 50])
        if u in single:
            assert (single[u] is None) == (b is None)
            if b is not None:
                assert not b.is_new and b.variant_id == single[u].variant_id  # type: ignore[union-attr]
    admitted = {u for u in USERS if traffic_bucket(u, "many") < 0.8}
    assert count_assignments(engine, exp_id) == len(admitted)
    new_flags = [b.is_new for u, b in zip(users, batch, strict=True) if b is not None and u not in single]
    assert sum(new_flags) == len(admitted - set(single))  # each new user exactly once, duplicates "returning"
    assigner.flush()
    assert count_events(engine, exp_id, "user_assignment") == len(admitted)
    # a fresh process gets the same answers from assign
    fresh = Assigner(engine, cache_ttl=0.0, timeout=2.0)
    try:
        for u, b in zip(users[:150], batch[:150], strict=True):
            a = fresh.assign(u, "ranker_v2", expose=False)
            assert (a is None) == (b is None) and (a is None or a.variant_id == b.variant_id)  # type: ignore[union-attr]
    finally:
        fresh.close()


def test_assign_many_per_user_attributes(engine: Engine, assigner: Assigner) -> None:
    exp_id = new_experiment(engine, targeting=[{"attribute": "country", "op": "eq", "value": "DE"}])
    result = assigner.assign_many(["a", "b", "c"], "ranker_v2", attributes=[{"country": "DE"}, {"country": "FR"}, None])
    assert [r is not None for r in result] == [True, False, False]
    with engine.connect() as connection:
        assert connection.execute(select(UserAssignment.attributes)).scalar_one() == {"country": "DE"}
    with pytest.raises(ValueError):
        assigner.assign_many(["a", "b"], "ranker_v2", attributes=[{}])
    assert count_assignments(engine, exp_id) == 1


def test_buffered_writes_all_present_after_flush(engine: Engine) -> None:
    exp_id = new_experiment(engine)
    client = Assigner(engine, flush_interval=60.0, max_buffer=10**9, timeout=2.0)  # nothing flushes by itself
    try:
        for u in USERS:
            client.assign(u, "ranker_v2")
            client.track(u, "ranker_v2", "click", 1.0)
        assert count_events(engine, exp_id, "exposure") == 0
        assert client.pending_events() == 3 * len(USERS)
        assert client.flush() == 3 * len(USERS)
        assert client.pending_events() == 0
        assert count_events(engine, exp_id, "exposure") == len(USERS)
        assert count_events(engine, exp_id, "user_assignment") == len(USERS)
        assert count_events(engine, exp_id, "conversion") == len(USERS)
    finally:
        client.close()


def test_background_flush_by_time_and_size(engine: Engine) -> None:
    exp_id = new_experiment(engine)
    client = Assigner(engine, flush_interval=0.2, max_buffer=10**9, timeout=2.0)
    try:
        client.assign("u1", "ranker_v2")
        deadline = time.monotonic() + 5
        while count_events(engine, exp_id, "exposure") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count_events(engine, exp_id, "exposure") == 1
    finally:
        client.close()
    sized = Assigner(engine, flush_interval=60.0, max_buffer=50, timeout=2.0)
    try:
        for i in range(40):  # 80 events (user_assignment + exposure): crossing 50 wakes the flusher
            sized.assign(f"s{i}", "ranker_v2")
        deadline = time.monotonic() + 5
        while count_events(engine, exp_id, "exposure") < 26 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count_events(engine, exp_id, "exposure") >= 26  # 1 earlier + >= 25 of the first 50 events
        assert sized.pending_events() < 50
    finally:
        sized.close()


def test_assign_many_writes_its_events_before_returning(engine: Engine) -> None:
    exp_id = new_experiment(engine)
    client = Assigner(engine, flush_interval=60.0, max_buffer=10**9, timeout=2.0)
    try:
        client.assign_many([f"b{i}" for i in range(100)], "ranker_v2")
        assert client.pending_events() == 0
        assert count_events(engine, exp_id, "exposure") == 100
        assert count_events(engine, exp_id, "user_assignment") == 100
    finally:
        client.close()


def test_definitions_cache_refreshes_within_ttl(engine: Engine) -> None:
    exp_id = new_experiment(engine)
    client = Assigner(engine, cache_ttl=0.5, timeout=2.0)
    try:
        assert client.assign("u1", "ranker_v2") is not None
        lifecycle(engine, "pause", exp_id)
        time.sleep(0.6)
        assert client.assign("new-user", "ranker_v2") is None  # the pause took effect without a restart
        lifecycle(engine, "cancel", exp_id)
        time.sleep(0.6)
        assert client.assign("u1", "ranker_v2") is None
    finally:
        client.close()
    assert Assigner(engine).cache_ttl == 5.0  # the default bound


def test_new_experiment_is_found_without_waiting_for_the_ttl(engine: Engine) -> None:
    client = Assigner(engine, cache_ttl=60.0, timeout=2.0)
    try:
        assert client.assign("u1", "later") is None
        time.sleep(1.05)
        new_experiment(engine, "later")
        assert client.assign("u1", "later") is not None
    finally:
        client.close()


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("",), {}, ValueError),
        ((None,), {}, TypeError),
        ((42,), {}, TypeError),
        (("u1", 1.5), {}, TypeError),
        (("u1", ""), {}, ValueError),
        (("u1", True), {}, TypeError),
        (("u1",), {"attributes": ["country"]}, TypeError),
        (("u1",), {"colour": "red"}, TypeError),
    ],
)
def test_bad_arguments_raise(sqlite_engine: Engine, args: tuple, kwargs: dict, error: type[Exception]) -> None:
    client = Assigner(sqlite_engine)
    try:
        with pytest.raises(error):
            client.assign(*args, **kwargs)
    finally:
        client.close()


def test_bad_arguments_raise_for_track_and_many(sqlite_engine: Engine) -> None:
    client = Assigner(sqlite_engine)
    try:
        with pytest.raises(ValueError):
            client.track("u1", "e", "")
        with pytest.raises(ValueError):
            client.track("u1", "e", "m", event_type="exposure")
        with pytest.raises(TypeError):
            client.track("u1", "e", "m", "1.0")  # type: ignore[arg-type]
        # NaN/inf are values the store would reject: track returns False (logged), not raise
        assert client.track("u1", "e", "m", float("nan")) is False
        with pytest.raises(TypeError):
            client.assign_many("u1", "e")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            client.assign_many(["u1", ""], "e")
        with pytest.raises(TypeError):
            Assigner(sqlite_engine, colour="red")  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            assign_module.configure(sqlite_engine, colour="red")
    finally:
        client.close()


UNSTORABLE = [
    {"score": float("nan")},
    {"score": float("inf")},
    {"nested": {"deep": [1.0, float("-inf")]}},
    {"name": "\udc00"},
    {"\ud800": "key"},
    {1: "a key that is not text"},
    {"big": 2**70},
]


@pytest.mark.parametrize("bad", UNSTORABLE)
def test_values_the_store_cannot_hold_are_refused_before_anything_is_buffered(
    engine: Engine, assigner: Assigner, bad: dict
) -> None:
    exp_id = new_experiment(engine)
    assert assigner.assign("known", exp_id) is not None
    with pytest.raises(ValueError, match="attributes object") as refused:
        assigner.assign("u1", exp_id, attributes=bad)
    assert isinstance(refused.value, Invalid)
    with pytest.raises(ValueError, match="attributes object"):
        assigner.assign_many(["u2", "u3"], exp_id, attributes=bad)
    with pytest.raises(ValueError, match="attributes object"):
        assigner.assign_many(["u2", "u3"], exp_id, attributes=[None, bad])
    with pytest.raises(ValueError, match="properties object") as refused:
        assigner.track("known", exp_id, "m", 1.0, properties=bad)
    assert isinstance(refused.value, Invalid)
    assigner.flush()
    assert count_assignments(engine, exp_id) == 1 and count_events(engine, exp_id, "conversion") == 0
    # what the store can hold still round-trips; a value JSON cannot encode is stored as its text
    assert assigner.track("known", exp_id, "m", 1.0, properties={"score": 0.5, "ok": "✓", "at": datetime(2026, 1, 1)})
    assigner.flush()
    with engine.connect() as connection:
        stored = connection.execute(select(ExperimentEvent.properties).where(ExperimentEvent.event_type == "conversion"))
        assert stored.scalar_one() == {"score": 0.5, "ok": "✓", "at": "2026-01-01 00:00:00"}


def test_track_refuses_metric_names_with_control_or_invisible_characters(engine: Engine, assigner: Assigner) -> None:
    exp_id = new_experiment(engine)
    assert assigner.assign("u1", exp_id) is not None
    for bad in ("m\x1b[31m", "m\n", "m\u200b", "\u202em", "m\x85"):
        assert assigner.track("u1", exp_id, bad) is False
    assert assigner.track("u1", exp_id, "m") is True
    assigner.flush()
    assert count_events(engine, exp_id, "conversion") == 1


def test_module_level_functions_use_configured_default(engine: Engine) -> None:
    exp_id = new_experiment(engine, salt="module")
    from abcore.assign import assign, assign_many, assign_user_to_variant, configure, flush, track

    client = configure(engine, cache_ttl=0.0, timeout=2.0, flush_interval=3600.0)
    try:
        a = assign("user-42", "ranker_v2", attributes={"country": "DE"})
        assert a is not None and a.variant_name == expected_variant("user-42", "module", [50, 50])
        assert assign_user_to_variant("user-42") == a.variant_id
        assert [x.variant_id for x in assign_many(["user-42"], "ranker_v2")] == [a.variant_id]  # type: ignore[union-attr]
        assert track("user-42", "ranker_v2", "watch_completion", 1.0) is True
        assert track("nobody", "ranker_v2", "watch_completion", 1.0) is False
        # through the buffer: user_assignment + exposure (assign), exposure (assign_user_to_variant), conversion;
        # assign_many writes its exposure itself
        assert flush() == 4
        assert count_events(engine, exp_id, "conversion") == 1
        assert assign_module.default_assigner() is client
    finally:
        configure(None)  # back to the configured URL (built lazily, nothing connects here)


def test_ineligible_users_do_not_hit_the_database_on_every_request(sqlite_engine: Engine) -> None:
    from sqlalchemy import event

    new_experiment(sqlite_engine, targeting=[{"attribute": "country", "op": "eq", "value": "DE"}])
    client = Assigner(sqlite_engine, cache_ttl=5.0, timeout=2.0)
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(sqlite_engine, "before_cursor_execute", count)
    try:
        for _ in range(50):
            assert client.assign("fr-user", "ranker_v2", attributes={"country": "FR"}) is None
        assert len(statements) <= 3  # definitions + one lookup; then the negative cache answers
        assert client.assign("fr-user", "ranker_v2", attributes={"country": "DE"}) is not None  # eligible now
    finally:
        event.remove(sqlite_engine, "before_cursor_execute", count)
        client.close()


def test_threads_assigning_while_flushing_lose_no_event(engine: Engine) -> None:
    import threading

    exp_id = new_experiment(engine)
    client = Assigner(engine, flush_interval=0.01, max_buffer=20, timeout=5.0)
    users = [f"t{i}" for i in range(20)]
    for u in users:
        assert client.assign(u, "ranker_v2", expose=False) is not None

    def work() -> None:
        for _ in range(10):
            for u in users:
                client.assign(u, "ranker_v2")

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()  # flushes the rest
    assert count_events(engine, exp_id, "exposure") == 6 * 10 * len(users)
