"""abcore.io.event_import: CSV / JSON-lines event import — bad lines, idempotency, assignments (both backends)."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.experiments.lifecycle import create_experiment, start_experiment
from abcore.experiments.records import get_variants
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.io.event_import import ImportError_, import_events
from abcore.io.event_records import parse_timestamp
from abcore.store.tables import Experiment, ExperimentEvent, UserAssignment


@pytest.fixture
def experiment(session: Session) -> dict[str, int]:
    exp = create_experiment(
        session=session,
        data=ExperimentCreate(
            name="als_vs_popgen",
            primary_metric="watch",
            variants=[VariantCreate(name="als_model", allocation_pct=60), VariantCreate(name="popgen_model", allocation_pct=40)],
        ),
    )
    start_experiment(session=session, ref=exp.id)
    return {"id": exp.id, **{v.name: v.id for v in get_variants(session=session, experiment_id=exp.id)}}  # type: ignore[misc]


def write_jsonl(path: Path, lines: list[object]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


def counts(session: Session) -> tuple[int, int]:
    session.expire_all()
    events = session.execute(select(func.count()).select_from(ExperimentEvent)).scalar_one()
    assignments = session.execute(select(func.count()).select_from(UserAssignment)).scalar_one()
    return events, assignments


GOOD = [
    {"user": "u1", "experiment": "als_vs_popgen", "variant": "als_model", "event": "exposure", "timestamp": "2026-03-01T10:00:00Z"},
    {"user": "u1", "experiment": "als_vs_popgen", "variant": "als_model", "event": "conversion", "metric": "watch",
     "value": 1, "timestamp": 1772359200, "request_id": "r1", "recommendations": ["m1", "m2"]},
    {"user_id": "u2", "experiment_id": "als_vs_popgen", "variant": "popgen_model", "event_type": "exposure", "ts": "2026-03-01 10:05:00"},
    {"user_id": 3, "experiment_id": "als_vs_popgen", "variant": "popgen_model", "event_type": "exposure", "ts": 1772359300.5},
]


def test_jsonl_import_lands_good_lines_and_reports_bad_ones(engine: Engine, session: Session, experiment, tmp_path) -> None:
    lines: list[object] = [
        *GOOD,
        "{not json",  # line 5
        {"user": "u9", "experiment": "nope", "variant": "als_model", "event": "exposure", "ts": 1},  # 6 unknown experiment
        {"user": "u9", "experiment": "als_vs_popgen", "variant": "zzz", "event": "exposure", "ts": 1},  # 7 unknown variant
        {"user": "u9", "experiment": "als_vs_popgen", "variant": "als_model", "event": "click", "ts": 1},  # 8 event type
        {"user": "u9", "experiment": "als_vs_popgen", "variant": "als_model", "event": "exposure", "ts": "yesterday"},  # 9
        {"user": "u9", "experiment": "als_vs_popgen", "variant": "als_model", "event": "conversion", "value": float("nan"), "ts": 1},  # 10
        {"user": "u1", "experiment": "als_vs_popgen", "variant": "popgen_model", "event": "exposure", "ts": 5},  # 11 conflict
        {"user": "u10", "experiment": "als_vs_popgen", "event": "exposure", "ts": 5},  # 12 no variant, no assignment
        [1, 2],  # 13 not an object
        {"user": "x" * 300, "experiment": "als_vs_popgen", "variant": "als_model", "event": "exposure", "ts": 5},  # 14
        {"user": "nul\u0000", "experiment": "als_vs_popgen", "variant": "als_model", "event": "exposure", "ts": 5},  # 15
        {"user": "u9", "experiment": "als_vs_popgen", "variant": "als_model", "event": "exposure"},  # 16 no timestamp
    ]
    path = write_jsonl(tmp_path / "kafka.log", lines)
    summary = import_events(engine=engine, path=path, batch_size=3)
    assert (summary.records, summary.imported, summary.duplicates, summary.bad) == (16, 4, 0, 12)
    assert [b.line for b in summary.bad_lines] == list(range(5, 17))
    reasons = {b.line: b.reason for b in summary.bad_lines}
    assert "not valid JSON" in reasons[5]
    assert "unknown experiment" in reasons[6]
    assert "unknown variant" in reasons[7]
    assert "unknown event type" in reasons[8]
    assert "timestamp" in reasons[9]
    assert "finite" in reasons[10]
    assert "conflicts" in reasons[11]
    assert "no assignment" in reasons[12]
    assert "JSON object" in reasons[13]
    assert "at most 255" in reasons[14]
    assert "NUL" in reasons[15]
    assert "no timestamp" in reasons[16]
    assert summary.assignments_created == 3
    assert counts(session) == (4, 3)
    rows = {(a.user_id, a.variant_id) for a in session.exec(select(UserAssignment)).scalars()}  # type: ignore[call-overload]
    assert rows == {("u1", experiment["als_model"]), ("u2", experiment["popgen_model"]), ("3", experiment["popgen_model"])}
    conversion = session.exec(select(ExperimentEvent).where(ExperimentEvent.event_type == "conversion")).scalars().one()  # type: ignore[call-overload]
    assert conversion.metric_name == "watch" and conversion.value == 1.0 and conversion.request_id == "r1"
    assert conversion.ts == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)  # epoch 1772359200
    assert conversion.properties == {"recommendations": ["m1", "m2"]}
    # The assignment time is the user's earliest event in the file.
    u1 = session.exec(select(UserAssignment).where(UserAssignment.user_id == "u1")).scalars().one()  # type: ignore[call-overload]
    assert u1.assigned_at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def test_importing_twice_does_not_double_count(engine: Engine, session: Session, experiment, tmp_path) -> None:
    path = write_jsonl(tmp_path / "log.jsonl", [*GOOD, GOOD[0]])  # the last line repeats the first
    first = import_events(engine=engine, path=path)
    assert (first.imported, first.duplicates, first.bad) == (4, 1, 0)
    second = import_events(engine=engine, path=path, batch_size=2)
    assert (second.imported, second.duplicates, second.bad, second.assignments_created) == (0, 5, 0, 0)
    assert counts(session) == (4, 3)


def test_event_ids_are_the_idempotency_key(engine: Engine, session: Session, experiment, tmp_path) -> None:
    base = {"user": "u1", "experiment": "als_vs_popgen", "variant": "als_model", "event": "conversion", "ts": 10}
    path = write_jsonl(tmp_path / "a.jsonl", [{**base, "event_id": "e-1"}, {**base, "event_id": "e-2"}])
    assert import_events(engine=engine, path=path).imported == 2  # same content, distinct ids: both land
    path2 = write_jsonl(tmp_path / "b.jsonl", [{**base, "event_id": "e-1", "value": 0}])  # same id, other content
    summary = import_events(engine=engine, path=path2)
    assert (summary.imported, summary.duplicates) == (0, 1)
    assert counts(session)[0] == 2


def test_existing_assignment_decides_and_is_never_moved(engine: Engine, session: Session, experiment, tmp_path) -> None:
    session.add(UserAssignment(user_id="known", experiment_id=experiment["id"], variant_id=experiment["popgen_model"]))
    session.commit()
    path = write_jsonl(
        tmp_path / "x.jsonl",
        [
            {"user": "known", "experiment": experiment["id"], "event": "exposure", "ts": 1},  # variant from the store
            {"user": "known", "experiment": "als_vs_popgen", "variant": experiment["popgen_model"], "event": "exposure", "ts": 2},
            {"user": "known", "experiment": "als_vs_popgen", "variant": "als_model", "event": "exposure", "ts": 3},
        ],
    )
    summary = import_events(engine=engine, path=path)
    assert (summary.imported, summary.bad, summary.assignments_created) == (2, 1, 0)
    assert summary.bad_lines[0].line == 3
    variants = set(session.exec(select(ExperimentEvent.variant_id)).scalars())  # type: ignore[call-overload]
    assert variants == {experiment["popgen_model"]}


def test_csv_import_with_quoting_and_bad_rows(engine: Engine, session: Session, experiment, tmp_path) -> None:
    path = tmp_path / "events.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "experiment", "variant", "event_type", "metric_name", "value", "ts", "note"])
        writer.writerow(["a,1", "als_vs_popgen", "als_model", "exposure", "", "", "2026-03-01T00:00:00+02:00", 'x "y"'])
        writer.writerow(["ünï\ncode", "als_vs_popgen", "popgen_model", "conversion", "watch", "0.5", "1772323200", ""])
        writer.writerow(["b", "als_vs_popgen", "als_model", "exposure", "", "abc", "1", ""])  # line 5: bad value
        writer.writerow(["c", "als_vs_popgen"])  # line 6: too few fields
    summary = import_events(engine=engine, path=path)
    assert (summary.imported, summary.bad) == (2, 2)
    assert [b.line for b in summary.bad_lines] == [5, 6]  # the quoted newline makes row 3 span lines 3-4
    events = {e.user_id: e for e in session.exec(select(ExperimentEvent)).scalars()}  # type: ignore[call-overload]
    assert set(events) == {"a,1", "ünï\ncode"}
    assert events["a,1"].ts == datetime(2026, 2, 28, 22, 0, tzinfo=UTC)
    assert events["a,1"].properties == {"note": 'x "y"'}
    assert events["ünï\ncode"].value == 0.5
    again = import_events(engine=engine, path=path)
    assert (again.imported, again.duplicates) == (0, 2)


def test_undecodable_and_unreadable_files(engine: Engine, experiment, tmp_path) -> None:
    path = tmp_path / "mixed.jsonl"
    good = json.dumps(GOOD[0]).encode()
    path.write_bytes(good + b"\n" + b'{"user": "\xff\xfe"}\n' + b"\n" + good.replace(b"u1", b"u7") + b"\n")
    summary = import_events(engine=engine, path=path)
    assert (summary.imported, summary.bad) == (2, 1)
    assert summary.bad_lines[0].line == 2 and "UTF-8" in summary.bad_lines[0].reason
    with pytest.raises(ImportError_, match="no such file"):
        import_events(engine=engine, path=tmp_path / "missing.jsonl")
    header_less = tmp_path / "bad.csv"
    header_less.write_text("1,2,3\n4,5,6\n", encoding="utf-8")
    with pytest.raises(ImportError_, match="header"):
        import_events(engine=engine, path=header_less)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01T12:00:00+02:00", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01 10:00:00", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        ("1772359200", datetime(2026, 3, 1, 10, tzinfo=UTC)),  # date -u -d @1772359200
        (1772359200.25, datetime(2026, 3, 1, 10, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(raw: object, expected: datetime) -> None:
    assert parse_timestamp(raw) == expected


@pytest.mark.parametrize("raw", ["", "soon", float("nan"), -5, True, None, 1e20, "2026-13-01"])
def test_parse_timestamp_refuses(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(raw)


def test_digits_are_always_an_experiment_id(engine: Engine, session: Session, experiment, tmp_path) -> None:
    """The rule of every experiment reference (abcore.store.values.is_id_text): a string of ASCII digits is an id,
    never a name, also when an experiment from before the rule is called by those digits."""
    digits = str(experiment["id"])
    other = create_experiment(session=session, data=ExperimentCreate(
        name="placeholder", variants=[VariantCreate(name="a", allocation_pct=50), VariantCreate(name="b", allocation_pct=50)]))
    start_experiment(session=session, ref=other.id)
    session.exec(update(Experiment).where(Experiment.id == other.id).values(name=digits))  # type: ignore[call-overload]
    session.commit()
    path = write_jsonl(tmp_path / "ids.jsonl", [
        {"user": "u1", "experiment": digits, "variant": "als_model", "event": "exposure", "ts": 1},
        {"user": "u2", "experiment": int(digits), "variant": "popgen_model", "event": "exposure", "ts": 2},
        {"user": "u3", "experiment": "99999999999", "variant": "a", "event": "exposure", "ts": 3},  # beyond INTEGER
    ])
    summary = import_events(engine=engine, path=path)
    assert (summary.imported, summary.bad) == (2, 1)
    session.expire_all()
    rows = session.execute(select(UserAssignment.experiment_id, UserAssignment.user_id)).all()
    assert sorted(rows) == [(experiment["id"], "u1"), (experiment["id"], "u2")]
