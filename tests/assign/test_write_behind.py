"""The request path does no write; the writer isolates bad rows; track validates; configuration
problems never raise; the writer corrects the cache after a lost race; 20,000 new users under CPU load."""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare
from sqlalchemy import select
from sqlalchemy.engine import Engine

from abcore.assign import Assigner, bucket, choose_variant, cumulative_allocations
from abcore.assign import prometheus as metrics
from abcore.store.tables import ExperimentEvent, UserAssignment, utcnow

from .conftest import count_assignments, count_events, new_experiment


def _counter(counter: object, *labels: str) -> float:
    return counter.labels(*labels)._value.get()  # type: ignore[attr-defined]


def test_assign_writes_nothing_on_the_request_path(engine: Engine) -> None:
    from sqlalchemy import event

    exp_id = new_experiment(engine, salt="rp")
    client = Assigner(engine, flush_interval=3600.0, max_buffer=10**9)
    client.refresh()
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(client.engine, "before_cursor_execute", count)
    try:
        answers = [client.assign(f"rp-{i}", "ranker_v2") for i in range(50)]
        assert all(a is not None and a.is_new for a in answers)
        assert statements == []  # no read, no write: the hash and the cached definitions decided
        assert count_assignments(engine, exp_id) == 0
        assert client.flush() == 100  # 50 user_assignment + 50 exposure events
    finally:
        event.remove(client.engine, "before_cursor_execute", count)
        client.close()
    with engine.connect() as connection:
        stored = dict(connection.execute(select(UserAssignment.user_id, UserAssignment.variant_id)).all())
    assert stored == {f"rp-{i}": a.variant_id for i, a in enumerate(answers)}  # type: ignore[union-attr]


def test_poison_rows_are_dead_lettered_and_good_ones_land(engine: Engine, tmp_path: Path) -> None:
    exp_id = new_experiment(engine, salt="poison")
    dead = tmp_path / "dead.jsonl"
    client = Assigner(engine, flush_interval=3600.0, max_buffer=10**9, dead_letter_path=dead)
    before_events = _counter(metrics.DEAD_LETTERS, "event")
    before_rows = _counter(metrics.DEAD_LETTERS, "assignment")
    try:
        for i in range(300):
            assert client.assign(f"good-{i}", "ranker_v2") is not None
        writer = client.writer
        assert writer is not None
        now = utcnow()
        # what the store rejects by itself: an unknown experiment (foreign key, both backends) and, per backend,
        # a value the column cannot hold (a uuid.UUID request id cannot be bound by sqlite3; a 300-character
        # metric name does not fit PostgreSQL's varchar(200))
        bad_events = [(987654, None, "bad-1", "conversion", "m", 1.0, None, {}, now)]
        if engine.dialect.name == "sqlite":
            bad_events.append((exp_id, None, "bad-2", "conversion", "m", 1.0, uuid.uuid4(), {}, now))
        else:
            bad_events.append((exp_id, None, "bad-2", "conversion", "m" * 300, 1.0, None, {}, now))
        for e in bad_events[:1]:
            writer.add_event(e)
        for i in range(150):
            assert client.track(f"good-{i}", "ranker_v2", "click", 1.0)
        for e in bad_events[1:]:
            writer.add_event(e)
        writer.add_row(("bad-row", exp_id, 987654, {}, now))  # a variant that does not exist (foreign key)
        client.flush(timeout=60)
        assert client.pending_events() == 0
    finally:
        client.close()
    assert count_assignments(engine, exp_id) == 300
    assert count_events(engine, exp_id, "user_assignment") == 300
    assert count_events(engine, exp_id, "exposure") == 300
    assert count_events(engine, exp_id, "conversion") == 150  # every good event landed
    assert client.dead_lettered == 3
    assert _counter(metrics.DEAD_LETTERS, "event") - before_events == 2
    assert _counter(metrics.DEAD_LETTERS, "assignment") - before_rows == 1
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert sorted(letter["row"]["user_id"] for letter in letters) == ["bad-1", "bad-2", "bad-row"]
    assert all(letter["error"] for letter in letters)  # the store's error is kept with the row


