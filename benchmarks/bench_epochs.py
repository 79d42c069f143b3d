"""Benchmark: the Simpson A/A of epochs, large (``pytest benchmarks/bench_epochs.py -m bench -s``).

* 50,000 simulated experiments over sufficient statistics (:mod:`tests.stats.epoch_simulation`): the pooled
  false-positive rate (today's figure without epochs), the epoch-stratified one, statsmodels' CMH on the same
  tables, the stratified CI's coverage of a planted +1 pp effect, per-epoch vs pooled SRM flags.
* 200 experiments end to end through a SQLite store (the measurement that found the bias): identical arms, 2,000 users each
  over 14 days, the split changed 10/90 -> 50/50 on day 7 (``update_allocations``, audited) while the base rate
  fell from 20 % to 5 %; ``analyze`` per experiment: how often the primary p-value is below 0.05 and the SRM
  item fails, next to the pooled Wald test (statsmodels) on the same raw rows.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert, update
from sqlmodel import Session
from statsmodels.stats import proportion as sm_proportion

from abcore import experiments as ex
from abcore.analysis.pipeline import analyze
from abcore.store.db import init_db, make_engine
from abcore.store.tables import AuditLog, Experiment, ExperimentEvent, UserAssignment
from tests.factories import make_experiment
from tests.stats.epoch_simulation import simulate

pytestmark = pytest.mark.bench


def test_simpson_aa_simulation_50k() -> None:
    start = time.perf_counter()
    f = simulate(50_000, seed=7)
    print(f"\n{f.runs} simulated runs in {time.perf_counter() - start:.1f} s: pooled FPR {f.pooled_fpr:.4f}, "
          f"epoch-stratified FPR {f.stratified_fpr:.4f}, CMH FPR {f.cmh_fpr:.4f}, stratified coverage "
          f"{f.stratified_coverage:.4f}, SRM flags per epoch {f.epoch_srm_rate:.4f} vs pooled {f.pooled_srm_rate:.4f}")
    assert 0.04 <= f.stratified_fpr <= 0.06 and 0.935 <= f.stratified_coverage <= 0.965


def _one(engine: object, name: str, rng: np.random.Generator, users: int = 2000) -> float:
    """One experiment in the store; returns the pooled Wald p-value (statsmodels) of its raw rows (every event row
    has the same keys: an executemany takes its columns from the first)."""
    exp = make_experiment(engine, name, [ex.VariantCreate(name="control", allocation_pct=10),
                                         ex.VariantCreate(name="treatment", allocation_pct=90)],
                          primary_metric="converted")
    with Session(engine) as session:
        variants = {v.name: int(v.id) for v in ex.get_variants(session=session, experiment_id=exp.id)}
        t0 = ex.get_experiment(session=session, ref=exp.id).started_at + timedelta(minutes=1)
    days = rng.integers(0, 14, users)
    assignments, events, totals = [], [], {"control": [0, 0], "treatment": [0, 0]}
    for i, day in enumerate(days):
        epoch = int(day >= 7)
        arm = "treatment" if rng.random() < (0.9, 0.5)[epoch] else "control"
        at = t0 + timedelta(days=int(day), seconds=int(rng.integers(0, 86_000)))
        converted = rng.random() < (0.20, 0.05)[epoch]
        totals[arm][0] += 1
        totals[arm][1] += converted
        assignments.append({"user_id": f"u{i}", "experiment_id": exp.id, "variant_id": variants[arm],
                            "attributes": {}, "assigned_at": at})
        events.append({"experiment_id": exp.id, "variant_id": variants[arm], "user_id": f"u{i}",
                       "event_type": "exposure", "metric_name": None, "value": None, "ts": at, "properties": {}})
        if converted:
            events.append({"experiment_id": exp.id, "variant_id": variants[arm], "user_id": f"u{i}",
                           "event_type": "conversion", "metric_name": "converted", "value": 1.0,
                           "ts": at + timedelta(minutes=5), "properties": {}})
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(insert(UserAssignment.__table__), assignments)
        conn.execute(insert(ExperimentEvent.__table__), events)
        conn.execute(insert(AuditLog.__table__).values(
            experiment_id=exp.id, action="update_allocations", from_status="running", to_status="running", actor="",
            ts=t0 + timedelta(days=7), details={"before": {"control": 10.0, "treatment": 90.0},
                                                "after": {"control": 50.0, "treatment": 50.0}}))
        conn.execute(update(Experiment.__table__).where(Experiment.__table__.c.id == exp.id).values(updated_at=t0))
    (na, ca), (nb, cb) = totals["control"], totals["treatment"]
    _, p = sm_proportion.test_proportions_2indep(cb, nb, ca, na, method="wald", compare="diff")
    return float(p)


def test_simpson_aa_through_the_store_200(tmp_path: Path) -> None:
    engine = init_db(make_engine(f"sqlite:///{tmp_path / 'epochs.db'}"))
    rng = np.random.default_rng(2026)
    pooled = stratified = srm_failed = 0
    start = time.perf_counter()
    runs = 200
    for r in range(runs):
        pooled_p = _one(engine, f"simpson-{r}", rng)
        pooled += pooled_p < 0.05
        with Session(engine) as session:
            res = analyze(f"simpson-{r}", session=session, daily=False, percentiles=False)
        stratified += res.metrics[0].test.p_value < 0.05
        srm_failed += not next(h for h in res.health if h.name == "srm").ok
    print(f"\n{runs} experiments through the store in {time.perf_counter() - start:.0f} s: pooled Wald p < 0.05 in "
          f"{pooled} ({pooled / runs:.3f}); abcore's primary p < 0.05 in {stratified} ({stratified / runs:.3f}); "
          f"SRM item failed in {srm_failed}")
    assert 0.01 <= stratified / runs <= 0.1 and pooled / runs > 0.9 and srm_failed <= 2
