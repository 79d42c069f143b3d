"""The Quick Start end to end over real HTTP, against ``abcore api`` served by uvicorn (subprocess).

create -> start -> 400 assignments -> conversions -> metrics / results, with the key and role checks
(401 / 403 / 429) along the way, on SQLite and PostgreSQL. The walk-through is a sequence of named
steps, each taking the HTTP client (and what the step before produced) and returning what the next needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, NamedTuple

import httpx
import mmh3
from sqlalchemy.engine import Engine
from sqlmodel import Session
from statsmodels.stats import proportion

from abcore.access.api_keys import create_api_key
from abcore.experiments.records import audit_log

from .conftest import ROOT, Keys, LiveServer, make_keys

USERS = [f"user-{i:04d}" for i in range(400)]
BODY: dict[str, Any] = {
    "name": "lora_boost_test",
    "description": "Test LoRA boost factor",
    "traffic_allocation": 0.5,
    "variants": [
        {"name": "control", "weight": 0.5, "config": {"boost": 0.3}},
        {"name": "treatment", "weight": 0.5, "config": {"boost": 0.5}},
    ],
}


class Served(NamedTuple):
    """What the users were served: variant per user (None: not in the experiment), the assigned users in
    order, the first of them (asked twice) and the users of each variant."""

    variant: dict[str, str | None]
    assigned: list[str]
    first: str
    per_variant: dict[str, list[str]]


def _hash01(text: str, seed: int) -> float:
    # Independent of abcore.assign: DESIGN.md's definition, mmh3 32-bit unsigned / 2**32.
    return mmh3.hash(text, seed, signed=False) / 2**32


def _cli_key(db_url: str, name: str, role: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "abcore", "--database-url", db_url, "api-key", "create", name, "--role", role],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True,
    )
    assert "shown only this once" in done.stderr
    return done.stdout.strip()


def _keys_and_roles(api: httpx.Client, keys: Keys) -> None:
    """No key -> 401, an unknown key -> 401, a viewer may not create -> 403."""
    assert api.post("/api/v1/experiments", json=BODY).status_code == 401
    assert api.post("/api/v1/experiments", json=BODY, headers={"Authorization": "Bearer abk_nope"}).status_code == 401
    denied = api.post("/api/v1/experiments", json=BODY, headers=keys.auth("viewer"))
    assert denied.status_code == 403 and "editor" in denied.json()["detail"]


def _create_and_start(api: httpx.Client, as_editor: dict[str, str]) -> tuple[int, str]:
    """Create the experiment as a draft with its two variants, then start it; returns (id, salt)."""
    created = api.post("/api/v1/experiments", json=BODY, headers=as_editor)
    assert created.status_code == 201, created.text
    experiment = created.json()
    assert experiment["status"] == "draft"
    assert [(v["name"], v["allocation_pct"], v["config"]) for v in experiment["variants"]] == [
        ("control", 50.0, {"boost": 0.3}), ("treatment", 50.0, {"boost": 0.5})
    ]
    eid, salt = experiment["id"], experiment["salt"]
    started = api.put(f"/api/v1/experiments/{eid}/status", json={"status": "running"}, headers=as_editor)
    assert started.status_code == 200 and started.json()["status"] == "running"
    return eid, salt


def _users_ask(api: httpx.Client, keys: Keys, eid: int, salt: str) -> Served:
    """400 users ask for recommendations: automatic assignment with the service key, as the hash
    definition says; asking again (by name) gives the same answer."""
    served: dict[str, str | None] = {}
    for user in USERS:
        answer = api.post("/api/v1/assign", json={"user_id": user, "experiment": eid}, headers=keys.auth("service"))
        assert answer.status_code == 200, answer.text
        data = answer.json()
        served[user] = data["variant"] if data["assigned"] else None
    # Expected from the hash definition itself: the traffic draw _hash01(key, 1) < 0.5 enters;
    # the bucket _hash01(key, 0) < 0.5 -> control.
    expected = {
        u: (("control" if _hash01(f"{salt}:{u}", 0) < 0.5 else "treatment") if _hash01(f"{salt}:{u}", 1) < 0.5 else None)
        for u in USERS
    }
    assert served == expected
    assigned = [u for u in USERS if served[u]]
    first = assigned[0]
    again = api.post("/api/v1/assign", json={"user_id": first, "experiment": "lora_boost_test"}, headers=keys.auth("service"))
    assert again.json()["variant"] == served[first] and again.json()["is_new"] is False  # sticky, by name too
    per_variant = {name: [u for u in assigned if served[u] == name] for name in ("control", "treatment")}
    return Served(served, assigned, first, per_variant)


def _service_may_not_read_and_limits(api: httpx.Client, keys: Keys, eid: int, slow: str) -> None:
    """The service key may not read; a key over its rate limit gets 429 with Retry-After."""
    assert api.get(f"/api/v1/experiments/{eid}/metrics", headers=keys.auth("service")).status_code == 403
    statuses = [
        api.post(  # a user never assigned: 409 while within the limit, nothing written either way
            "/api/v1/experiments/conversions", json={"experiment": eid, "user_id": "x", "metric_name": "conversion"},
            headers={"Authorization": f"Bearer {slow}"},
        )
        for _ in range(6)
    ]
    assert [r.status_code for r in statuses][:2] == [409, 409]  # burst of 2 s x 1 req/s
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1


def _conversions(api: httpx.Client, keys: Keys, eid: int, per_variant: dict[str, list[str]]) -> None:
    """Every 3rd control user and every 2nd treatment user completes a watch; a user never assigned -> 409."""
    converters = per_variant["control"][::3] + per_variant["treatment"][::2]
    for user in converters:
        recorded = api.post(
            "/api/v1/experiments/conversions",
            json={"experiment": eid, "user_id": user, "metric_name": "conversion", "value": 1.0},
            headers=keys.auth("service"),
        )
        assert recorded.status_code == 201, recorded.text
    never = api.post(
        "/api/v1/experiments/conversions",
        json={"experiment": eid, "user_id": "never-assigned", "metric_name": "conversion"},
        headers=keys.auth("service"),
    )
    assert never.status_code == 409 and "assign the user first" in never.json()["detail"]


def _metrics(api: httpx.Client, keys: Keys, eid: int, served: Served) -> None:
    """The metrics equal the counts this test tallied from what it sent."""
    metrics = api.get(f"/api/v1/experiments/{eid}/metrics", headers=keys.auth("viewer"))
    assert metrics.status_code == 200, metrics.text
    by_name = {v["variant"]: v for v in metrics.json()["variants"]}
    for name, users in served.per_variant.items():
        row = by_name[name]
        # the first user was exposed twice (the sticky re-check above)
        exposures = len(users) + (1 if served.first in users else 0)
        converted = len(served.per_variant[name][:: 3 if name == "control" else 2])
        assert (row["assigned"], row["unique_users"], row["exposures"]) == (len(users), len(users), exposures)
        conv = row["conversions"]["conversion"]
        assert (conv["count"], conv["converted"], conv["users"]) == (converted, converted, converted)
        assert abs(conv["conversion_rate"] - converted / len(users)) < 1e-12


def _results_and_export(api: httpx.Client, keys: Keys, eid: int, served: Served) -> None:
    """The results' z-test (unpooled Wald) p-value equals statsmodels'; the assignments CSV has a row per user."""
    results = api.get(f"/api/v1/experiments/{eid}/results", headers=keys.auth("viewer"))
    assert results.status_code == 200, results.text
    row = next(r for r in results.json()["frame"] if r["metric"] == "conversion")
    c_n, t_n = len(served.per_variant["control"]), len(served.per_variant["treatment"])
    c_x, t_x = len(served.per_variant["control"][::3]), len(served.per_variant["treatment"][::2])
    reference = proportion.test_proportions_2indep(t_x, t_n, c_x, c_n, method="wald", compare="diff", correction=False)
    assert (row["users"], row["control_users"], row["conversions"], row["control_conversions"]) == (t_n, c_n, t_x, c_x)
    assert abs(row["p_value"] - reference.pvalue) < 1e-9

    csv_text = api.get(f"/api/v1/experiments/{eid}/export", params={"what": "assignments"}, headers=keys.auth("viewer")).text
    assert len(csv_text.strip().splitlines()) == 1 + len(served.assigned)


def test_quick_start_over_http(live_server: LiveServer, db_url: str, engine: Engine) -> None:
    editor = _cli_key(db_url, "rust-recommender-admin", "editor")
    keys = make_keys(engine)
    with Session(engine) as session:
        slow = create_api_key(session=session, name="slow", role="service", rate_limit=1)[1]
    api = httpx.Client(base_url=live_server.url, timeout=30)
    as_editor = {"Authorization": f"Bearer {editor}"}

    _keys_and_roles(api, keys)
    eid, salt = _create_and_start(api, as_editor)
    served = _users_ask(api, keys, eid, salt)
    _service_may_not_read_and_limits(api, keys, eid, slow)
    _conversions(api, keys, eid, served.per_variant)
    _metrics(api, keys, eid, served)
    _results_and_export(api, keys, eid, served)

    # The audit log names the key that acted.
    with Session(engine) as session:
        actors = {(a.action, a.actor) for a in audit_log(session=session, experiment_id=eid)}
    assert actors == {("create", "rust-recommender-admin"), ("start", "rust-recommender-admin")}