def test_track_validates_what_the_store_would_reject(sqlite_engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    exp_id = new_experiment(sqlite_engine)
    client = Assigner(sqlite_engine, flush_interval=3600.0, log_interval=0.0)
    try:
        assert client.assign("u1", "ranker_v2") is not None
        assert client.track("u1", "ranker_v2", "n", np.int64(3)) is True
        assert client.track("u1", "ranker_v2", "n", np.float32(0.5)) is True
        assert client.track("u1", "ranker_v2", "n", Decimal("2.25")) is True
        with caplog.at_level(logging.WARNING, logger="abcore.assign"):
            assert client.track("u1", "ranker_v2", "n", float("nan")) is False
            assert client.track("u1", "ranker_v2", "n", float("inf")) is False
            assert client.track("u1", "ranker_v2", "n", Decimal("NaN")) is False
            assert client.track("u1", "ranker_v2", "m" * 201, 1.0) is False
            assert client.track("u1", "ranker_v2", "n", 1.0, request_id=uuid.uuid4()) is False  # type: ignore[arg-type]
            assert client.track("u1", "ranker_v2", "n", 1.0, request_id="r" * 256) is False
        reasons = [r.getMessage() for r in caplog.records if "track failed" in r.getMessage()]
        assert len(reasons) == 6 and "finite" in reasons[0] and "200" in reasons[3] and "UUID" in reasons[4]
        with pytest.raises(TypeError):
            client.track("u1", "ranker_v2", "n", "1.0")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.track("u1", "ranker_v2", "n", True)
        client.flush()
    finally:
        client.close()
    with sqlite_engine.connect() as connection:
        values = connection.execute(
            select(ExperimentEvent.value).where(ExperimentEvent.event_type == "conversion").order_by(ExperimentEvent.id)
        ).scalars().all()
    assert values == [3.0, 0.5, 2.25] and count_events(sqlite_engine, exp_id, "conversion") == 3


@pytest.mark.parametrize(
    "url",
    [
        "this is not a url",
        "mysql+nosuchdriver://u@h/db",  # driver missing
        "sqlite:////proc/abcore-cannot-create/here.db",  # folder cannot be created
    ],
)
def test_configuration_problems_never_raise(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="abcore.assign"):
        client = Assigner(url)
        try:
            for i in range(5):
                assert client.assign(f"u{i}", "ranker_v2") is None
                assert client.track(f"u{i}", "ranker_v2", "click", 1.0) is False
            assert client.assign_many(["a", "b"], "ranker_v2") == [None, None]
            assert client.flush() == 0
            with pytest.raises(ValueError):
                client.assign("")  # bad arguments still raise
        finally:
            client.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "abcore.assign"]
    assert len(warnings) == 1 and "cannot be used" in warnings[0]  # once a minute, with the reason


def test_configure_with_a_bad_environment_url_does_not_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    import abcore.assign as module

    monkeypatch.setenv("ABCORE_DATABASE_URL", "postgresql+nosuchdriver://x@127.0.0.1/none")
    try:
        module.configure(None)
        assert module.assign("u1", "ranker_v2") is None
        assert module.track("u1", "ranker_v2", "click") is False
    finally:
        monkeypatch.undo()
        module.configure(None)


