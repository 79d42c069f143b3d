"""An interleaving experiment: variants are rankers, a method is stored (team_draft by default), refused where it
cannot apply, and carried by config export/import and the HTTP answer."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import Session

from abcore.experiments.errors import ExperimentError
from abcore.experiments.lifecycle import create_experiment
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.io.configs import export_config, import_config


def _rankers(name: str, n: int = 2, **fields: object) -> ExperimentCreate:
    arms = [VariantCreate(name=f"ranker{i}", allocation_pct=100 / n) for i in range(n)]
    arms[-1].allocation_pct = 100 - sum(a.allocation_pct for a in arms[:-1])
    return ExperimentCreate(name=name, variants=arms, kind="interleaving", **fields)  # type: ignore[arg-type]


def _stored(session: Session) -> list[tuple[object, ...]]:
    rows = session.exec(text("SELECT name, kind, interleaving_method FROM ab_experiments ORDER BY name")).all()  # type: ignore[call-overload]
    return [tuple(r) for r in rows]


def test_method_defaults_to_team_draft_and_is_stored(session: Session) -> None:
    create_experiment(data=_rankers("a"), session=session)
    create_experiment(data=_rankers("b", interleaving_method="balanced"), session=session)
    create_experiment(data=_rankers("c", 3, interleaving_method="probabilistic"), session=session)
    create_experiment(data=_rankers("d", 4), session=session)  # team-draft multileaving
    create_experiment(
        data=ExperimentCreate(name="e", variants=[VariantCreate(name="x", allocation_pct=50), VariantCreate(name="y", allocation_pct=50)]),
        session=session,
    )
    assert _stored(session) == [
        ("a", "interleaving", "team_draft"),
        ("b", "interleaving", "balanced"),
        ("c", "interleaving", "probabilistic"),
        ("d", "interleaving", "team_draft"),
        ("e", "ab", None),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_rankers("x", interleaving_method="coin"), "interleaving method must be one of team_draft, balanced, probabilistic"),
        (_rankers("x", 3, interleaving_method="balanced"), "balanced method compares exactly 2 rankers"),
        (_rankers("x", 1), "at least two variants"),
        (
            ExperimentCreate(
                name="x",
                interleaving_method="team_draft",
                variants=[VariantCreate(name="p", allocation_pct=50), VariantCreate(name="q", allocation_pct=50)],
            ),
            "only on an interleaving experiment",
        ),
    ],
)
def test_bad_method_is_refused_and_nothing_is_stored(session: Session, data: ExperimentCreate, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        create_experiment(data=data, session=session)
    assert _stored(session) == []


def test_config_round_trip_keeps_the_method(session: Session) -> None:
    create_experiment(data=_rankers("rankers", interleaving_method="balanced"), session=session)
    config = export_config(session=session, experiment="rankers")
    assert config["interleaving_method"] == "balanced"
    config["experiment_id"] = "rankers copy"
    (imported,) = import_config(data=config, session=session)
    assert (imported.kind, imported.interleaving_method) == ("interleaving", "balanced")


def test_clone_and_edit_keep_the_kind_and_method(session: Session) -> None:
    from abcore.experiments.editing import clone_experiment, update_experiment
    from abcore.experiments.schemas import ExperimentUpdate

    create_experiment(data=_rankers("rankers", interleaving_method="probabilistic"), session=session)
    copy = clone_experiment(session=session, ref="rankers", name="rankers 2")
    assert (copy.kind, copy.interleaving_method) == ("interleaving", "probabilistic")
    update_experiment(session=session, ref="rankers", changes=ExperimentUpdate(description="merged lists"))
    assert ("rankers", "interleaving", "probabilistic") in _stored(session)
