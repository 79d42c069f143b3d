"""The interleaving methods against exhaustive enumeration of their coin flips.

For lists of up to 6 items, the expected distribution of the merged list (items and owners) is computed here by
enumerating every coin flip of each published algorithm, written independently of ``abcore.assign.interleaving``
(team-draft as Radlinski et al. 2008 state it: the team with fewer picks picks next, a coin when even; balanced as
Joachims 2003; probabilistic as Hofmann et al. 2011). The implementation is then run over many request ids and the
observed outcomes compared with scipy's chi-square goodness-of-fit test (cells with expected count < 5 pooled).
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from fractions import Fraction
from math import factorial

import pytest
from scipy import stats

from abcore.assign.interleaving import (
    PROBABILISTIC_TAU,
    Draws,
    balanced,
    merge,
    probabilistic,
    request_seed,
    team_draft,
)

Outcome = tuple[tuple[str, ...], tuple[int | None, ...]]


# ------------------------------------------------------------------ independent enumerations


def enumerate_team_draft(rankings: list[list[str]], length: int) -> dict[Outcome, float]:
    """Every run of team-draft (multi)leaving with its probability: the active rankers with the fewest picks pick,
    one of them uniformly at random; when all active rankers have picked equally often and share the same best
    unplaced item, it is placed once with no owner (tie rule)."""
    out: dict[Outcome, float] = Counter()

    def best(i: int, placed: tuple[str, ...]) -> str | None:
        return next((x for x in rankings[i] if x not in placed), None)

    def walk(items: tuple[str, ...], owners: tuple[int | None, ...], picks: tuple[int, ...], prob: float) -> None:
        active = [i for i in range(len(rankings)) if best(i, items) is not None]
        if len(items) == length or not active:
            out[(items, owners)] += prob
            return
        fewest = min(picks[i] for i in active)
        ready = [i for i in active if picks[i] == fewest]
        heads = {best(i, items) for i in active}
        if len(ready) == len(active) and len(active) > 1 and len(heads) == 1:
            walk(items + (heads.pop(),), owners + (None,), picks, prob)
            return
        for i in ready:
            new_picks = tuple(p + (j == i) for j, p in enumerate(picks))
            walk(items + (best(i, items),), owners + (i,), new_picks, prob / len(ready))

    walk((), (), tuple(0 for _ in rankings), 1.0)
    return out


def enumerate_balanced(rankings: list[list[str]], length: int) -> dict[Outcome, float]:
    """Both runs of balanced interleaving (A leads or B leads, 1/2 each); owner = the ranker ranking the item higher."""
    a, b = rankings
    out: dict[Outcome, float] = Counter()
    for a_first in (True, False):
        merged: list[str] = []
        ka = kb = 0
        while len(merged) < length and (ka < len(a) or kb < len(b)):
            take_a = ka < len(a) and (kb >= len(b) or ka < kb or (ka == kb and a_first))
            item = a[ka] if take_a else b[kb]
            ka, kb = (ka + 1, kb) if take_a else (ka, kb + 1)
            if item not in merged:
                merged.append(item)
        far = len(a) + len(b)
        owners = []
        for item in merged:
            ra = a.index(item) if item in a else far
            rb = b.index(item) if item in b else far
            owners.append(None if ra == rb else int(rb < ra))
        out[(tuple(merged), tuple(owners))] += 0.5
    return out


def enumerate_probabilistic(rankings: list[list[str]], length: int, tau: float = PROBABILISTIC_TAU) -> dict[Outcome, float]:
    """Every run of probabilistic interleaving: a ranker with unplaced items uniformly, then an unplaced item with
    probability proportional to rank**-tau among that ranker's unplaced items."""
    out: dict[Outcome, float] = Counter()

    def walk(items: tuple[str, ...], owners: tuple[int | None, ...], prob: float) -> None:
        active = [i for i, r in enumerate(rankings) if any(x not in items for x in r)]
        if len(items) == length or not active:
            out[(items, owners)] += prob
            return
        for i in active:
            free = [(rank, x) for rank, x in enumerate(rankings[i], start=1) if x not in items]
            total = sum(rank**-tau for rank, _ in free)
            for rank, x in free:
                walk(items + (x,), owners + (i,), prob / len(active) * rank**-tau / total)

    walk((), (), 1.0)
    return out


