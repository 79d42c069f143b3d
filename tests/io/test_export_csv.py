"""abcore.io.csv_export: streamed CSV of assignments and events (both backends), config JSON round trips."""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.experiments.errors import ExperimentError, ExperimentNotFound
from abcore.experiments.lifecycle import create_experiment, start_experiment
from abcore.experiments.records import get_variants
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.io.configs import export_config, import_config, normalise_weights
from abcore.io.csv_export import ASSIGNMENT_COLUMNS, EVENT_COLUMNS, ExportError, iter_csv, write_csv
from abcore.store.tables import ExperimentEvent, UserAssignment
from tests.factories import make_experiment, variant_ids

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
TRICKY_USERS = ["plain", "with,comma", 'with "quotes"', "multi\nline\r\nuser", "ünïcødé-用户-🙂", "  spaced  "]


def _csv_experiment(session: Session, name: str = "csv-exp") -> tuple[int, dict[str, int]]:
    """A running experiment whose second arm's name needs CSV quoting; its id and variant ids by name."""
    exp = make_experiment(session, name, ["control", 'treat, "B"'])
    return int(exp.id), variant_ids(session, int(exp.id))


def fill(session: Session, experiment_id: int, variants: dict[str, int], users: list[str]) -> None:
    ids = list(variants.values())
    for i, user in enumerate(users):
        variant_id = ids[i % 2]
        session.add(
            UserAssignment(
                user_id=user,
                experiment_id=experiment_id,
                variant_id=variant_id,
                attributes={"country": "DE" if i % 3 else "FR", "note": 'a "b", c'},
                assigned_at=T0 + timedelta(seconds=i),
            )
        )
        session.add(
            ExperimentEvent(
                experiment_id=experiment_id, variant_id=variant_id, user_id=user, event_type="exposure",
                ts=T0 + timedelta(seconds=i, milliseconds=1),
            )
        )
        if i % 2 == 0:
            session.add(
                ExperimentEvent(
                    experiment_id=experiment_id, variant_id=variant_id, user_id=user, event_type="conversion",
                    metric_name="conversion", value=1.0 if i % 4 == 0 else 0.25, request_id=f"req-{i}",
                    properties={"items": [1, 2], "text": "x,\"y\"\nz"}, ts=T0 + timedelta(minutes=i),
                    event_key=f"k-{experiment_id}-{i}",
                )
            )
    session.commit()


def read_csv(chunks: list[str]) -> pd.DataFrame:
    return pd.read_csv(io.StringIO("".join(chunks)), dtype=str, keep_default_na=False)


def test_assignments_csv_round_trips(engine: Engine, session: Session) -> None:
    experiment_id, variants = _csv_experiment(session)
    fill(session, experiment_id, variants, TRICKY_USERS)
    frame = read_csv(list(iter_csv(engine=engine, experiment="csv-exp", what="assignments")))
    assert tuple(frame.columns) == ASSIGNMENT_COLUMNS
    assert list(frame["user_id"]) == TRICKY_USERS  # commas, quotes, newlines, unicode, spaces survive
    names = {v: k for k, v in variants.items()}
    assert list(frame["variant_name"]) == [names[int(v)] for v in frame["variant_id"]]
    assert set(frame["variant_name"]) == {"control", 'treat, "B"'}
    assert list(frame["is_control"]) == ["true", "false"] * 3
    assert frame["assigned_at"][1] == "2026-03-01T12:00:01.123456+00:00"
    parsed = pd.to_datetime(frame["assigned_at"], utc=True)
    assert list(parsed) == [pd.Timestamp(T0 + timedelta(seconds=i)) for i in range(len(TRICKY_USERS))]
    assert json.loads(frame["attributes"][0]) == {"country": "FR", "note": 'a "b", c'}


def test_events_csv_round_trips(engine: Engine, session: Session) -> None:
    experiment_id, variants = _csv_experiment(session)
    fill(session, experiment_id, variants, TRICKY_USERS)
    frame = pd.read_csv(io.StringIO("".join(iter_csv(session=session, experiment=experiment_id, what="events"))))
    assert tuple(frame.columns) == EVENT_COLUMNS
    assert len(frame) == len(TRICKY_USERS) + 3
    conversions = frame[frame["event_type"] == "conversion"]
    # Hand count: users 0, 2, 4 convert with values 1.0, 0.25, 1.0.
    assert sorted(conversions["value"].tolist()) == [0.25, 1.0, 1.0]
    assert json.loads(conversions["properties"].iloc[0]) == {"items": [1, 2], "text": 'x,"y"\nz'}
    assert set(conversions["event_key"]) == {f"k-{experiment_id}-{i}" for i in (0, 2, 4)}
    assert frame["experiment_name"].unique().tolist() == ["csv-exp"]
    assert (pd.to_datetime(frame["ts"], utc=True) >= pd.Timestamp(T0)).all()


