"""Prometheus counters of ``interleave``: one request per merged list returned, its positions per ranker credited
(``ranker="none"`` for the tie rule), first-time entries as stored assignments; users kept out count nothing, and
every experiment counts apart. The registry is process-wide, so each check is a difference from before the calls."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from abcore.assign import Assigner, Interleaving
from abcore.assign.interleave import interleave
from abcore.assign.prometheus import REGISTRY

from .conftest import lifecycle
from .test_interleave import A, B, rankers

# Both rankers put "top" first: the tie rule credits that position to no one, so ranker="none" is exercised.
TIED = {"r0": ["top", *A], "r1": ["top", *B]}
RANKERS = ("r0", "r1", "none")


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _snapshot(experiment: str) -> dict[str, float]:
    """Every counter ``interleave`` may touch for ``experiment``, by a short key."""
    out = {"requests": _value("experiment_interleaved_requests_total", experiment=experiment)}
    for ranker in RANKERS:
        out[f"positions:{ranker}"] = _value("experiment_interleaved_positions_total", experiment=experiment, ranker=ranker)
    for variant in ("r0", "r1"):
        for name in ("experiment_reco_requests_total", "experiment_assignments_total", "experiment_exposures_total"):
            out[f"{name}:{variant}"] = _value(name, experiment=experiment, variant=variant)
    return out


def _delta(experiment: str, before: dict[str, float]) -> dict[str, float]:
    """What changed since ``before`` (keys that did not change are left out)."""
    now = _snapshot(experiment)
    return {k: now[k] - before[k] for k in now if now[k] != before[k]}


def _expected(served: list[Interleaving]) -> dict[str, float]:
    """The counts the lists served should give, counted by hand from their ``owners`` with plain Python."""
    out = {"requests": float(len(served))}
    for ranker, owner in (("r0", "r0"), ("r1", "r1"), ("none", None)):
        n = sum(list(s.owners).count(owner) for s in served)
        if n:
            out[f"positions:{ranker}"] = float(n)
    return out


def test_each_merged_list_counts_one_request_and_its_positions_per_ranker(engine: Engine, assigner: Assigner) -> None:
    rankers(engine, "im_count")
    before = _snapshot("im_count")
    served = []
    for k, (user, length) in enumerate([("u1", 10), ("u1", 6), ("u2", 15), ("u3", 1), ("u2", 0)]):
        shown = interleave(assigner, user, "im_count", TIED, length=length, request_id=f"req-{k}")
        assert shown is not None
        served.append(shown)
    expected = _expected(served)
    assert expected["positions:none"] == 4  # every list but the empty one starts with the tied "top"
    assert expected["positions:r0"] + expected["positions:r1"] + 4 == 10 + 6 + 15 + 1 + 0
    # Nothing in the per-variant request or exposure counters: a merged list is no one variant's answer.
    assert _delta("im_count", before) == expected
    assigner.flush()
    # Three users entered: three rows stored, each counted under the variant that holds the row's slot.
    delta = _delta("im_count", before)
    stored = {k: v for k, v in delta.items() if k.startswith("experiment_assignments_total:")}
    assert sum(stored.values()) == 3 and delta == {**expected, **stored}


def test_users_kept_out_count_nothing(engine: Engine, assigner: Assigner) -> None:
    rankers(engine, "im_half", traffic_allocation=0.5)
    before = _snapshot("im_half")
    answers = [interleave(assigner, f"u{k}", "im_half", TIED, request_id="r") for k in range(60)]
    served = [a for a in answers if a is not None]
    assert 10 < len(served) < 50  # some users in, some kept out by the traffic share
    assert _delta("im_half", before) == _expected(served)

    exp_id = rankers(engine, "im_paused")
    assert interleave(assigner, "old", "im_paused", TIED, request_id="r") is not None
    lifecycle(engine, "pause", exp_id)
    before = _snapshot("im_paused")
    assert interleave(assigner, "new", "im_paused", TIED, request_id="r") is None  # paused: no one new enters
    assert _delta("im_paused", before) == {}
    kept = interleave(assigner, "old", "im_paused", TIED, request_id="r2")  # already in: still served and counted
    assert kept is not None and _delta("im_paused", before) == _expected([kept])
    lifecycle(engine, "resume", exp_id)
    lifecycle(engine, "stop", exp_id)
    before = _snapshot("im_paused")
    assert interleave(assigner, "old", "im_paused", TIED, request_id="r3") is None
    assert _delta("im_paused", before) == {}


def test_each_experiment_counts_apart(engine: Engine, assigner: Assigner) -> None:
    rankers(engine, "im_left")
    rankers(engine, "im_right")
    left_before, right_before = _snapshot("im_left"), _snapshot("im_right")
    left = [interleave(assigner, f"u{k}", "im_left", TIED, request_id="r") for k in range(3)]
    right = [interleave(assigner, "u0", "im_right", {"r0": A, "r1": B}, request_id=f"r{k}", length=4) for k in range(2)]
    assert all(left) and all(right)
    assert _delta("im_left", left_before) == _expected(left)  # type: ignore[arg-type]
    assert _delta("im_right", right_before) == _expected(right)  # type: ignore[arg-type]
