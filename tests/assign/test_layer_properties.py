"""Properties of layers over many salts (the benchmark in ``benchmarks/`` runs 1M users x 1,000 salts).

* within a layer 0 users are in two experiments, and each experiment's share is within binomial tolerance
  (4 standard errors) of ``layer_share`` x traffic;
* adding, ramping (traffic share) and ending experiments in a layer moves nobody;
* across layers the 2x2 tables of arms are independent (chi-square p-values uniform: Kolmogorov-Smirnov p > 0.01);
* 0 holdout users are served by a covered experiment or a shipped winner, before and after the ship.

The assigner's own code decides (``plan`` -> ``LayerDef.experiment_for`` -> ``ExperimentDef.proposal``);
expected shares are the binomial mean and standard error (hand derivation), the tests of uniformity scipy's.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from abcore.assign.cache import ExperimentDef, VariantDef
from abcore.assign.hashing import bucket, cumulative_allocations, traffic_bucket
from abcore.assign.layers import LAYER_UNITS, layer_unit, layer_units, plan, reserve, share_units
from tests.assign.layer_properties import experiment_row, holdout_variants, independence_pvalues, traffic_mask

USERS = 100_000
SALTS = 20
SAMPLE = 3_000  # users per salt decided one by one by the assigner's code


def _definition(row: dict, gate: object, traffic: float = 1.0, status: str | None = None) -> ExperimentDef:
    variants = tuple(VariantDef(row["id"] * 10 + i, f"v{i}", 50.0, None, None, {}, i == 0) for i in range(2))  # type: ignore[arg-type]
    return ExperimentDef(
        id=row["id"], name=f"e{row['id']}", status=status or row["status"], salt=row["salt"], traffic=traffic,
        targeting=(), variants=variants, cumulative=cumulative_allocations([50, 50]),
        winner_index=0 if row["winner_variant_id"] else None, rollout_pct=100.0, started_at=None, gate=gate,  # type: ignore[arg-type]
    )


def _served(rows: list[dict], traffic: dict[int, float], users: list[str]) -> dict[str, tuple[int, int] | None]:
    """What the assigner's code gives each new user in layer 1: ``(experiment id, variant index)`` or None."""
    gates, layers = plan(rows, {}, [{"id": 1, "name": "home", "salt": rows[0]["layer_salt"]}])
    defs = {r["id"]: _definition(r, gates.get(r["id"]), traffic.get(r["id"], 1.0)) for r in rows}
    out: dict[str, tuple[int, int] | None] = {}
    for user in users:
        exp = layers["home"].experiment_for(user)
        index = None if exp is None else defs[exp].proposal(user, None)
        out[user] = None if index is None else (exp, index)  # type: ignore[assignment]
    return out


def test_vectorised_layer_units_equal_the_scalar_hash() -> None:
    ids = [f"user-{i}" for i in range(5_000)]
    assert layer_units(ids, "home-salt").tolist() == [layer_unit(u, "home-salt") for u in ids]
    assert min(layer_units(ids, "x").tolist()) >= 0 and max(layer_units(ids, "x").tolist()) < LAYER_UNITS


def test_exclusive_and_each_share_within_binomial_tolerance() -> None:
    ids = [f"user-{i}" for i in range(USERS)]
    shares, traffic = [10.0, 25.0, 30.0, 15.0], [1.0, 0.5, 0.8, 1.0]
    worst = 0.0
    for k in range(SALTS):
        taken: list[list[int]] = []
        held = []
        for share in shares:
            ranges = reserve(taken, share_units(share))
            assert ranges is not None
            taken += [list(r) for r in ranges]
            held.append(ranges)
        units = layer_units(ids, f"layer-{k}")
        masks = [np.any([(units >= s) & (units < e) for s, e in ranges], axis=0) for ranges in held]
        assert int(np.max(np.sum(masks, axis=0))) <= 1  # 0 users in two experiments of the layer
        for j, (share, t) in enumerate(zip(shares, traffic, strict=True)):
            entered = masks[j] & traffic_mask(ids, f"exp-{k}-{j}", t)
            p = share / 100.0 * t
            z = abs(entered.mean() - p) / np.sqrt(p * (1 - p) / USERS)  # binomial standard error
            worst = max(worst, z)
            assert z < 4.0, (k, j, entered.mean(), p)
    print(f"layer shares: worst deviation {worst:.2f} standard errors over {SALTS} salts x {len(shares)} experiments")