def test_chunks_are_bounded_and_concatenate_to_the_same_file(engine: Engine, session: Session) -> None:
    experiment_id, variants = _csv_experiment(session)
    users = [f"u{i:03d}" for i in range(25)]
    fill(session, experiment_id, variants, users)
    seen: list[int] = []
    small = list(iter_csv(engine=engine, experiment=experiment_id, what="assignments", chunk_size=7, progress=seen.append))
    assert len(small) == 1 + math.ceil(25 / 7)  # header + 4 chunks of <= 7 rows
    assert all(chunk.count("\r\n") <= 7 for chunk in small[1:])
    assert seen == [7, 14, 21, 25]
    big = list(iter_csv(engine=engine, experiment=experiment_id, what="assignments", chunk_size=1000))
    assert "".join(small) == "".join(big)


def test_other_experiments_rows_are_not_exported(engine: Engine, session: Session) -> None:
    first, v1 = _csv_experiment(session, "first")
    second, v2 = _csv_experiment(session, "second")
    fill(session, first, v1, ["a", "b"])
    fill(session, second, v2, ["c"])
    frame = read_csv(list(iter_csv(engine=engine, experiment="second", what="events")))
    assert set(frame["user_id"]) == {"c"}


def test_empty_experiment_gives_just_the_header(engine: Engine, session: Session) -> None:
    _csv_experiment(session)
    chunks = list(iter_csv(engine=engine, experiment="csv-exp", what="events"))
    assert chunks == [",".join(EVENT_COLUMNS) + "\r\n"]


def test_bad_requests(engine: Engine, session: Session, tmp_path) -> None:
    _csv_experiment(session)
    (tmp_path / "out").mkdir()
    with pytest.raises(ExportError, match="choose one of"):
        list(iter_csv(engine=engine, experiment="csv-exp", what="users"))
    with pytest.raises(ExperimentNotFound):
        list(iter_csv(engine=engine, experiment="nope", what="events"))
    with pytest.raises(ExperimentNotFound):
        write_csv(engine=engine, experiment="nope", what="events", path=tmp_path / "out" / "x.csv")
    assert list((tmp_path / "out").iterdir()) == []  # no partial file left behind


def test_write_csv_to_path_and_stream(engine: Engine, session: Session, tmp_path) -> None:
    experiment_id, variants = _csv_experiment(session)
    fill(session, experiment_id, variants, TRICKY_USERS)
    target = tmp_path / "assignments.csv"
    assert write_csv(engine=engine, experiment="csv-exp", what="assignments", path=target, chunk_size=2) == 6
    stream = io.StringIO()
    assert write_csv(engine=engine, experiment="csv-exp", what="assignments", path=stream) == 6
    assert target.read_bytes().decode("utf-8") == stream.getvalue()
    assert not (tmp_path / "assignments.csv.part").exists()


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([0.6, 0.4], [60.0, 40.0]),  # fractions, as a Router JSON config gives them
        ([1, 1, 1], [33.34, 33.33, 33.33]),  # 3 x 33.333..: one extra cent to the first (tie -> earliest)
        ([2, 1], [66.67, 33.33]),  # 66.666.. rounds up, 33.333.. down
        ([1, 0, 3], [25.0, 0.0, 75.0]),
        ([1, 1, 1, 1, 1, 1, 1], [14.29, 14.29, 14.29, 14.29, 14.28, 14.28, 14.28]),  # 7 x 14.2857..: 3 up
    ],
)
def test_normalise_weights_largest_remainder(weights: list[float], expected: list[float]) -> None:
    result = normalise_weights(weights)
    assert result == expected
    assert sum(round(p * 100) for p in result) == 10_000


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=12).filter(lambda w: sum(w) > 1e-9))
def test_normalise_weights_always_sums_to_100(weights: list[float]) -> None:
    result = normalise_weights(weights)
    assert sum(round(p * 100) for p in result) == 10_000
    total = math.fsum(weights)
    for w, p in zip(weights, result, strict=True):
        assert abs(p - w / total * 100) <= 0.01 + 1e-9  # each share within one cent of the exact one


@pytest.mark.parametrize("weights", [[], [-1, 2], [float("nan"), 1], [float("inf"), 1], [0, 0], ["1", 2], [True, 1]])
def test_normalise_weights_refuses_bad_input(weights: list) -> None:
    with pytest.raises(ExportError):
        normalise_weights(weights)


# --------------------------------------------------------------------------- config JSON


SEED_CONFIG = {
    "experiment_id": "als_vs_popgen",
    "salt": "als-popgen-v1",
    "variants": [{"name": "als_model", "weight": 0.6}, {"name": "popgen_model", "weight": 0.4}],
}


def test_seed_config_imports_as_draft(session: Session) -> None:
    (exp,) = import_config(session=session, data=SEED_CONFIG, actor="tester")
    assert (exp.name, exp.salt, exp.status, exp.created_by) == ("als_vs_popgen", "als-popgen-v1", "draft", "tester")
    variants = get_variants(session=session, experiment_id=exp.id)
    assert [(v.name, v.allocation_pct, v.is_control) for v in variants] == [
        ("als_model", 60.0, True),
        ("popgen_model", 40.0, False),
    ]


