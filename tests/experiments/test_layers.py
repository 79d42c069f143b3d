"""Layers and holdouts as managed: create, validate, reserve ranges at start, release at stop, on both backends."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from abcore import experiments as ex
from abcore.assign.layers import LAYER_UNITS
from abcore.experiments.layers import LayerConflict, layer_names
from tests.factories import make_experiment


def _layered(session: Session, name: str, share: float, status: str = "running") -> int:
    return int(make_experiment(session, name, status=status, layer="home", layer_share=share).id)  # type: ignore[arg-type]


def test_create_layer_validates_and_fixes_a_salt(session: Session) -> None:
    layer = ex.create_layer("home", session=session, description="the home slate")
    assert layer.salt.startswith("layer-home-") and layer.description == "the home slate"
    for bad, words in (("home", "already exists"), ("", "needs a name"), ("12", "all digits"), ("a\x07b", "control")):
        with pytest.raises(ex.ExperimentError, match=words):
            ex.create_layer(bad, session=session)
    assert [x.name for x in ex.list_layers(session=session)] == ["home"]
    assert ex.get_layer(session=session, ref=str(layer.id)).name == "home"
    with pytest.raises(ex.LayerNotFound):
        ex.get_layer(session=session, ref="search")


def test_layer_fields_are_validated(session: Session) -> None:
    ex.create_layer("home", session=session)
    cases = [
        ({"layer": "nowhere", "layer_share": 10}, "Unknown layer"),
        ({"layer": "home"}, "layer share must be more than 0"),
        ({"layer": "home", "layer_share": 0}, "layer share must be more than 0"),
        ({"layer": "home", "layer_share": 120}, "at most 100 %"),
        ({"layer_share": 10}, "needs a layer"),
        ({"holdout_layers": ["home"]}, "Only a holdout"),
    ]
    for fields, words in cases:
        with pytest.raises(ex.ExperimentError, match=words):
            make_experiment(session, "exp", status="draft", **fields)


def test_ranges_are_reserved_at_start_released_at_stop_and_reused(session: Session) -> None:
    ex.create_layer("home", session=session)
    a = _layered(session, "a", 30)
    b = _layered(session, "b", 50)
    usage = ex.layer_usage(session=session, ref="home")
    assert [(h.name, h.ranges) for h in usage.holders] == [("a", ((0, 3000),)), ("b", ((3000, 8000),))]
    assert usage.free_pct == 20.0
    with pytest.raises(LayerConflict, match="20 % free"):
        _layered(session, "c", 25)
    assert ex.get_experiment(session=session, ref="c").status == "draft"  # nothing written
    ex.stop_experiment(session=session, ref=a)
    assert ex.get_experiment(session=session, ref=a).layer_ranges == []
    released = {row.action: row.details.get("layer_ranges") for row in ex.audit_log(session=session, experiment_id=a)}
    assert released["start"] == released["stop"] == [[0, 3000]]  # the audit log keeps the ranges held
    ex.start_experiment(session=session, ref="c")  # reuses the lowest free ranges: a's, then the tail
    c = ex.get_experiment(session=session, ref="c")
    assert c.layer_ranges == [[0, 2500]]
    assert ex.get_experiment(session=session, ref=b).layer_ranges == [[3000, 8000]]  # never moved
    d = _layered(session, "d", 25)  # fragmented free space: [2500, 3000) and [8000, 10000)
    assert ex.get_experiment(session=session, ref=d).layer_ranges == [[2500, 3000], [8000, 10000]]
    assert ex.layer_usage(session=session, ref="home").free_pct == 0.0


def test_pause_keeps_cancel_releases(session: Session) -> None:
    ex.create_layer("home", session=session)
    a = _layered(session, "a", 100, status="paused")
    assert ex.get_experiment(session=session, ref=a).layer_ranges == [[0, LAYER_UNITS]]
    ex.cancel_experiment(session=session, ref=a)
    assert ex.layer_usage(session=session, ref="home").free_pct == 100.0


def test_holdout_is_an_experiment_with_fixed_split(session: Session) -> None:
    ex.create_layer("home", session=session)
    ex.create_layer("search", session=session)
    holdout = ex.create_holdout("q3-holdout", 5, session=session, layers=["home"])
    assert holdout.kind == "holdout"
    assert [(v.name, v.allocation_pct, v.is_control) for v in ex.get_variants(session=session, experiment_id=holdout.id)] == [
        ("holdout", 5.0, True), ("exposed", 95.0, False)
    ]
    assert layer_names(session, holdout) == (None, ["home"])
    with pytest.raises(ex.ExperimentError, match="Unknown layer"):
        ex.create_holdout("h2", 5, session=session, layers=["nowhere"])
    with pytest.raises(ex.ExperimentError, match="percent"):
        ex.create_holdout("h3", 100, session=session)
    with pytest.raises(ex.InvalidTransition, match="split is fixed"):
        ex.update_allocations(session=session, ref=holdout.id, allocations={"holdout": 10, "exposed": 90})
    with pytest.raises(ex.ExperimentError, match="exactly two variants"):
        make_experiment(session, "h4", ["holdout", "others"], status="draft", kind="holdout")


def test_a_clone_joins_the_same_layer_and_a_holdout_clone_is_a_holdout(session: Session) -> None:
    ex.create_layer("home", session=session)
    _layered(session, "a", 30, status="draft")
    clone = ex.clone_experiment(session=session, ref="a", name="a2")
    assert (layer_names(session, clone)[0], clone.layer_share, clone.layer_ranges) == ("home", 30.0, [])
    holdout = ex.create_holdout("h", 5, session=session, layers=["home"])
    copy = ex.clone_experiment(session=session, ref=holdout.id, name="h2")
    assert copy.kind == "holdout" and layer_names(session, copy) == (None, ["home"])


def test_a_start_that_loses_the_race_for_the_layer_writes_nothing(session: Session, engine, monkeypatch) -> None:  # noqa: ANN001
    from sqlalchemy import update

    from abcore.experiments import layers as layer_module
    from abcore.store.tables import Layer

    ex.create_layer("home", session=session)
    make_experiment(session, "late", status="draft", layer="home", layer_share=10)
    real_usage = layer_module.layer_usage

    def usage_then_race(**kwargs):  # noqa: ANN003, ANN202 - another start commits between our read and our write
        found = real_usage(**kwargs)
        with engine.begin() as other:
            other.execute(update(Layer).values(version=Layer.version + 1))
        return found

    monkeypatch.setattr(layer_module, "layer_usage", usage_then_race)
    with pytest.raises(LayerConflict, match="started just now"):
        ex.start_experiment(session=session, ref="late")
    monkeypatch.setattr(layer_module, "layer_usage", real_usage)
    late = ex.get_experiment(session=session, ref="late")
    assert (late.status, late.layer_ranges) == ("draft", [])
    ex.start_experiment(session=session, ref="late")  # a retry succeeds
    assert ex.get_experiment(session=session, ref="late").layer_ranges == [[0, 1000]]
