"""``POST /api/v1/assign`` and ``/assign/batch`` answer with the served model's version and registered config,
and the OpenAPI schema of the answer lists them."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.assign.test_assign_models import ALS_CONFIG, experiment_serving_a_model

from .conftest import Keys


def test_http_answer_and_openapi_carry_the_model(engine: Engine, client: TestClient, keys: Keys) -> None:
    experiment_serving_a_model(engine)
    answers = client.post("/api/v1/assign/batch", json={"user_ids": [f"user-{i}" for i in range(40)],
                                                          "experiment": "models_served"}, headers=keys.auth("service"))
    assert answers.status_code == 200, answers.text
    by_variant = {a["variant"]: a for a in answers.json()["assignments"]}
    treated, control = by_variant["treatment"], by_variant["control"]
    assert (treated["model_name"], treated["model_version"], treated["model_config"]) == ("als", "2.1", ALS_CONFIG)
    assert treated["config"] == {"reg": 0.02}
    assert (control["model_id"], control["model_version"], control["model_config"]) == (None, None, {})
    one = client.post("/api/v1/assign", json={"user_id": treated["user_id"], "experiment": "models_served"},
                      headers=keys.auth("service")).json()
    assert (one["model_version"], one["model_config"]) == ("2.1", ALS_CONFIG)
    schema = client.get("/openapi.json").json()["components"]["schemas"]["AssignmentOut"]["properties"]
    assert {"model_id", "model_name", "model_version", "model_config"} <= set(schema)
