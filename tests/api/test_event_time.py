"""``"timestamp"`` in the bodies of ``/experiments/conversions`` and ``/events``: the time an event happened,
read by the importer's rule (ISO-8601, naive = UTC, or epoch seconds), on both store backends."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from abcore.store.tables import ExperimentEvent

from .conftest import Keys
from .test_api import _create


def _times(engine: Engine) -> dict[float, datetime]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(ExperimentEvent.value, ExperimentEvent.ts).where(ExperimentEvent.event_type == "conversion")
        ).all()
    return {v: ts if ts.tzinfo else ts.replace(tzinfo=UTC) for v, ts in rows}


def test_conversions_and_events_take_a_timestamp(client: TestClient, keys: Keys, engine: Engine) -> None:
    exp = _create(client, keys)
    service = keys.auth("service")
    client.post("/api/v1/assign", json={"user_id": "u1", "experiment": exp["id"]}, headers=service)
    one = client.post("/api/v1/experiments/conversions", headers=service, json={
        "experiment_id": exp["id"], "user_id": "u1", "metric_name": "m", "value": 1,
        "timestamp": "2024-03-01T12:00:00Z"})
    assert one.status_code == 201, one.text
    many = client.post("/api/v1/events", headers=service, json={"events": [
        {"experiment_id": exp["id"], "user_id": "u1", "metric_name": "m", "value": 2, "timestamp": 1709294400},
        {"experiment_id": exp["id"], "user_id": "u1", "metric_name": "m", "value": 3,
         "timestamp": "2024-03-01T14:00:00+02:00"},
        {"experiment_id": exp["id"], "user_id": "u1", "metric_name": "m", "value": 4},
    ]})
    assert many.status_code == 200 and many.json() == {"recorded": 3, "rejected": []}
    times = _times(engine)
    # By hand: epoch 1709294400 s = 2024-03-01T12:00:00Z (date -u -d @1709294400); 14:00+02:00 = 12:00Z.
    noon = datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert times[1.0] == times[2.0] == times[3.0] == noon
    assert times[4.0] > datetime(2025, 1, 1, tzinfo=UTC)  # no timestamp: the time of the request


def test_timestamps_outside_the_rule_are_422(client: TestClient, keys: Keys, engine: Engine) -> None:
    exp = _create(client, keys)
    service = keys.auth("service")
    client.post("/api/v1/assign", json={"user_id": "u1", "experiment": exp["id"]}, headers=service)
    for bad in ("yesterday", -1, True, "0001-01-01T00:00:00+14:00", 1e20, ""):
        answer = client.post("/api/v1/experiments/conversions", headers=service, json={
            "experiment_id": exp["id"], "user_id": "u1", "metric_name": "m", "timestamp": bad})
        assert answer.status_code == 422, (bad, answer.text)
        assert "timestamp" in answer.text
    assert _times(engine) == {}
