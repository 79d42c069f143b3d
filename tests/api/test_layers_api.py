"""Layers over HTTP: create, list, read, experiments in a layer, holdouts, and ``POST /api/v1/assign/layer``."""

from __future__ import annotations

from fastapi.testclient import TestClient

from abcore.assign.layers import LAYER_UNITS
from tests.api.conftest import Keys

ARMS = [{"name": "control", "weight": 1}, {"name": "treatment", "weight": 1}]


def test_layers_experiments_and_assign_by_surface(client: TestClient, keys: Keys) -> None:
    ed, vi, svc = keys.auth("editor"), keys.auth("viewer"), keys.auth("service")
    created = client.post("/api/v1/layers", json={"name": "home", "description": "slate"}, headers=ed)
    assert created.status_code == 201, created.text
    assert created.json() == {"name": "home", "description": "slate", "free_pct": 100.0, "units": LAYER_UNITS, "experiments": []}
    assert client.post("/api/v1/layers", json={"name": "home"}, headers=ed).status_code == 422
    assert client.post("/api/v1/layers", json={"name": "x"}, headers=vi).status_code == 403
    body = {"name": "ranker", "variants": ARMS, "layer": "home", "layer_share": 40}
    exp = client.post("/api/v1/experiments", json=body, headers=ed)
    assert exp.status_code == 201, exp.text
    assert (exp.json()["layer"], exp.json()["layer_share"]) == ("home", 40.0)
    assert client.post("/api/v1/experiments", json={**body, "name": "b", "layer": "nope"}, headers=ed).status_code == 422
    assert client.put("/api/v1/experiments/ranker/status", json={"status": "running"}, headers=ed).status_code == 200
    layer = client.get("/api/v1/layers/home", headers=vi).json()
    assert layer["free_pct"] == 60.0 and layer["experiments"][0]["ranges"] == [[0, 4000]]
    assert [x["name"] for x in client.get("/api/v1/layers", headers=vi).json()] == ["home"]
    assert client.get("/api/v1/layers/nope", headers=vi).status_code == 404
    answers = [client.post("/api/v1/assign/layer", json={"user_id": f"u{i}", "layer": "home"}, headers=svc).json()
               for i in range(60)]
    assigned = [a for a in answers if a["assigned"]]
    assert assigned and len(assigned) < 60 and {a["experiment"] for a in assigned} == {"ranker"}
    assert client.post("/api/v1/assign/layer", json={"user_id": "u1", "layer": "nope"}, headers=svc).status_code == 404
    holdout = {"name": "hold", "kind": "holdout", "holdout_layers": ["home"],
               "variants": [{"name": "holdout", "allocation_pct": 10}, {"name": "exposed", "allocation_pct": 90}]}
    made = client.post("/api/v1/experiments", json=holdout, headers=ed)
    assert made.status_code == 201, made.text
    assert made.json()["holdout_layers"] == ["home"] and made.json()["kind"] == "holdout"
