"""An experiment's kind (``ab``, ``interleaving`` or ``holdout``): stored at creation, ``ab`` by default and for
experiments created before kinds existed, refused when unknown, carried by config export/import and the HTTP answer."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import Session

from abcore.experiments.errors import ExperimentError
from abcore.experiments.lifecycle import create_experiment
from abcore.experiments.schemas import EXPERIMENT_KINDS, ExperimentCreate, VariantCreate
from abcore.io.configs import export_config, import_config
from tests.factories import make_experiment


def _create(name: str, **fields: object) -> ExperimentCreate:
    arms = [VariantCreate(name="a", allocation_pct=50), VariantCreate(name="b", allocation_pct=50)]
    return ExperimentCreate(name=name, variants=arms, **fields)  # type: ignore[arg-type]


def test_kind_defaults_to_ab_and_is_stored(session: Session) -> None:
    assert make_experiment(session, "plain").kind == "ab"
    assert make_experiment(session, "rankers", kind="interleaving").kind == "interleaving"
    stored = session.exec(text("SELECT name, kind FROM ab_experiments ORDER BY name")).all()  # type: ignore[call-overload]
    assert [tuple(row) for row in stored] == [("plain", "ab"), ("rankers", "interleaving")]


def test_unknown_kind_is_refused_and_nothing_is_stored(session: Session) -> None:
    with pytest.raises(ExperimentError, match="kind must be one of ab, interleaving, holdout"):
        create_experiment(data=_create("odd", kind="bandit"), session=session)
    assert session.exec(text("SELECT COUNT(*) FROM ab_experiments")).one()[0] == 0  # type: ignore[call-overload]
    assert EXPERIMENT_KINDS == ("ab", "interleaving", "holdout")


def test_config_round_trip_keeps_the_kind(session: Session) -> None:
    make_experiment(session, "rankers", kind="interleaving", status="draft")
    config = export_config(session=session, experiment="rankers")
    assert config["kind"] == "interleaving"
    config["experiment_id"] = "rankers copy"
    (imported,) = import_config(data=config, session=session)
    assert imported.kind == "interleaving"
