"""Benchmarks and simulations of interleaving (``pytest -m bench -s benchmarks/bench_interleaving.py``).

* speed: ``interleave`` of two lists of 50 items for a returning user (warm), beside a straightforward
  team-draft written here (the anchor) and ``assign`` for a returning user, in the same run (target <= 30 us);
* fidelity: the A/A false-positive rate under random clicks (2,000 simulations, target [0.04, 0.06]) and the
  coverage of the preference interval (2,000 simulations, target 95 +- 1.5 %);
* sensitivity: the sign of the preference against the NDCG@10 difference, and the users interleaving and a
  click-through A/B test each need for 80 % power on the same simulation (tests/stats/interleaving_sim.py).
Figures are printed (and published in docs/guides/interleaving.md), not asserted: they depend on the machine.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from abcore.assign import Assigner
from abcore.assign.interleave import interleave
from abcore.experiments.schemas import VariantCreate
from abcore.stats.interleaving import bootstrap_share_interval, interleaving_sample_size, preference
from abcore.stats.power import sample_size_mean
from abcore.store.db import make_engine
from tests.factories import make_experiment
from tests.stats.interleaving_sim import ndcg_difference, simulate_ab, simulate_interleaving

pytestmark = pytest.mark.bench

A = [f"item-{k}" for k in range(50)]
B = [f"item-{k}" for k in range(25, 75)]


def straightforward_team_draft(a: list[str], b: list[str], length: int, rng: random.Random) -> tuple[list[str], list[int]]:
    """Team-draft as Radlinski et al. 2008 write it: the team with fewer picks picks next, a coin when even."""
    merged: list[str] = []
    owners: list[int] = []
    picks = [0, 0]
    while len(merged) < length:
        rest_a = [x for x in a if x not in merged]
        rest_b = [x for x in b if x not in merged]
        if not rest_a and not rest_b:
            break
        first_a = picks[0] < picks[1] or (picks[0] == picks[1] and rng.random() < 0.5)
        if (first_a and rest_a) or not rest_b:
            merged.append(rest_a[0])
            owners.append(0)
            picks[0] += 1
        else:
            merged.append(rest_b[0])
            owners.append(1)
            picks[1] += 1
    return merged, owners


def _median_us(fn: Callable[[int], Any], n: int = 3000) -> float:
    gc.collect()
    times = []
    for k in range(n):
        start = time.perf_counter()
        fn(k)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def test_interleave_speed(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    from abcore.store.db import init_db

    init_db(make_engine(url)).dispose()
    make_experiment(url, "rank", [VariantCreate(name="a", allocation_pct=50), VariantCreate(name="b", allocation_pct=50)],
                    kind="interleaving")
    make_experiment(url, "ab")
    client = Assigner(url, flush_interval=3600, max_buffer=10**7, max_pending=10**7)
    rankings = {"a": A, "b": B}
    interleave(client, "returning", "rank", rankings, request_id="warm")
    client.assign("returning", "ab")
    client.flush()
    for k in range(500):  # warm
        interleave(client, "returning", "rank", rankings, request_id=f"w{k}")
        client.assign("returning", "ab")
    ours = _median_us(lambda k: interleave(client, "returning", "rank", rankings, request_id=f"r{k}"))
    rng = random.Random(1)
    anchor = _median_us(lambda k: straightforward_team_draft(A, B, 50, rng))
    assign_us = _median_us(lambda k: client.assign("returning", "ab"))
    client.close(timeout=0)
    print(f"\n  interleave, two lists of 50, returning user (median, warm)   {ours:8.1f} us   target <= 30 us")
    print(f"  straightforward team-draft in the benchmark (anchor)         {anchor:8.1f} us   ratio {ours / anchor:.2f}")
    print(f"  assign, returning user                                      {assign_us:8.1f} us   ratio {ours / assign_us:.2f}")


def test_fidelity() -> None:
    runs, users = 2000, 500
    rejected = 0
    for s in range(runs):
        p = preference(simulate_interleaving(users, 0.5, 1.0, seed=s, random_clicks=0.1), seed=s)
        rejected += p.p_value < 0.05 and (p.ci_low > 0.5 or p.ci_high < 0.5)
    truth = simulate_interleaving(200_000, 0.5, 0.7, seed=10**6)
    true_share = truth.wins / (truth.wins + truth.losses)
    covered = 0
    for s in range(runs):
        c = simulate_interleaving(users, 0.5, 0.7, seed=10**7 + s)
        low, high = bootstrap_share_interval(c.wins, c.losses, c.ties, seed=s)
        covered += low <= true_share <= high
    print(f"\n  A/A false-positive rate under random clicks ({runs} runs x {users} users)  {rejected / runs:.4f}"
          "   target [0.04, 0.06]")
    print(f"  preference interval coverage ({runs} runs, true share {true_share:.4f})        {covered / runs:.4f}"
          "   target 0.95 +- 0.015")


def test_sensitivity() -> None:
    runs, users, big_users = 40, 20_000, 50_000
    for noise_a, noise_b in [(0.5, 0.55), (0.5, 0.6)]:
        d_ndcg = ndcg_difference(noise_a, noise_b, queries=10_000)
        agree = sum(
            (preference(simulate_interleaving(users, noise_a, noise_b, seed=s)).share - 0.5) * d_ndcg > 0
            for s in range(runs)
        )
        big = simulate_interleaving(big_users, noise_a, noise_b, seed=99)
        decisive = (big.wins + big.losses) / big.users
        share = big.wins / (big.wins + big.losses)
        n_inter = interleaving_sample_size(share, decisive_share=decisive)
        mean_a, mean_b, sd, ctr_b = simulate_ab(big_users, noise_a, noise_b, seed=7)
        n_ab = 2 * sample_size_mean(sd, mean_a - mean_b)
        print(f"\n  noise {noise_a} vs {noise_b}: dNDCG@10 {d_ndcg:+.4f}; sign agrees in {100 * agree / runs:.0f} % of"
              f" {runs} runs of {users:,} users; share {share:.4f}, decisive {decisive:.3f} -> interleaving"
              f" {n_inter:,} users; A/B clicks per user {mean_a:.4f} vs {mean_b:.4f} (sd {sd:.3f}, CTR {ctr_b:.3f})"
              f" -> {n_ab:,} users; A/B / interleaving {n_ab / n_inter:.1f}x")
    assert np.isfinite(share)