def test_the_assigners_code_agrees_and_adding_ramping_ending_moves_nobody() -> None:
    users = [f"user-{i}" for i in range(SAMPLE)]
    for k in range(SALTS):
        salt = f"layer-{k}"

        def row(i: int, ranges: list, status: str = "running", salt: str = salt, k: int = k) -> dict:
            return {**experiment_row(i, layer_id=1, ranges=ranges, status=status, salt=f"exp-{k}-{i}"), "layer_salt": salt}

        a, b = row(1, [[0, 3000]]), row(2, [[3000, 6000]])
        before = _served([a, b], {1: 1.0, 2: 0.5}, users)
        for user, got in before.items():  # the scalar code agrees with the ranges
            unit = layer_unit(user, salt)
            assert got is None or got[0] == (1 if unit < 3000 else 2)
            if got is None:  # outside both ranges, or in b's and kept out by b's 50 % traffic share
                assert unit >= 6000 or (unit >= 3000 and traffic_bucket(user, f"exp-{k}-2") >= 0.5)
        c = row(3, [[6000, 8000]])  # added
        ramped = _served([a, b, c], {1: 1.0, 2: 0.9}, users)  # b ramped from 50 % to 90 % traffic
        ended = _served([{**a, "status": "completed", "layer_ranges": []}, b, c], {2: 0.9}, users)  # a ended
        for user, was in before.items():
            if was is not None:
                assert ramped[user] == was  # adding c and ramping b moved nobody
                if was[0] == 2:
                    assert ended[user] == was  # ending a moved nobody of b


def test_across_layers_the_arms_are_independent() -> None:
    pvalues = independence_pvalues(SALTS, 20_000)
    ks = stats.kstest(pvalues, "uniform").pvalue
    print(f"across layers: KS p = {ks:.3f} over {SALTS} salts x 20,000 users")
    assert ks > 0.01


def test_holdout_users_are_never_served_before_or_after_the_ship() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    layers = [{"id": 1, "name": "home", "salt": "home-salt"}, {"id": 2, "name": "search", "salt": "search-salt"}]
    hold = experiment_row(9, kind="holdout", covers=[1], salt="hold-salt")
    running = experiment_row(1, layer_id=1, ranges=[[0, 4000]])
    other = experiment_row(2, layer_id=2, ranges=[[0, LAYER_UNITS]])
    held = {u for u in users if bucket(u, "hold-salt") < 0.1}
    for phase in ("before", "after"):
        shipped = experiment_row(3, layer_id=1, status="completed", winner=30)
        rows = [hold, running, other] + ([shipped] if phase == "after" else [])
        gates, _ = plan(rows, {9: holdout_variants(10.0)}, layers)
        served_one = {u for u in users if gates[1].admits(u)}
        served_other = {u for u in users if gates[2].admits(u)}
        assert not served_one & held  # 0 holdout users in a covered experiment
        assert served_other & held  # the uncovered layer still serves them
        if phase == "after":
            served_default = {u for u in users if gates[3].admits(u)}
            assert served_default and not served_default & held and not served_default & served_one
    assert abs(len(held) / len(users) - 0.1) < 4 * np.sqrt(0.09 / len(users))


def test_the_vectorised_gate_gives_the_same_answers() -> None:
    users = [f"user-{i}" for i in range(5_000)]
    layers = [{"id": 1, "name": "home", "salt": "home-salt"}]
    rows = [
        experiment_row(9, kind="holdout", salt="hold-salt"),
        experiment_row(1, layer_id=1, ranges=[[100, 2000], [5000, 6100]]),
        experiment_row(3, layer_id=1, status="completed", winner=30),
        experiment_row(4),
    ]
    gates, _ = plan(rows, {9: holdout_variants(15.0)}, layers)
    for gate in gates.values():
        assert gate.admits_many(users).tolist() == [gate.admits(u) for u in users]
