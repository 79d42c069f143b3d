"""``GET /api/v1/experiments/{ref}/interleaving``: the numbers of analyze_interleaving, in the OpenAPI spec,
422 for an A/B experiment, 404 for an unknown one; creation with kind and method over HTTP."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.analysis.interleaving import analyze_interleaving
from abcore.assign import Assigner
from abcore.assign.interleave import interleave

from .conftest import Keys

A = [f"i{k}" for k in range(10)]
B = [f"i{k}" for k in range(5, 15)]


def test_create_serve_and_read_the_preference(client: TestClient, keys: Keys, engine: Engine) -> None:
    editor = keys.auth("editor")
    body = {"name": "rank", "kind": "interleaving", "interleaving_method": "balanced", "primary_metric": "click",
            "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}
    created = client.post("/api/v1/experiments", json=body, headers=editor)
    assert created.status_code == 201, created.text
    assert created.json()["interleaving_method"] == "balanced" and created.json()["kind"] == "interleaving"
    assert client.put("/api/v1/experiments/rank/status", json={"status": "running"}, headers=editor).status_code == 200
    assigner = Assigner(engine)
    for u in range(40):
        shown = interleave(assigner, f"u{u}", "rank", {"a": A, "b": B}, request_id="r")
        assert shown is not None
        assigner.track(f"u{u}", "rank", "click", properties={"item": shown.items[0], "impression": shown.impression_id})
    assigner.close()
    got = client.get("/api/v1/experiments/rank/interleaving", headers=keys.auth("viewer"))
    assert got.status_code == 200, got.text
    data = got.json()
    with Session(engine) as session:
        res = analyze_interleaving("rank", session=session)
    (pair,) = data["pairs"]
    assert (pair["ranker_a"], pair["ranker_b"], pair["users"]) == ("a", "b", 40)
    assert (pair["wins"], pair["losses"], pair["ties"]) == (res.pairs[0].counts.wins, res.pairs[0].counts.losses,
                                                            res.pairs[0].counts.ties)
    assert data["verdict"]["decision"] == res.verdict.decision and data["method"] == "balanced"
    assert "/api/v1/experiments/{ref}/interleaving" in client.get("/openapi.json").json()["paths"]


def test_errors(client: TestClient, keys: Keys) -> None:
    body = {"name": "ab", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}
    assert client.post("/api/v1/experiments", json=body, headers=keys.auth("editor")).status_code == 201
    assert client.get("/api/v1/experiments/ab/interleaving", headers=keys.auth("viewer")).status_code == 422
    assert client.get("/api/v1/experiments/nope/interleaving", headers=keys.auth("viewer")).status_code == 404
    bad = {**body, "name": "x", "interleaving_method": "team_draft"}
    assert client.post("/api/v1/experiments", json=bad, headers=keys.auth("editor")).status_code == 422