# ------------------------------------------------------------------ the lists compared


def _pairs() -> list[list[list[str]]]:
    """Pairs of lists of 1 to 6 items: identical, reversed, disjoint, partly overlapping, shared top, unequal
    lengths, and random orders (seeded)."""
    rng = random.Random(20261206)
    pairs: list[list[list[str]]] = []
    for n in range(1, 7):
        base = [f"d{k}" for k in range(n)]
        pairs.append([base, list(base)])
        pairs.append([base, base[::-1]])
        pairs.append([base, [f"e{k}" for k in range(n)]])
        if n >= 2:
            pairs.append([base, base[1:] + [f"e{n}"]])
            pairs.append([base, [base[0]] + rng.sample(base[1:], n - 1)])
            pairs.append([base[: n - 1], rng.sample(base, n)])
        pairs.append([rng.sample(base, n), rng.sample(base, n)])
    return pairs


PAIRS = _pairs()
DRAWS = 1500


def _observed(method: str, rankings: list[list[str]], length: int, draws: int, salt: str) -> Counter[Outcome]:
    seen: Counter[Outcome] = Counter()
    for k in range(draws):
        items, owners = merge(method, rankings, length, request_seed(salt, "user-1", f"request-{k}"))
        seen[(tuple(items), tuple(owners))] += 1
    return seen


def _chi_square_p(expected: dict[Outcome, float], seen: Counter[Outcome], draws: int) -> float:
    """p-value of scipy's chi-square test of ``seen`` against ``expected`` (cells with expected count < 5 pooled);
    1.0 when there is a single cell. An outcome the enumeration says is impossible fails at once."""
    impossible = set(seen) - set(expected)
    assert not impossible, f"outcomes the algorithm cannot produce: {sorted(impossible)[:3]}"
    big = [o for o, p in expected.items() if p * draws >= 5]
    small = [o for o in expected if o not in big]
    obs = [seen[o] for o in big]
    exp = [expected[o] * draws for o in big]
    if small:
        obs.append(sum(seen[o] for o in small))
        exp.append(sum(expected[o] for o in small) * draws)
    if len(obs) < 2:
        return 1.0
    scale = sum(obs) / sum(exp)
    return float(stats.chisquare(obs, [e * scale for e in exp]).pvalue)


def _check_all(method: str, enumerate_fn, pairs: list[list[list[str]]], length_of, draws: int) -> list[float]:
    p_values = []
    for index, rankings in enumerate(pairs):
        length = length_of(rankings)
        expected = enumerate_fn(rankings, length)
        assert abs(sum(expected.values()) - 1.0) < 1e-9
        p_values.append(_chi_square_p(expected, _observed(method, rankings, length, draws, f"salt-{index}"), draws))
    # Every pair at Bonferroni 0.001 overall, and the p-values together uniform (Fisher's method, scipy).
    assert min(p_values) > 0.001 / len(p_values), p_values
    assert stats.combine_pvalues(p_values, method="fisher").pvalue > 0.001, p_values
    return p_values


def _full(rankings: list[list[str]]) -> int:
    return len({x for r in rankings for x in r})


def test_team_draft_matches_enumeration_for_lists_up_to_6() -> None:
    _check_all("team_draft", enumerate_team_draft, PAIRS, _full, DRAWS)


def test_balanced_matches_enumeration_for_lists_up_to_6() -> None:
    _check_all("balanced", enumerate_balanced, PAIRS, _full, DRAWS)


def test_probabilistic_matches_enumeration_for_lists_up_to_6() -> None:
    # The first 3 positions of lists up to 6 (the full list has up to 2**6 * 6! runs, too many cells to test).
    _check_all("probabilistic", enumerate_probabilistic, PAIRS, lambda r: min(3, _full(r)), DRAWS)


