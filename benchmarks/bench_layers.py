"""Benchmarks of layers (``pytest -m bench -s benchmarks/bench_layers.py``): figures printed, ratios in the same run.

* ``assign_layer`` for a returning user with 20 layers x 5 running experiments, against ``assign`` of a single
  experiment outside any layer measured in the same run (target: median within 1.5x);
* ``assign_many`` throughput of a layered experiment against one outside any layer (target: unchanged);
* the property tests of ``tests/assign/test_layer_properties.py`` at full size: across layers, Kolmogorov-Smirnov
  p of the chi-square p-values over 1,000 salts (``ABCORE_BENCH_LAYER_USERS`` users each, default 1,000,000).
"""

from __future__ import annotations

import gc
import os
import statistics
import time

import pytest
from scipy import stats
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore import experiments as ex
from abcore.assign import Assigner
from tests.assign.layer_properties import independence_pvalues
from tests.factories import make_experiment

pytestmark = pytest.mark.bench

LAYERS, PER_LAYER = 20, 5


def _row(what: str, value: float, unit: str, target: str = "") -> None:
    print(f"  {what:<62} {value:>14,.2f} {unit:<10} {target}")


def _medians(client: Assigner, users: list[str], layered: str, single: str, rounds: int = 50) -> tuple[float, float]:
    """Median seconds of ``assign_layer(u, layered)`` and ``assign(u, single)``, interleaved in one loop."""
    layer_t: list[float] = []
    single_t: list[float] = []
    for _ in range(rounds):
        for u in users:
            start = time.perf_counter()
            client.assign_layer(u, layered)
            layer_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.assign(u, single)
            single_t.append(time.perf_counter() - start)
    return statistics.median(layer_t), statistics.median(single_t)


def test_bench_assign_layer_returning_user(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine, expire_on_commit=False) as session:
        for i in range(LAYERS):
            ex.create_layer(f"surface-{i}", session=session)
            for j in range(PER_LAYER):
                make_experiment(session, f"l{i}-e{j}", layer=f"surface-{i}", layer_share=100 / PER_LAYER)
        make_experiment(session, "single")
    client = Assigner(sqlite_engine, max_buffer=10**9, flush_interval=3600, cache_ttl=3600)
    users = [f"warm-{i}" for i in range(1000)]
    try:
        for u in users:
            assert client.assign_layer(u, "surface-7") is not None
            assert client.assign(u, "single") is not None
        gc.collect()
        layered, single = _medians(client, users, "surface-7", "single")
        print(f"\nreturning user, {LAYERS} layers x {PER_LAYER} running experiments, warm process, exposure buffered")
        _row("assign_layer median", layered * 1e6, "us")
        _row("assign (one experiment, no layer) median, same run", single * 1e6, "us")
        _row("ratio assign_layer / assign", layered / single, "x", "<= 1.5")
        users_many = [f"many-{i}" for i in range(200_000)]
        for name in ("l7-e0", "single"):
            client.assign_many(users_many[:10], name, persist=False)
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                client.assign_many(users_many, name, persist=False)
                best = min(best, time.perf_counter() - start)
            _row(f"assign_many(persist=False) {name}", len(users_many) / best, "users/s")
    finally:
        client.close(timeout=60)


def test_bench_independence_across_layers_1000_salts() -> None:
    users = int(os.environ.get("ABCORE_BENCH_LAYER_USERS", "1000000"))
    start = time.perf_counter()
    pvalues = independence_pvalues(1000, users, seed=1)
    ks = stats.kstest(pvalues, "uniform").pvalue
    print(f"\nacross layers: {users:,} users x 1,000 salts in {time.perf_counter() - start:,.0f} s")
    _row("Kolmogorov-Smirnov p of the chi-square p-values", ks, "", "> 0.01")
    _row("share of chi-square p < 0.05", float((pvalues < 0.05).mean()), "", "~0.05")
    assert ks > 0.01


def test_bench_exclusive_shares_at_one_million_users(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default suite's share test (``tests/assign/test_layer_properties.py``) at 1,000,000 users x
    ``ABCORE_BENCH_LAYER_SALTS`` salts (default 50): 0 users in two experiments, shares within 4 standard errors."""
    from tests.assign import test_layer_properties as props

    monkeypatch.setattr(props, "USERS", 1_000_000)
    monkeypatch.setattr(props, "SALTS", int(os.environ.get("ABCORE_BENCH_LAYER_SALTS", "50")))
    start = time.perf_counter()
    props.test_exclusive_and_each_share_within_binomial_tolerance()
    print(f"  ({time.perf_counter() - start:,.0f} s)")
