"""The small dashboard queries of abcore.analysis.overview, on SQLite and PostgreSQL, against hand counts."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlmodel import Session

from abcore.analysis import overview as queries
from abcore.store.tables import Experiment, ExperimentEvent, UserAssignment, Variant


def _setup(session: Session) -> tuple[Experiment, Variant, Variant]:
    exp = Experiment(name="q", salt="s")
    other = Experiment(name="empty", salt="t")
    session.add(exp)
    session.add(other)
    session.commit()
    a = Variant(experiment_id=exp.id, name="A", allocation_pct=50, is_control=True, position=0)
    b = Variant(experiment_id=exp.id, name="B", allocation_pct=50, position=1)
    session.add(a)
    session.add(b)
    session.commit()
    return exp, a, b


def test_simple_queries(session: Session) -> None:
    exp, a, b = _setup(session)
    d1 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    d2 = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    # 3 users in A (2 on day 1, 1 on day 2), 1 in B on day 2.
    for user, variant, when in [("u1", a, d1), ("u2", a, d1), ("u3", a, d2), ("u4", b, d2)]:
        session.add(UserAssignment(user_id=user, experiment_id=exp.id, variant_id=variant.id, assigned_at=when))
    events = [
        ExperimentEvent(experiment_id=exp.id, user_id="u1", event_type="exposure", ts=d1),
        ExperimentEvent(experiment_id=exp.id, user_id="u1", event_type="conversion", metric_name="click", value=1, ts=d2),
        ExperimentEvent(experiment_id=exp.id, user_id="u4", event_type="conversion", metric_name="revenue", value=3.5, ts=d2),
        ExperimentEvent(experiment_id=exp.id, user_id="u1", event_type="feedback", properties={"sentiment": "positive"}, ts=d2),
        ExperimentEvent(experiment_id=exp.id, user_id="u2", event_type="feedback", properties={"sentiment": "negative"}, ts=d2),
        ExperimentEvent(experiment_id=exp.id, user_id="u2", event_type="feedback", properties={"sentiment": "great"}, ts=d2),
        # the stored assignment (B) decides the variant, not the event's variant_id (A)
        ExperimentEvent(experiment_id=exp.id, variant_id=a.id, user_id="u4", event_type="feedback",
                        properties={"sentiment": "neutral"}, ts=d2),
    ]
    session.add_all(events)
    session.commit()

    assert queries.participants(session=session, experiment_id=exp.id) == {a.id: 3, b.id: 1}
    assert queries.latest_event_id(session=session, experiment_id=exp.id) == max(e.id for e in events)
    assert queries.latest_event_id(session=session, experiment_id=exp.id + 1) == 0
    per_day = queries.assignments_per_day(session=session, experiment_id=exp.id)
    assert [(r.day, r.variant_id, r.count) for r in per_day] == [
        (date(2026, 3, 1), a.id, 2), (date(2026, 3, 2), a.id, 1), (date(2026, 3, 2), b.id, 1)
    ]
    assert queries.feedback_counts(session=session, experiment_id=exp.id) == {
        a.id: {"positive": 1, "neutral": 0, "negative": 1},
        b.id: {"positive": 0, "neutral": 1, "negative": 0},
    }
    assert queries.feedback_counts(session=session, experiment_id=exp.id, end=d2) == {}
    assert queries.metric_names(session=session, experiment_id=exp.id) == ["click", "revenue"]
    overview = queries.experiment_overview(session=session)
    assert overview[exp.id].participants == 4
    assert overview[exp.id].first_event_at == d1 and overview[exp.id].last_event_at == d2
    assert overview[exp.id].events == len(events)
    empty = overview[exp.id + 1]
    assert (empty.participants, empty.first_event_at, empty.last_event_at) == (0, None, None)


def test_attribute_names_lists_the_segment_keys(session: Session) -> None:
    from abcore.analysis.overview import attribute_names
    from abcore.store.tables import Experiment, UserAssignment, Variant

    experiment = Experiment(name="attrs", salt="s")
    session.add(experiment)
    session.flush()
    variant = Variant(experiment_id=experiment.id, name="a", allocation_pct=100)
    session.add(variant)
    session.flush()
    for i, attributes in enumerate([{"country": "DE", "platform": "ios"}, {"country": "FR"}, {}, {"tier": 2}]):
        session.add(UserAssignment(user_id=f"u{i}", experiment_id=experiment.id, variant_id=variant.id, attributes=attributes))
    session.commit()
    assert attribute_names(session=session, experiment_id=experiment.id) == ["country", "platform", "tier"]
    assert attribute_names(session=session, experiment_id=experiment.id, sample=1) == ["country", "platform"]
    assert attribute_names(session=session, experiment_id=experiment.id + 1) == []


def test_variant_users_lists_every_variant_of_every_experiment(session: Session) -> None:
    exp, a, b = _setup(session)
    other = Experiment(name="third", salt="u")
    session.add(other)
    session.commit()
    c = Variant(experiment_id=other.id, name="C", allocation_pct=100, is_control=True, position=0)
    session.add(c)
    session.commit()
    # hand count: A 2 users, B 0 users, C 3 users
    rows = [("u1", exp, a), ("u2", exp, a), ("x1", other, c), ("x2", other, c), ("x3", other, c)]
    session.add_all([UserAssignment(user_id=u, experiment_id=e.id, variant_id=v.id) for u, e, v in rows])
    session.commit()
    got = queries.variant_users(session=session)
    assert [(v.variant_id, v.name, v.users, v.is_control) for v in got[exp.id]] == [(a.id, "A", 2, True), (b.id, "B", 0, False)]
    assert [(v.variant_id, v.users) for v in got[other.id]] == [(c.id, 3)]
    assert exp.id + 1 not in got  # the experiment without variants ("empty")
    for e in (exp, other):  # the same counts as the per-experiment query
        assert {v.variant_id: v.users for v in got[e.id]} == queries.participants(session=session, experiment_id=e.id)
