"""The HTTP API in process (starlette TestClient), on SQLite and PostgreSQL: every endpoint of the
contract, its status codes, the roles, the rate limit and that it answers what the library answers."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.access.api_keys import create_api_key, revoke_api_key
from abcore.analysis.pipeline import analyze
from abcore.api import ApiSettings, create_app
from abcore.experiments.records import audit_log
from abcore.io.csv_export import iter_csv
from abcore.store.tables import ExperimentEvent

from .conftest import Keys

EXPERIMENT_BODY = {
    "name": "lora_boost_test",
    "description": "Test LoRA boost factor",
    "traffic_allocation": 1.0,
    "variants": [
        {"name": "control", "weight": 0.5, "config": {"boost": 0.3}},
        {"name": "treatment", "weight": 0.5, "config": {"boost": 0.5}},
    ],
}


def _create(client: TestClient, keys: Keys, body: dict | None = None, start: bool = True) -> dict:
    created = client.post("/api/v1/experiments", json=body or EXPERIMENT_BODY, headers=keys.auth("editor"))
    assert created.status_code == 201, created.text
    if start:
        started = client.put(f"/api/v1/experiments/{created.json()['id']}/status", json={"status": "running"},
                             headers=keys.auth("editor"))
        assert started.status_code == 200, started.text
        return started.json()
    return created.json()


def test_create_normalises_weights_and_keeps_every_experiment_create_field(client: TestClient, keys: Keys) -> None:
    body = {
        "name": "three_arms",
        "hypothesis": "more boost, more watching",
        "variants": [{"name": n, "weight": 1, "config": {"arm": n}} for n in ("a", "b", "c")],
        "primary_metric": "watch_completion",
        "secondary_metrics": ["click_through"],
        "targeting": [{"attribute": "country", "op": "in", "value": ["DE", "FR"]}],
        "success_criteria": {"metric": "watch_completion", "direction": "increase", "threshold": 0.01, "confidence": 0.9},
        "min_samples_per_variant": 100,
    }
    created = client.post("/api/v1/experiments", json=body, headers=keys.auth("editor"))
    assert created.status_code == 201, created.text
    data = created.json()
    # Largest remainder by hand: 100/3 = 33.333.. -> 33.34, 33.33, 33.33 (sums to exactly 100)
    assert [v["allocation_pct"] for v in data["variants"]] == [33.34, 33.33, 33.33]
    assert [v["is_control"] for v in data["variants"]] == [True, False, False]
    assert data["status"] == "draft" and data["allowed_actions"] == ["start", "delete", "cancel"]
    assert data["targeting"] == body["targeting"] and data["success_criteria"] == body["success_criteria"]
    assert (data["primary_metric"], data["secondary_metrics"], data["min_samples_per_variant"]) == (
        "watch_completion", ["click_through"], 100)
    assert data["created_by"] == "ed"
    pct = client.post("/api/v1/experiments", headers=keys.auth("editor"), json={
        "name": "pct", "variants": [{"name": "a", "allocation_pct": 20}, {"name": "b", "allocation_pct": 80}]})
    assert [v["allocation_pct"] for v in pct.json()["variants"]] == [20.0, 80.0]


def test_invalid_experiments_get_422_listing_every_problem(client: TestClient, keys: Keys) -> None:
    bad = client.post("/api/v1/experiments", headers=keys.auth("editor"), json={
        "name": "  ", "traffic_allocation": 0, "variants": [{"name": "only", "allocation_pct": 90}]})
    assert bad.status_code == 422
    problems = bad.json()["problems"]
    assert "The experiment needs a name." in problems
    assert "An experiment needs at least two variants." in problems
    assert any("sum to exactly 100" in p for p in problems)
    assert any("traffic share" in p for p in problems)
    mixed = client.post("/api/v1/experiments", headers=keys.auth("editor"), json={
        "name": "mixed", "variants": [{"name": "a", "weight": 1}, {"name": "b", "allocation_pct": 50}]})
    assert mixed.status_code == 422 and "not a mix" in mixed.json()["detail"]
    zero = client.post("/api/v1/experiments", headers=keys.auth("editor"), json={
        "name": "zero", "variants": [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]})
    assert zero.status_code == 422 and "sum to 0" in zero.json()["detail"]
    _create(client, keys, start=False)
    taken = client.post("/api/v1/experiments", json=EXPERIMENT_BODY, headers=keys.auth("editor"))
    assert taken.status_code == 422 and "already exists" in taken.json()["detail"]


def test_list_filters_by_status_and_paginates(client: TestClient, keys: Keys) -> None:
    for i in range(5):
        body = {**EXPERIMENT_BODY, "name": f"exp{i}"}
        _create(client, keys, body, start=i % 2 == 0)
    everything = client.get("/api/v1/experiments", headers=keys.auth("viewer")).json()
    assert everything["total"] == 5 and [e["name"] for e in everything["items"]] == ["exp4", "exp3", "exp2", "exp1", "exp0"]
    running = client.get("/api/v1/experiments", params={"status": "running"}, headers=keys.auth("viewer")).json()
    assert running["total"] == 3 and {e["name"] for e in running["items"]} == {"exp0", "exp2", "exp4"}
    page = client.get("/api/v1/experiments", params={"limit": 2, "offset": 2}, headers=keys.auth("viewer")).json()
    assert [e["name"] for e in page["items"]] == ["exp2", "exp1"] and (page["limit"], page["offset"]) == (2, 2)
    assert client.get("/api/v1/experiments", params={"status": "active"}, headers=keys.auth("viewer")).status_code == 422
    typo = client.get("/api/v1/experiments", params={"stauts": "running"}, headers=keys.auth("viewer"))
    assert typo.status_code == 422 and "'stauts'" in typo.json()["detail"]


def test_get_by_id_or_name_and_unknown_is_404(client: TestClient, keys: Keys) -> None:
    exp = _create(client, keys, start=False)
    by_id = client.get(f"/api/v1/experiments/{exp['id']}", headers=keys.auth("viewer"))
    by_name = client.get("/api/v1/experiments/lora_boost_test", headers=keys.auth("viewer"))
    assert by_id.json() == by_name.json() and by_id.json()["id"] == exp["id"]
    for ref in ("999", "nope", "³", "99999999999999999999999"):
        missing = client.get(f"/api/v1/experiments/{ref}", headers=keys.auth("viewer"))
        assert missing.status_code == 404 and "No experiment" in missing.json()["detail"]


def test_a_path_of_digits_is_always_an_id(client: TestClient, keys: Keys, engine: Engine) -> None:
    from tests.factories import insert_experiment

    with Session(engine, expire_on_commit=False) as session:
        insert_experiment(session, name="2", salt="s", status="draft")  # a name stored before the rule: id 1
    second = _create(client, keys)
    assert second["id"] == 2
    got = client.get("/api/v1/experiments/2", headers=keys.auth("viewer"))
    assert got.json()["name"] == "lora_boost_test", got.text
    assert client.get("/api/v1/experiments/1", headers=keys.auth("viewer")).json()["name"] == "2"
    assigned = client.post("/api/v1/assign", json={"user_id": "u", "experiment": "2"}, headers=keys.auth("service"))
    assert assigned.json()["experiment_id"] == 2, assigned.text
    refused = client.post("/api/v1/experiments", json={**EXPERIMENT_BODY, "name": "20"}, headers=keys.auth("editor"))
    assert refused.status_code == 422 and "all digits" in refused.json()["detail"]


def test_status_transitions_409_with_reason_and_audit_names_the_key(client: TestClient, keys: Keys, engine: Engine) -> None:
    exp = _create(client, keys, start=False)
    url = f"/api/v1/experiments/{exp['id']}/status"
    steps = [("running", 200, "running"), ("running", 200, "running"), ("paused", 200, "paused"),
             ("running", 200, "running"), ("completed", 200, "completed")]
    for target, code, status in steps:
        answer = client.put(url, json={"status": target}, headers=keys.auth("editor"))
        assert (answer.status_code, answer.json()["status"]) == (code, status)
    refused = client.put(url, json={"status": "running"}, headers=keys.auth("editor"))
    assert refused.status_code == 409 and "it is completed" in refused.json()["detail"]
    assert client.put(url, json={"status": "paused"}, headers=keys.auth("editor")).status_code == 409
    assert client.put(url, json={"status": "draft"}, headers=keys.auth("editor")).status_code == 422
    with Session(engine) as session:
        entries = [(a.action, a.actor) for a in reversed(audit_log(session=session, experiment_id=exp["id"]))]
    # the repeated "running" changed nothing, so it is not in the log
    assert entries == [("create", "ed"), ("start", "ed"), ("pause", "ed"), ("resume", "ed"), ("stop", "ed")]


def test_ship_winner(client: TestClient, keys: Keys) -> None:
    exp = _create(client, keys)
    url = f"/api/v1/experiments/{exp['id']}/ship"
    early = client.post(url, json={"variant": "treatment", "rollout_pct": 50}, headers=keys.auth("editor"))
    assert early.status_code == 409 and "stop the experiment first" in early.json()["detail"]
    assert client.post(url, json={"variant": "treatment", "rollout_pct": 0}, headers=keys.auth("editor")).status_code == 422
    unknown = client.post(url, json={"variant": "nope", "stop": True}, headers=keys.auth("editor"))
    assert unknown.status_code == 422 and "has no variant 'nope'" in unknown.json()["detail"]
    shipped = client.post(url, json={"variant": "treatment", "rollout_pct": 100, "stop": True}, headers=keys.auth("editor"))
    assert shipped.status_code == 200, shipped.text
    assert (shipped.json()["status"], shipped.json()["winner"], shipped.json()["rollout_pct"]) == ("completed", "treatment", 100.0)
    served = client.post("/api/v1/assign", json={"user_id": "anyone", "experiment": exp["id"]}, headers=keys.auth("service"))
    assert served.json()["variant"] == "treatment"


def test_a_refused_ship_with_stop_leaves_the_experiment_running(client: TestClient, keys: Keys, engine: Engine) -> None:
    exp = _create(client, keys)
    url = f"/api/v1/experiments/{exp['id']}/ship"
    for body in ({"variant": "nope", "stop": True}, {"variant": 999_999, "stop": True}):
        refused = client.post(url, json=body, headers=keys.auth("editor"))
        assert refused.status_code == 422 and "has no variant" in refused.json()["detail"], refused.text
    now = client.get(f"/api/v1/experiments/{exp['id']}", headers=keys.auth("viewer")).json()
    assert (now["status"], now["stopped_at"], now["winner"]) == ("running", None, None)
    with Session(engine) as session:
        assert [a.action for a in audit_log(session=session, experiment_id=exp["id"])] == ["start", "create"]
    shipped = client.post(url, json={"variant": "treatment", "rollout_pct": 40, "stop": True}, headers=keys.auth("editor"))
    assert (shipped.json()["status"], shipped.json()["winner"]) == ("completed", "treatment"), shipped.text
    with Session(engine) as session:
        entries = audit_log(session=session, experiment_id=exp["id"])
    assert [a.action for a in entries] == ["ship", "stop", "start", "create"]


def test_assign_single_and_batch_answer_like_the_library(client: TestClient, keys: Keys) -> None:
    exp = _create(client, keys)
    one = client.post("/api/v1/assign", json={"user_id": "u1", "experiment": "lora_boost_test",
                                              "attributes": {"country": "DE"}}, headers=keys.auth("service")).json()
    assert one["assigned"] and one["is_new"] and one["experiment_id"] == exp["id"]
    variants = {v["name"]: v for v in exp["variants"]}
    assert one["variant_id"] == variants[one["variant"]]["id"] and one["config"] == variants[one["variant"]]["config"]
    assert one["is_control"] == (one["variant"] == "control")
    latest = client.post("/api/v1/assign", json={"user_id": "u1"}, headers=keys.auth("service")).json()
    assert latest["variant"] == one["variant"] and latest["is_new"] is False  # omitted experiment: the running one
    users = [f"b{i}" for i in range(50)] + ["u1"]
    batch = client.post("/api/v1/assign/batch", json={"user_ids": users, "experiment": exp["id"]}, headers=keys.auth("service"))
    assert batch.status_code == 200
    answers = batch.json()["assignments"]
    assert [a["user_id"] for a in answers] == users and all(a["assigned"] for a in answers)
    assert answers[-1]["variant"] == one["variant"] and answers[-1]["is_new"] is False
    singles = [client.post("/api/v1/assign", json={"user_id": u, "experiment": exp["id"]}, headers=keys.auth("service")).json()
               for u in users[:10]]
    assert [s["variant"] for s in singles] == [a["variant"] for a in answers[:10]]  # sticky: same answers
    missing = client.post("/api/v1/assign", json={"user_id": "u1", "experiment": "nope"}, headers=keys.auth("service"))
    assert missing.status_code == 404
    draft = _create(client, keys, {**EXPERIMENT_BODY, "name": "draft"}, start=False)
    not_yet = client.post("/api/v1/assign", json={"user_id": "u1", "experiment": draft["id"]}, headers=keys.auth("service"))
    assert not_yet.status_code == 200 and not_yet.json() == {**{k: None for k in not_yet.json()}, "user_id": "u1",
                                                               "assigned": False}
    wrong = client.post("/api/v1/assign/batch", json={"user_ids": ["a", "b"], "attributes": [{}]}, headers=keys.auth("service"))
    assert wrong.status_code == 422 and "1 attribute objects for 2 users" in wrong.json()["detail"]


def test_conversions_and_events_with_clear_refusals(client: TestClient, keys: Keys) -> None:
    exp = _create(client, keys)
    for user in ("u1", "u2"):
        client.post("/api/v1/assign", json={"user_id": user, "experiment": exp["id"]}, headers=keys.auth("service"))
    ok = client.post("/api/v1/experiments/conversions", headers=keys.auth("service"),
                     json={"experiment": "lora_boost_test", "user_id": "u1", "metric_name": "watch_completion"})
    assert ok.status_code == 201 and ok.json() == {"recorded": True, "experiment_id": exp["id"], "experiment": "lora_boost_test",
                                                   "user_id": "u1", "metric_name": "watch_completion"}
    unknown = client.post("/api/v1/experiments/conversions", headers=keys.auth("service"),
                          json={"experiment": 999, "user_id": "u1", "metric_name": "m"})
    assert unknown.status_code == 404
    events = client.post("/api/v1/events", headers=keys.auth("service"), json={"events": [
        {"experiment": exp["id"], "user_id": "u2", "metric_name": "watch_completion", "value": 1},
        {"experiment": exp["id"], "user_id": "ghost", "metric_name": "watch_completion"},
        {"experiment": "nope", "user_id": "u2", "metric_name": "watch_completion"},
        {"experiment_id": exp["id"], "user_id": "u2", "metric_name": "rating", "event_type": "feedback",  # deprecated alias
         "properties": {"sentiment": "positive"}},
    ]})
    assert events.status_code == 201  # created rows
    assert events.json()["recorded"] == 2
    assert [(r["index"], r["status"]) for r in events.json()["rejected"]] == [(1, 409), (2, 404)]
    metrics = client.get(f"/api/v1/experiments/{exp['id']}/metrics", headers=keys.auth("viewer")).json()
    # by hand: u1 and u2 each converted once on watch_completion, each in its own assigned variant
    total = sum(v["conversions"]["watch_completion"]["count"] for v in metrics["variants"])
    assert total == 2 and sum(v["unique_users"] for v in metrics["variants"]) == 2
    client.put(f"/api/v1/experiments/{exp['id']}/status", json={"status": "cancelled"}, headers=keys.auth("editor"))
    late = client.post("/api/v1/experiments/conversions", headers=keys.auth("service"),
                       json={"experiment": exp["id"], "user_id": "u1", "metric_name": "watch_completion"})
    assert late.status_code == 409 and "is cancelled" in late.json()["detail"]


def test_results_and_export_are_the_library_s(client: TestClient, keys: Keys, engine: Engine) -> None:
    exp = _create(client, keys)
    for i in range(40):
        user = f"u{i}"
        client.post("/api/v1/assign", json={"user_id": user, "experiment": exp["id"]}, headers=keys.auth("service"))
        if i % 3 == 0:
            client.post("/api/v1/experiments/conversions", headers=keys.auth("service"),
                        json={"experiment_id": exp["id"], "user_id": user, "metric_name": "conversion"})
    answer = client.get(f"/api/v1/experiments/{exp['id']}/results", params={"method": "bayesian", "correction": "none"},
                        headers=keys.auth("viewer"))
    assert answer.status_code == 200
    with Session(engine, expire_on_commit=False) as session:
        expected = analyze(exp["id"], session=session, method="bayesian", correction="none").to_dict()
    got = answer.json()
    for volatile in ("computed_at", "days_run"):
        got.pop(volatile), expected.pop(volatile)
    assert got == expected
    assert sum(v["users"] for v in got["variants"]) == 40  # every user exposed once
    bad = client.get(f"/api/v1/experiments/{exp['id']}/results", params={"alpha": 2}, headers=keys.auth("viewer"))
    assert bad.status_code == 422
    for what in ("assignments", "events", "results"):
        response = client.get(f"/api/v1/experiments/{exp['id']}/export", params={"what": what}, headers=keys.auth("viewer"))
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        library = "".join(iter_csv(experiment=exp["id"], what=what, engine=engine))
        if what != "results":
            assert response.text == library
        rows = list(csv.reader(io.StringIO(response.text)))
        if what == "assignments":
            assert len(rows) == 41
    assert client.get("/api/v1/experiments/999/export", params={"what": "events"}, headers=keys.auth("viewer")).status_code == 404
    assert client.get(f"/api/v1/experiments/{exp['id']}/export", params={"what": "x"}, headers=keys.auth("viewer")).status_code == 422


def test_roles_and_revocation(engine: Engine, keys: Keys) -> None:
    with TestClient(create_app(engine, settings=ApiSettings(key_cache_ttl=0.0))) as client:
        assert client.get("/api/v1/experiments").status_code == 401
        assert client.get("/api/v1/experiments").headers["www-authenticate"] == "Bearer"
        assert client.get("/api/v1/experiments", headers={"Authorization": "Basic abc"}).status_code == 401
        for role, reads, manages, tracks in (("viewer", 200, 403, 403), ("editor", 200, 201, 200), ("service", 403, 403, 200)):
            auth = keys.auth(role)
            assert client.get("/api/v1/experiments", headers=auth).status_code == reads, role
            created = client.post("/api/v1/experiments", json={**EXPERIMENT_BODY, "name": f"by_{role}"}, headers=auth)
            assert created.status_code == manages, role
            assert client.post("/api/v1/assign", json={"user_id": "u"}, headers=auth).status_code == tracks, role
        with Session(engine) as session:
            revoke_api_key(session=session, name="vi")
        gone = client.get("/api/v1/experiments", headers=keys.auth("viewer"))
        assert gone.status_code == 401 and "revoked" in gone.json()["detail"]


def test_rate_limit_per_key_429_with_retry_after(engine: Engine, keys: Keys) -> None:
    settings = ApiSettings(rate_limit=5, burst_seconds=1.0)
    with Session(engine) as session:
        unlimited = create_api_key(session=session, name="bulk", role="viewer", rate_limit=0)[1]
    with TestClient(create_app(engine, settings=settings)) as client:
        viewer = {"Authorization": f"Bearer {keys.viewer}"}
        # 'vi' was created with rate_limit=0 (unlimited) by the fixture; a key on the server default:
        with Session(engine) as session:
            limited = create_api_key(session=session, name="limited", role="viewer")[1]
        codes = [client.get("/api/v1/experiments", headers={"Authorization": f"Bearer {limited}"}).status_code
                 for _ in range(8)]
        assert codes[:5] == [200] * 5 and 429 in codes[5:]  # a bucket of 5 requests (5/s x 1 s)
        refused = client.get("/api/v1/experiments", headers={"Authorization": f"Bearer {limited}"})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert "Rate limit of API key 'limited'" in refused.json()["detail"]
        # other keys are not affected
        assert all(client.get("/api/v1/experiments", headers=h).status_code == 200
                   for h in [viewer, {"Authorization": f"Bearer {unlimited}"}] * 10)
        time.sleep(0.25)  # 5/s refills one request in 0.2 s
        assert client.get("/api/v1/experiments", headers={"Authorization": f"Bearer {limited}"}).status_code == 200


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "abcore HTTP API"
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert client.get("/docs").status_code == 200
    assert client.get("/api/v1/health").json()["status"] == "ok"


def test_metrics_counts_the_users_and_conversions_of_the_analysis(client: TestClient, keys: Keys, engine: Engine) -> None:
    """``/metrics`` counts the analysis population and its qualifying events: the same users per variant and
    the same converted users of a binomial metric as ``analyze`` (a conversion before the user's exposure,
    stored with an earlier timestamp, is in neither)."""
    exp = _create(client, keys)
    metric = exp["primary_metric"]
    for i in range(30):
        user = f"u{i}"
        client.post("/api/v1/assign", json={"user_id": user, "experiment": exp["id"]}, headers=keys.auth("service"))
        if i % 4 == 0:
            client.post("/api/v1/experiments/conversions", headers=keys.auth("service"),
                        json={"experiment_id": exp["id"], "user_id": user, "metric_name": metric})
    got = client.get(f"/api/v1/experiments/{exp['id']}/metrics", headers=keys.auth("viewer")).json()  # flushes writes
    with Session(engine, expire_on_commit=False) as session:
        early = ExperimentEvent(experiment_id=exp["id"], user_id="u1", event_type="conversion", metric_name=metric,
                                value=1.0, ts=datetime.now(UTC) - timedelta(days=3))
        session.add(early)
        session.commit()
        results = analyze(exp["id"], session=session, correction="none")
    assert client.get(f"/api/v1/experiments/{exp['id']}/metrics", headers=keys.auth("viewer")).json() == got
    by_id = {v["variant_id"]: v for v in got["variants"]}
    assert {v.variant_id: v.users for v in results.variants} == {k: v["unique_users"] for k, v in by_id.items()}
    row = results.result(metric)
    control = next(v for v in results.variants if v.is_control)
    counted = {vid: v["conversions"][metric]["converted"] for vid, v in by_id.items()}
    assert counted == {control.variant_id: row.control_conversions, row.variant_id: row.conversions}
    assert sum(counted.values()) == len(range(0, 30, 4)) and sum(v["unique_users"] for v in by_id.values()) == 30
