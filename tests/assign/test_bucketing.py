"""Pure bucketing: golden vectors, an independent MurmurHash3 reference, split proportions, traffic ramps, Router."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare

from abcore.assign import (
    HASH_VERSION,
    TRAFFIC_SEED,
    Router,
    bucket,
    buckets,
    choose_variant,
    choose_variants,
    cumulative_allocations,
    traffic_bucket,
)

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden_assignment.json"


def murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """Reference MurmurHash3_x86_32 written from Austin Appleby's public-domain C source (independent of mmh3)."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed & mask
    n = len(data)
    rounded = n - n % 4
    for i in range(0, rounded, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    k = 0
    tail = data[rounded:]
    if len(tail) >= 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if len(tail) >= 1:
        k ^= tail[0]
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h


def test_reference_murmur3_matches_published_vectors() -> None:
    # Published MurmurHash3_x86_32 test vectors (SMHasher / mmh3 README): "" seed 0 -> 0, "" seed 1 -> 0x514E28B7,
    # "hello" seed 0 -> 0x248BFA47, "foo" seed 0 -> -156908512 signed = 4138058784 unsigned.
    assert murmur3_x86_32(b"", 0) == 0
    assert murmur3_x86_32(b"", 1) == 0x514E28B7
    assert murmur3_x86_32(b"hello", 0) == 0x248BFA47
    assert murmur3_x86_32(b"foo", 0) == 4138058784


def test_golden_vectors_never_change() -> None:
    doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert doc["hash_version"] == HASH_VERSION == 1
    assert TRAFFIC_SEED == 1
    assert len(doc["vectors"]) >= 40
    for v in doc["vectors"]:
        key = f"{v['salt']}:{v['user_id']}"
        assert v["key"] == key
        # independent check of the stored numbers with the pure-Python reference above
        assert murmur3_x86_32(key.encode("utf-8"), 0) == v["hash"]
        assert murmur3_x86_32(key.encode("utf-8"), 1) == v["traffic_hash"]
        assert v["bucket"] == v["hash"] / 2**32
        # the implementation reproduces the file exactly
        assert bucket(v["user_id"], v["salt"]) == v["bucket"]
        assert traffic_bucket(v["user_id"], v["salt"]) == v["traffic_bucket"]
        index = choose_variant(v["bucket"], cumulative_allocations(v["weights"]))
        assert index == v["variant_index"]
        assert v["variants"][index] == v["variant"]
    users = [v["user_id"] for v in doc["vectors"] if v["salt"] == "ranker_v2"]
    expected = [v["bucket"] for v in doc["vectors"] if v["salt"] == "ranker_v2"]
    assert buckets(users, "ranker_v2").tolist() == expected


def test_golden_vectors_cover_hand_checked_variant_boundaries() -> None:
    # Hand derivation: weights [10, 20, 30, 40] -> bounds 0.1, 0.3, 0.6, 1.0; a bucket equal to a bound
    # belongs to the next variant (ranges are [lower, upper)).
    cumulative = cumulative_allocations([10, 20, 30, 40])
    assert cumulative == pytest.approx((0.1, 0.3, 0.6, 1.0))
    assert cumulative[-1] == 1.0
    assert [choose_variant(b, cumulative) for b in (0.0, 0.0999, 0.1, 0.2999, 0.3, 0.6, 0.99999)] == [0, 0, 1, 1, 2, 3, 3]
    # zero-weight variants never receive anyone; trailing zero weights too
    assert [choose_variant(b, cumulative_allocations([0, 100])) for b in (0.0, 0.5, 0.999)] == [1, 1, 1]
    assert [choose_variant(b, cumulative_allocations([100, 0])) for b in (0.0, 0.5, 0.999)] == [0, 0, 0]
    # relative weights are normalised (0.6 / 0.4 == 60 / 40 == 3 / 2)
    assert cumulative_allocations([0.6, 0.4]) == pytest.approx(cumulative_allocations([3, 2]))


@pytest.mark.parametrize("weights", [[], [0, 0], [-1, 101], [float("nan"), 100], [float("inf"), 1]])
def test_cumulative_allocations_rejects_bad_weights(weights: list[float]) -> None:
    with pytest.raises(ValueError):
        cumulative_allocations(weights)


def test_vectorised_choice_matches_scalar() -> None:
    users = [f"user-{i}" for i in range(5000)]
    cumulative = cumulative_allocations([13, 27, 60])
    scalar = [choose_variant(bucket(u, "s1"), cumulative) for u in users]
    assert choose_variants(buckets(users, "s1"), cumulative).tolist() == scalar
    assert buckets(users, "s1", seed=TRAFFIC_SEED).tolist() == [traffic_bucket(u, "s1") for u in users]


@pytest.mark.parametrize(
    "weights",
    [[90, 10], [50, 30, 20], [10, 20, 30, 40], [5, 15, 20, 25, 35]],
    ids=["2-variants", "3-variants", "4-variants", "5-variants"],
)
def test_split_follows_allocation_no_srm(weights: list[float]) -> None:
    users = [f"user-{i}" for i in range(100_000)]
    index = choose_variants(buckets(users, f"srm-{len(weights)}"), cumulative_allocations(weights))
    observed = np.bincount(index, minlength=len(weights))
    expected = np.asarray(weights, dtype=float) / sum(weights) * len(users)
    # scipy's chi-square goodness of fit; abcore flags SRM at p < 0.001 (DESIGN.md)
    assert chisquare(observed, expected).pvalue >= 0.001


def test_traffic_share_is_independent_of_the_variant_and_ramp_only_adds_users() -> None:
    users = [f"user-{i}" for i in range(100_000)]
    salt = "ramp-test"
    t = buckets(users, salt, seed=TRAFFIC_SEED)
    variant = choose_variants(buckets(users, salt), cumulative_allocations([50, 50]))
    admitted_20 = t < 0.2
    admitted_60 = t < 0.6
    assert np.all(admitted_60[admitted_20])  # raising the share keeps every admitted user
    # the admitted users still split 50/50: the traffic draw does not depend on the variant draw (chi-square)
    observed = np.bincount(variant[admitted_20], minlength=2)
    assert chisquare(observed).pvalue >= 0.001
    assert admitted_20.mean() == pytest.approx(0.2, abs=0.01)


def test_router_from_json_normalises_weights(tmp_path: Path) -> None:
    # a gateway's JSON split config file
    path = tmp_path / "als_vs_pop.json"
    path.write_text(
        json.dumps(
            {
                "experiment_id": "als_vs_popgen",
                "salt": "als-popgen-v1",
                "variants": [{"name": "als_model", "weight": 0.6}, {"name": "popgen_model", "weight": 0.4}],
            }
        )
    )
    router = Router.from_json(path)
    assert router.shares == pytest.approx({"als_model": 0.6, "popgen_model": 0.4})
    users = [f"user-{i}" for i in range(100_000)]
    routed = router.route_many(users)
    assert routed[:500] == [router.route(u) for u in users[:500]]
    for u in users[:200]:  # same bucketing as the assigner
        expected = ["als_model", "popgen_model"][choose_variant(bucket(u, "als-popgen-v1"), cumulative_allocations([60, 40]))]
        assert router.route(u) == expected
    counts = [routed.count("als_model"), routed.count("popgen_model")]
    assert chisquare(counts, [60_000, 40_000]).pvalue >= 0.001
    # golden vectors hold for the router too
    doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
    for v in doc["vectors"][:12]:
        r = Router(experiment_id="g", salt=v["salt"], names=tuple(v["variants"]), weights=tuple(v["weights"]))
        assert r.route(v["user_id"]) == v["variant"]


def test_router_salt_defaults_to_experiment_id() -> None:
    router = Router.from_dict({"experiment_id": "exp-1", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]})
    assert router.salt == "exp-1"


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"experiment_id": "e", "variants": []},
        {"experiment_id": "e", "variants": [{"name": "a", "weight": "x"}]},
        {"experiment_id": "e", "variants": [{"name": "a", "weight": 0}]},
        {"experiment_id": "e", "variants": [{"name": "a", "weight": 1}, {"name": "a", "weight": 1}]},
        {"experiment_id": "e", "variants": [{"weight": 1}]},
    ],
)
def test_router_rejects_malformed_config(config: dict) -> None:
    with pytest.raises(ValueError):
        Router.from_dict(config)


def test_router_rejects_bad_user_ids() -> None:
    router = Router.from_dict({"experiment_id": "e", "variants": [{"name": "a", "weight": 1}]})
    with pytest.raises(ValueError):
        router.route("")
    with pytest.raises(TypeError):
        router.route(42)  # type: ignore[arg-type]