def test_team_draft_multileaving_matches_enumeration() -> None:
    rng = random.Random(7)
    triples = []
    for n in range(1, 6):
        base = [f"d{k}" for k in range(n)]
        triples.append([base, list(base), list(base)])
        triples.append([base, base[::-1], rng.sample(base, n)])
        triples.append([base, [f"e{k}" for k in range(n)], [f"f{k}" for k in range(n)]])
        triples.append([base, base[::-1], rng.sample(base, n), rng.sample(base, n)])
    _check_all("team_draft", enumerate_team_draft, triples, _full, DRAWS)


def test_enumeration_sanity_by_hand() -> None:
    # Hand derivation: A=[x,y], B=[y,x]: the first coin picks x (A) or y (B) first, the other ranker then takes
    # the other item; 1/2 each. Identical lists: all ties, no owner.
    assert enumerate_team_draft([["x", "y"], ["y", "x"]], 2) == {(("x", "y"), (0, 1)): 0.5, (("y", "x"), (1, 0)): 0.5}
    assert enumerate_team_draft([["x", "y"], ["x", "y"]], 2) == {(("x", "y"), (None, None)): 1.0}
    # Three rankers, disjoint single items: 3! equally likely orders.
    runs = enumerate_team_draft([["a"], ["b"], ["c"]], 3)
    assert len(runs) == factorial(3) and all(abs(p - 1 / 6) < 1e-12 for p in runs.values())
    # Probabilistic, two disjoint lists of 2, length 1: ranker 1/2, then rank 1 with 1 / (1 + 2**-3) = 8/9.
    first = enumerate_probabilistic([["a", "b"], ["c", "d"]], 1)
    assert first[(("a",), (0,))] == pytest.approx(float(Fraction(1, 2) * Fraction(8, 9)))


@pytest.mark.parametrize("method", ["team_draft", "balanced", "probabilistic"])
def test_a_longer_list_continues_the_shorter_one(method: str) -> None:
    a = [f"i{k}" for k in range(30)]
    b = [f"i{k}" for k in range(10, 40)]
    for k in range(50):
        seed = request_seed("salt", "u", f"r{k}")
        short = merge(method, [a, b], 10, seed)
        long = merge(method, [a, b], 20, seed)
        assert long[0][:10] == short[0] and long[1][:10] == short[1]


def test_outputs_are_well_formed() -> None:
    rng = random.Random(3)
    for k in range(300):
        n = rng.randint(0, 12)
        rankings = [rng.sample(range(20), rng.randint(0, n)) for _ in range(rng.choice([2, 3, 4]))]
        length = rng.randint(0, 25)
        for fn in (team_draft, probabilistic) + ((balanced,) if len(rankings) == 2 else ()):
            items, owners = fn(rankings, length, Draws(k))
            assert len(items) == len(set(items)) == len(owners)
            assert len(items) == min(length, len({x for r in rankings for x in r}))
            for item, owner in zip(items, owners, strict=True):
                assert owner is None or item in rankings[owner]


def test_request_seed_is_pinned() -> None:
    # mmh3 x64 128 of "salt:user:request" with seed 2 (independently: the mmh3 package's hash_bytes, little endian).
    import mmh3

    raw = mmh3.hash_bytes("s:u:r", 2)
    assert request_seed("s", "u", "r") == int.from_bytes(raw, "little")
    assert request_seed("s", "u", "r") != request_seed("s", "u", "r2")


def test_unknown_method_and_too_many_rankers_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown interleaving method"):
        merge("coin", [["a"], ["b"]], 2, 1)
    with pytest.raises(ValueError, match="exactly two"):
        merge("balanced", [["a"], ["b"], ["c"]], 2, 1)


def test_every_permutation_pair_of_three_items_team_draft_exact_support() -> None:
    # All 36 pairs of orders of 3 items: what team-draft produces over 300 requests is in the enumerated support.
    base = ["a", "b", "c"]
    for pa, pb in itertools.product(itertools.permutations(base), repeat=2):
        expected = enumerate_team_draft([list(pa), list(pb)], 3)
        seen = _observed("team_draft", [list(pa), list(pb)], 3, 300, "perm")
        assert set(seen) <= set(expected)