def test_config_without_salt_uses_the_experiment_id(session: Session) -> None:
    (exp,) = import_config(session=session, data={**SEED_CONFIG, "salt": None})
    assert exp.salt == "als_vs_popgen"  # what abcore.assign.Router does without a salt


def test_config_export_import_round_trip(session: Session) -> None:
    exp = create_experiment(
        session=session,
        data=ExperimentCreate(
            name="round trip ✓",
            description='quotes " and, commas',
            traffic_allocation=0.5,
            targeting=[{"attribute": "country", "op": "in", "value": ["DE", "FR"]}],
            secondary_metrics=["watch_time"],
            variants=[
                VariantCreate(name="a", allocation_pct=33.34, config={"k": 1}),
                VariantCreate(name="b", allocation_pct=33.33, is_control=True),
                VariantCreate(name="c", allocation_pct=33.33),
            ],
        ),
    )
    exported = export_config(session=session, experiment=exp.id)
    assert exported["experiment_id"] == "round trip ✓" and exported["salt"] == exp.salt
    assert [v["weight"] for v in exported["variants"]] == [33.34, 33.33, 33.33]
    text = json.dumps({**exported, "experiment_id": "copy"})
    (copy,) = import_config(session=session, data=json.loads(text))
    again = export_config(session=session, experiment=copy.id)
    for key in ("salt", "variants", "description", "traffic_allocation", "targeting", "secondary_metrics"):
        assert again[key] == exported[key], key
    assert again["status"] == "draft"


def test_config_import_is_all_or_nothing(session: Session) -> None:
    good = {**SEED_CONFIG, "experiment_id": "good"}
    bad = {**SEED_CONFIG, "experiment_id": "bad", "variants": [{"name": "only", "weight": 1}]}
    with pytest.raises(ExperimentError, match="at least two variants"):
        import_config(session=session, data=[good, bad])
    with pytest.raises(ExperimentError, match="appears twice"):
        import_config(session=session, data=[good, good])
    from abcore.experiments.records import list_experiments

    assert list_experiments(session=session) == []


def test_exported_config_routes_like_the_assigner(engine: Engine, session: Session) -> None:
    """The exported JSON read by abcore.assign.Router gives every user the variant the Assigner gives."""
    from abcore.assign import Assigner, Router

    exp = create_experiment(
        session=session,
        data=ExperimentCreate(
            name="routing",
            variants=[
                VariantCreate(name="control", allocation_pct=33.34),
                VariantCreate(name="two", allocation_pct=33.33),
                VariantCreate(name="three", allocation_pct=33.33),
            ],
        ),
    )
    start_experiment(session=session, ref=exp.id)
    router = Router.from_dict(json.loads(json.dumps(export_config(session=session, experiment=exp.id))))
    users = [f"user-{i}" for i in range(3000)]
    assigner = Assigner(engine)
    try:
        served = assigner.assign_many(users, "routing", expose=False, persist=False)
    finally:
        assigner.close()
    assert [a.variant_name for a in served] == router.route_many(users)  # type: ignore[union-attr]
    assert set(router.route_many(users)) == {"control", "two", "three"}


def test_seed_config_routes_like_the_router(engine: Engine, session: Session) -> None:
    """Importing a Router JSON split config and starting it serves users exactly as Router.from_dict(file) does."""
    from abcore.assign import Assigner, Router

    import_config(session=session, data=SEED_CONFIG)
    start_experiment(session=session, ref="als_vs_popgen")
    users = [f"u{i}" for i in range(2000)]
    assigner = Assigner(engine)
    try:
        served = assigner.assign_many(users, "als_vs_popgen", expose=False, persist=False)
    finally:
        assigner.close()
    assert [a.variant_name for a in served] == Router.from_dict(SEED_CONFIG).route_many(users)  # type: ignore[union-attr]


def _documented_results_columns() -> tuple[list[str], list[str]]:
    """The results columns the analysis guide lists for ``abcore export --what results``, and the Bayesian extras."""
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "guides" / "analysis.md").read_text(encoding="utf-8")
    item = guide[guide.index("* `results`: "):]
    item = item[: item.index("\n\n")].replace("\n", " ")
    listed = item[item.index("(`") + 2:]
    always, extra = listed[: listed.index("`, plus")], listed[listed.index("plus `") + 6:]
    return ([c.strip() for c in always.split(",")],
            [c.strip() for c in extra[: extra.index("`")].split(",")])


@pytest.mark.parametrize("method", ["frequentist", "bayesian"])
def test_the_documented_results_columns_are_the_written_header(engine: Engine, session: Session, method: str) -> None:
    experiment_id, variants = _csv_experiment(session)
    fill(session, experiment_id, variants, [f"u{i}" for i in range(40)])
    text = "".join(iter_csv(experiment=experiment_id, what="results", engine=engine,
                            analyze_kwargs={"method": method}))
    header = next(iter(io.StringIO(text))).strip().split(",")
    always, bayesian = _documented_results_columns()
    assert "metric_kind" in always
    assert header == always + (bayesian if method == "bayesian" else [])
