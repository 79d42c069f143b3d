"""Bad input over HTTP: malformed JSON, wrong types, huge bodies, unknown ids, hostile values.
Each gets a clear 4xx with a readable detail, and the store is exactly as it was (both backends)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.store.tables import ApiKey, AuditLog, Experiment, ExperimentEvent, UserAssignment, Variant

from .conftest import Keys

TABLES = (Experiment, Variant, UserAssignment, ExperimentEvent, AuditLog, ApiKey)
GOOD = {"name": "exp", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}


def snapshot(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {t.__tablename__: session.execute(select(func.count()).select_from(t)).scalar_one() for t in TABLES}


@pytest.fixture
def running(client: TestClient, keys: Keys) -> Iterator[int]:
    created = client.post("/api/v1/experiments", json=GOOD, headers=keys.auth("editor")).json()
    client.put(f"/api/v1/experiments/{created['id']}/status", json={"status": "running"}, headers=keys.auth("editor"))
    client.post("/api/v1/assign", json={"user_id": "u1", "experiment": created["id"]}, headers=keys.auth("service"))
    client.app.state.abcore.assigner.flush()  # the snapshots compare stored rows: nothing left buffered
    yield created["id"]


BAD_BODIES = [
    # (path, raw body, status, words the detail must contain)
    ("/api/v1/experiments", b'{"name": "x", "variants": [', 422, "not valid JSON"),
    ("/api/v1/experiments", b"\xff\xfe\x00garbage", 422, "not valid JSON"),
    ("/api/v1/experiments", b"[1, 2, 3]", 422, "valid dictionary"),
    ("/api/v1/experiments", b'{"name": 5, "variants": "two"}', 422, "variants"),
    ("/api/v1/experiments", b'{"name": "x", "traffic_allocation": "half", "variants": []}', 422, "traffic_allocation"),
    ("/api/v1/experiments", b'{"name": "x", "variants": [{"name": "a", "weight": NaN}, {"name": "b", "weight": 1}]}',
     422, "weight"),
    ("/api/v1/experiments", b'{"name": "x", "variants": [{"name": "a", "weight": -1}, {"name": "b", "weight": 1}]}',
     422, "greater than or equal to 0"),
    ("/api/v1/assign", b'{"user_id": 42}', 422, "user_id"),
    ("/api/v1/assign", b'{"user_id": ""}', 422, "user_id"),
    ("/api/v1/assign", b'{"user_id": "nul\\u0000byte"}', 422, "user_id"),
    ("/api/v1/assign", b'{"user_id": "u", "experiment": true}', 422, "experiment"),
    ("/api/v1/assign", b'{"user_id": "u", "attributes": [1]}', 422, "attributes"),
    ("/api/v1/assign/batch", b'{"user_ids": []}', 422, "user_ids"),
    ("/api/v1/experiments/conversions", b'{"experiment_id": 1, "user_id": "u1", "metric_name": "m", "value": Infinity}',
     422, "value"),
    ("/api/v1/experiments/conversions", b'{"experiment_id": 1, "user_id": "u1", "metric_name": "m", "value": "1.0x"}',
     422, "value"),
    ("/api/v1/experiments/conversions", b'{"user_id": "u1", "metric_name": "m"}', 422, "experiment"),
    ("/api/v1/events", b'{"events": [{"experiment_id": 1, "user_id": "u1", "metric_name": "m", "event_type": "exposure"}]}',
     422, "event_type"),
]


# Names with control or invisible characters, and true / false where a number is expected.
BAD_BODIES += [
    ("/api/v1/experiments", b'{"name": "pay\\u001b[2Jwall", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}',
     422, "U+001B"),
    ("/api/v1/experiments", b'{"name": "x", "variants": [{"name": "a\\u202eb", "weight": 1}, {"name": "b", "weight": 1}]}',
     422, "U+202E"),
    ("/api/v1/experiments", b'{"name": "x", "guardrail_metrics": ["lat\\u200bency"], "variants": [{"name": "a", "weight": 1},'
     b' {"name": "b", "weight": 1}]}', 422, "U+200B"),
    ("/api/v1/experiments/conversions", b'{"experiment_id": 1, "user_id": "u1", "metric_name": "m\\u0007"}', 422, "U+0007"),
    ("/api/v1/experiments/conversions", b'{"experiment_id": 1, "user_id": "u1", "metric_name": "m", "value": true}', 422,
     "not true or false"),
    ("/api/v1/experiments", b'{"name": "x", "traffic_allocation": true, "variants": [{"name": "a", "weight": 1},'
     b' {"name": "b", "weight": 1}]}', 422, "not true or false"),
    ("/api/v1/experiments", b'{"name": "x", "variants": [{"name": "a", "weight": true}, {"name": "b", "weight": 1}]}',
     422, "not true or false"),
    ("/api/v1/experiments", b'{"name": "x", "variants": [{"name": "a", "allocation_pct": false}, {"name": "b",'
     b' "allocation_pct": 100}]}', 422, "not true or false"),
    ("/api/v1/experiments/1/ship", b'{"variant": "a", "rollout_pct": true, "stop": true}', 422, "not true or false"),
]

# Values the store cannot hold, in assignment attributes and event properties: refused, never stored.
UNSTORABLE = [b'{"x": NaN}', b'{"x": [1, Infinity]}', b'{"x": -Infinity}', b'{"x": "\\udc00"}', b'{"\\ud800x": 1}',
              b'{"x": {"y": "a\\udfffb"}}', b'{"x": 123456789012345678901234567890}']
BAD_BODIES += [
    (path, body.replace(b"OBJ", obj), 422, words)
    for obj in UNSTORABLE
    for path, body, words in (
        ("/api/v1/assign", b'{"user_id": "u2", "attributes": OBJ}', "attributes object"),
        ("/api/v1/assign", b'{"user_id": "u1", "attributes": OBJ}', "attributes object"),
        ("/api/v1/assign/batch", b'{"user_ids": ["u2", "u3"], "attributes": OBJ}', "attributes object"),
        ("/api/v1/assign/batch", b'{"user_ids": ["u2", "u3"], "attributes": [{}, OBJ]}', "attributes object"),
        ("/api/v1/experiments/conversions", b'{"experiment_id": 1, "user_id": "u1", "metric_name": "m", "properties": OBJ}',
         "properties object"),
    )
]


@pytest.mark.parametrize("obj", UNSTORABLE)
def test_events_with_unstorable_properties_are_rejected_one_by_one(
    client: TestClient, keys: Keys, engine: Engine, running: int, obj: bytes
) -> None:
    raw = (b'{"events": [{"experiment_id": %d, "user_id": "u1", "metric_name": "m", "properties": ' % running + obj
           + b'}, {"experiment_id": %d, "user_id": "u1", "metric_name": "m", "properties": {"ok": 1.5}}]}' % running)
    answer = client.post("/api/v1/events", content=raw, headers={**keys.auth("service"), "Content-Type": "application/json"})
    assert answer.status_code == 201, answer.text  # one event recorded
    body = answer.json()
    assert body["recorded"] == 1 and [(r["index"], r["status"]) for r in body["rejected"]] == [(0, 422)], body
    assert "properties object" in body["rejected"][0]["detail"]
    with Session(engine) as session:
        stored = session.execute(select(ExperimentEvent.properties).where(ExperimentEvent.event_type == "conversion"))
        assert stored.scalars().all() == [{"ok": 1.5}]


@pytest.mark.parametrize(("path", "raw", "status", "words"), BAD_BODIES)
def test_bad_bodies_get_a_clear_4xx_and_change_nothing(
    client: TestClient, keys: Keys, engine: Engine, running: int, path: str, raw: bytes, status: int, words: str
) -> None:
    before = snapshot(engine)
    answer = client.post(path, content=raw, headers={**keys.auth("editor"), "Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert words in body["detail"], body
    assert body["problems"] and all(isinstance(p, str) for p in body["problems"])
    assert snapshot(engine) == before


def test_huge_bodies_are_refused_with_413_before_parsing(client: TestClient, keys: Keys, engine: Engine, running: int) -> None:
    before = snapshot(engine)
    huge = b'{"name": "' + b"x" * 100_000 + b'", "variants": []}'  # the client fixture allows 64,000 bytes
    answer = client.post("/api/v1/experiments", content=huge, headers={**keys.auth("editor"), "Content-Type": "application/json"})
    assert answer.status_code == 413 and "larger than the limit of 64,000 bytes" in answer.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the middleware counts the streamed bytes
        yield b'{"events": ['
        for _ in range(2000):
            yield b'{"experiment_id": 1, "user_id": "u1", "metric_name": "m"},'
        yield b"]}"

    streamed = client.post("/api/v1/events", content=chunks(), headers={**keys.auth("service"), "Content-Type": "application/json"})
    assert streamed.status_code == 413
    too_many = {"events": [{"experiment_id": running, "user_id": "u1", "metric_name": "m"}] * 1001}
    big_app = client.post("/api/v1/events", json=too_many, headers=keys.auth("service"))
    assert big_app.status_code in (413, 422)
    assert snapshot(engine) == before


def test_unknown_ids_are_404_and_change_nothing(client: TestClient, keys: Keys, engine: Engine, running: int) -> None:
    before = snapshot(engine)
    editor, service, viewer = keys.auth("editor"), keys.auth("service"), keys.auth("viewer")
    calls = [
        client.get("/api/v1/experiments/12345", headers=viewer),
        client.get("/api/v1/experiments/no%20such", headers=viewer),
        client.put("/api/v1/experiments/12345/status", json={"status": "running"}, headers=editor),
        client.post("/api/v1/experiments/12345/ship", json={"variant": "a"}, headers=editor),
        client.get("/api/v1/experiments/12345/metrics", headers=viewer),
        client.get("/api/v1/experiments/12345/results", headers=viewer),
        client.get("/api/v1/experiments/12345/export", params={"what": "events"}, headers=viewer),
        client.post("/api/v1/assign", json={"user_id": "u", "experiment": 12345}, headers=service),
        client.post("/api/v1/assign/batch", json={"user_ids": ["u"], "experiment": "ghost"}, headers=service),
        client.post("/api/v1/experiments/conversions", json={"experiment_id": "ghost", "user_id": "u", "metric_name": "m"},
                    headers=service),
    ]
    for answer in calls:
        assert answer.status_code == 404, (answer.request.url, answer.text)
        assert "No experiment with id or name" in answer.json()["detail"]
    assert snapshot(engine) == before


def test_hostile_but_valid_text_round_trips(client: TestClient, keys: Keys, running: int) -> None:
    user = "ünïcødé 用户 🙂 '; DROP TABLE ab_experiments; --"
    first = client.post("/api/v1/assign", json={"user_id": user, "experiment": running}, headers=keys.auth("service"))
    assert first.status_code == 200 and first.json()["user_id"] == user and first.json()["assigned"]
    tracked = client.post("/api/v1/experiments/conversions", headers=keys.auth("service"),
                          json={"experiment_id": running, "user_id": user, "metric_name": "m"})
    assert tracked.status_code == 201
    long_user = client.post("/api/v1/assign", json={"user_id": "x" * 256, "experiment": running}, headers=keys.auth("service"))
    assert long_user.status_code == 422 and "at most 255" in long_user.json()["detail"]
