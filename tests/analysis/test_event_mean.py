"""A per-event mean ("Mean per event", kind ``event_mean``) against the per-user mean ("Mean per user", ``mean``).

Latency-like metrics: the treatment keeps the per-request latency (same distribution) but users make more
requests. The per-user mean (sum of a user's latencies, averaged over users) rises with the request count;
the per-event mean (sum of values / number of events) reports the latency itself. Every expected number
comes from numpy on the raw rows; the standard error of the per-event mean is the delta method over users
(Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics", eq. 4) written out by hand.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from scipy import stats as sps
from sqlmodel import Session

from abcore.analysis.pipeline import analyze
from abcore.metrics import KINDS, MetricCreate, define_metric
from tests.factories import T0, add_data, completed_experiment, conversion, exposure


def _data(session: Session) -> tuple[int, dict[str, list[list[float]]]]:
    """Two arms of 150 users; A makes 1-3 requests per user, B 2-5, each latency lognormal around 120 ms."""
    define_metric(session=session, data=MetricCreate(name="latency_ms", kind="event_mean", direction="decrease"))
    define_metric(session=session, data=MetricCreate(name="latency_user", kind="mean", direction="decrease"))
    exp, arms = completed_experiment(session, primary_metric="latency_ms", secondary_metrics=["latency_user"])
    rng = np.random.default_rng(15)
    raw: dict[str, list[list[float]]] = {"A": [], "B": []}
    assignments, events = [], []
    for arm, (low, high) in (("A", (1, 4)), ("B", (2, 6))):
        for i in range(150):
            user = f"{arm}{i}"
            assignments.append((user, arms[arm], {}))
            events.append({**exposure(user), "variant_id": arms[arm].id})
            values = [round(float(v), 1) for v in rng.lognormal(math.log(120.0), 0.35, size=int(rng.integers(low, high)))]
            raw[arm].append(values)
            for k, v in enumerate(values):
                ts = T0 + timedelta(hours=2, minutes=k)
                events.append(conversion(user, "latency_ms", v, ts=ts))
                events.append(conversion(user, "latency_user", v, ts=ts))
    add_data(session, exp, assignments, events)
    return int(exp.id), raw


def _delta_se(users: list[list[float]]) -> float:
    """Standard error of sum(values) / sum(events) over users by the delta method (numpy, by hand)."""
    y = np.array([sum(u) for u in users])
    x = np.array([len(u) for u in users], dtype=float)
    n, my, mx = len(y), y.mean(), x.mean()
    vy, vx, cxy = y.var(ddof=1), x.var(ddof=1), np.cov(y, x, ddof=1)[0, 1]
    return math.sqrt((vy / mx**2 - 2 * my * cxy / mx**3 + my**2 * vx / mx**4) / n)


def test_the_per_event_mean_is_the_mean_latency_and_the_per_user_mean_is_not(session: Session) -> None:
    experiment_id, raw = _data(session)
    res = analyze(experiment_id, session=session, correction="none")
    per_event, per_user = res.result("latency_ms"), res.result("latency_user")
    flat = {arm: np.concatenate([np.array(u) for u in users]) for arm, users in raw.items()}
    # the per-event mean: the mean of every latency of the arm (numpy)
    assert per_event.control_value == pytest.approx(flat["A"].mean(), rel=1e-12)
    assert per_event.value == pytest.approx(flat["B"].mean(), rel=1e-12)
    assert (per_event.metric_kind, per_event.kind) == ("event_mean", "ratio")
    # the per-user mean: each user's sum, averaged over users (numpy)
    assert per_user.control_value == pytest.approx(np.mean([sum(u) for u in raw["A"]]), rel=1e-12)
    assert per_user.value == pytest.approx(np.mean([sum(u) for u in raw["B"]]), rel=1e-12)
    # the delta-method z-test over users, by hand
    se = math.hypot(_delta_se(raw["A"]), _delta_se(raw["B"]))
    z = (flat["B"].mean() - flat["A"].mean()) / se
    assert per_event.test.std_error == pytest.approx(se, rel=1e-9)
    assert per_event.test.p_value == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-9)
    # the same latency per request: no per-event change, while the per-user "mean" is far worse
    assert per_event.outcome == "inconclusive"
    assert per_user.outcome == "worse" and per_user.test.lift > 0.5
    # the daily series ends at the headline value (cumulative values over cumulative events)
    last = max(p.day for p in res.daily)
    end = {p.variant: p.value for p in res.daily if p.metric == "latency_ms" and p.day == last}
    assert end["B"] == pytest.approx(flat["B"].mean(), rel=1e-12)


def test_each_kind_is_named_for_what_it_computes() -> None:
    assert KINDS["mean"].startswith("Mean per user:") and KINDS["event_mean"].startswith("Mean per event:")


def test_csv_and_json_carry_the_kind(session: Session) -> None:
    from abcore.io.csv_export import results_frame

    experiment_id, _ = _data(session)
    frame = results_frame(session=session, experiment=experiment_id, correction="none")
    kinds = dict(zip(frame["metric"], frame["metric_kind"], strict=True))
    assert kinds == {"latency_ms": "event_mean", "latency_user": "mean"}
    as_json = analyze(experiment_id, session=session).to_dict()
    assert {m["metric"]: m["metric_kind"] for m in as_json["metrics"]} == kinds