def test_writer_corrects_a_lost_race(engine: Engine) -> None:
    """A process with a stale split serves its own variant once; the writer finds the stored row, corrects the
    cache (counted) and from then on serves the stored variant."""
    exp_id = new_experiment(engine, allocations=(50, 50), salt="race1")
    users = [f"r{i}" for i in range(40)]
    first = Assigner(engine, flush_interval=3600.0)
    stale = Assigner(engine, flush_interval=3600.0)
    try:
        stored = {u: first.assign(u, "ranker_v2").variant_id for u in users}  # type: ignore[union-attr]
        assert first.flush() == 80
        stale.refresh()
        defs = stale._defs
        assert defs is not None
        d = defs.by_id[exp_id]
        forced = dataclasses.replace(d, cumulative=cumulative_allocations([0, 1]))  # believes everyone gets v1
        defs.by_id[exp_id] = forced
        defs.by_name[d.name] = forced
        before = _counter(metrics.CORRECTED, "ranker_v2")
        served = {u: stale.assign(u, "ranker_v2").variant_id for u in users}  # type: ignore[union-attr]
        v1 = d.variants[1].id
        assert set(served.values()) == {v1}
        stale.flush()
        contradicted = sum(1 for u in users if stored[u] != v1)
        # expected count: the users the real 50/50 hash put in v0
        assert contradicted == sum(
            1 for u in users if choose_variant(bucket(u, "race1"), cumulative_allocations([50, 50])) == 0
        )
        assert stale.corrected == contradicted
        assert _counter(metrics.CORRECTED, "ranker_v2") - before == contradicted
        again = {u: stale.assign(u, "ranker_v2").variant_id for u in users}  # type: ignore[union-attr]
        assert again == stored
    finally:
        first.close()
        stale.close()
    assert count_assignments(engine, exp_id) == len(users)
    assert count_events(engine, exp_id, "user_assignment") == len(users)  # only the inserted rows log one


def _busy(seconds: float) -> None:
    import time

    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1


def test_20000_new_users_under_cpu_load(engine: Engine) -> None:
    """Two busy processes for the whole run; 20,000 new users: no None, every answer is the stored row, no SRM."""
    exp_id = new_experiment(engine, allocations=(50, 30, 20), salt="load")
    client = Assigner(engine)
    ctx = multiprocessing.get_context("spawn")
    hogs = [ctx.Process(target=_busy, args=(120.0,), daemon=True) for _ in range(2)]
    for hog in hogs:
        hog.start()
    try:
        client.refresh()
        users = [f"load-{i}" for i in range(20_000)]
        answers = [client.assign(u, "ranker_v2") for u in users]
        assert sum(a is None for a in answers) == 0
        client.flush(timeout=120)
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()
        client.close()
    with engine.connect() as connection:
        stored = dict(
            connection.execute(
                select(UserAssignment.user_id, UserAssignment.variant_id).where(UserAssignment.experiment_id == exp_id)
            ).all()
        )
    assert len(stored) == 20_000
    assert all(stored[u] == a.variant_id for u, a in zip(users, answers, strict=True))  # type: ignore[union-attr]
    counts = Counter(a.variant_name for a in answers)  # type: ignore[union-attr]
    observed = [counts["v0"], counts["v1"], counts["v2"]]
    # SRM check as abcore.stats.srm does it: scipy chi-square goodness of fit against the 50/30/20 split
    p = chisquare(observed, [20_000 * 0.5, 20_000 * 0.3, 20_000 * 0.2]).pvalue
    assert p > 0.001, (observed, p)


def test_flush_is_bounded_while_the_store_is_locked(sqlite_url: str, sqlite_engine: Engine) -> None:
    import sqlite3
    import time

    from sqlalchemy.engine import make_url

    exp_id = new_experiment(sqlite_engine)
    client = Assigner(sqlite_engine, flush_interval=3600.0)
    try:
        client.refresh()
        locker = sqlite3.connect(str(make_url(sqlite_url).database), isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            assert client.assign("u1", "ranker_v2") is not None
            start = time.monotonic()
            assert client.flush(timeout=0.3) == 0  # the writer waits on the lock; flush does not
            assert time.monotonic() - start < 1.0
            assert client.pending_events() == 2
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        client.flush(timeout=30)
        assert client.pending_events() == 0
    finally:
        client.close()
    assert count_assignments(sqlite_engine, exp_id) == 1


def test_postgres_assignment_engine_is_bounded(postgres_url: str) -> None:
    from sqlalchemy import text

    client = Assigner(postgres_url, statement_timeout=1.5, connect_timeout=2.0)
    try:
        with client.engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "1500ms"
            assert connection.execute(text("SHOW lock_timeout")).scalar() == "1500ms"
    finally:
        client.close()
