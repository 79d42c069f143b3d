"""The data plane of the HTTP API: assign, conversions and events are not throttled by default, management
routes are; the assign route answers from memory on the event loop and falls back to a thread when the
assigner would have to wait."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.access.api_keys import create_api_key
from abcore.api import ApiSettings, create_app
from abcore.api.tracking import assignment_json, assignment_out
from abcore.assign.definitions import answers_at_once
from abcore.config import SETTINGS, load_settings

from .conftest import Keys, make_keys

EXPERIMENT = {"name": "exp", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}


def _client(engine: Engine, **settings: float) -> TestClient:
    return TestClient(create_app(engine, settings=ApiSettings(key_cache_ttl=60.0, **settings)))  # type: ignore[arg-type]


@pytest.fixture
def default_keys(engine: Engine) -> Keys:
    """Keys without a limit of their own: the server's defaults apply."""
    return make_keys(engine, rate_limit=None)


def _key(engine: Engine, name: str, role: str, rate_limit: float | None) -> dict[str, str]:
    with Session(engine) as session:
        return {"Authorization": f"Bearer {create_api_key(session=session, name=name, role=role, rate_limit=rate_limit)[1]}"}


@pytest.fixture
def started(engine: Engine) -> Iterator[int]:
    with _client(engine, rate_limit=0) as client:
        editor = _key(engine, "setup", "editor", 0)
        exp = client.post("/api/v1/experiments", json=EXPERIMENT, headers=editor).json()
        client.put(f"/api/v1/experiments/{exp['id']}/status", json={"status": "running"}, headers=editor)
    yield int(exp["id"])


def test_the_setting_is_in_the_one_table() -> None:
    spec = SETTINGS["api_data_rate_limit"]
    assert spec.env == "ABCORE_API_DATA_RATE_LIMIT" and spec.default == 0.0
    assert ApiSettings().data_rate_limit == load_settings({}).api_data_rate_limit == 0.0
    assert ApiSettings.from_env().data_rate_limit == 0.0
    assert load_settings({"ABCORE_API_DATA_RATE_LIMIT": "50"}).api_data_rate_limit == 50.0


def test_data_plane_is_not_throttled_by_default_but_management_is(engine: Engine, default_keys: Keys, started: int) -> None:
    # management: 0.5 requests/s with bursts of 2 s -> 1 answered at once, the next ones 429 until a token
    # refills 2 s later (token bucket by hand; a slow rate so a loaded machine cannot refill one in between)
    with _client(engine, rate_limit=0.5) as client:
        service = default_keys.auth("service")
        answers = [client.post("/api/v1/assign", json={"user_id": f"u{i}", "experiment": started}, headers=service)
                   for i in range(60)]
        assert {a.status_code for a in answers} == {200}
        events = client.post("/api/v1/events", headers=service, json={"events": [
            {"experiment": started, "user_id": "u1", "metric_name": "m"}]})
        assert events.status_code == 201
        viewer = default_keys.auth("viewer")
        listed = [client.get("/api/v1/experiments", headers=viewer).status_code for _ in range(5)]
        assert listed == [200, 429, 429, 429, 429]


def test_a_data_plane_limit_and_a_key_s_own_limit_apply(engine: Engine, default_keys: Keys, started: int) -> None:
    body = {"user_id": "u1", "experiment": started}
    with _client(engine, rate_limit=0, data_rate_limit=1) as client:  # bursts of 2 s: 2 at once, the 3rd waits
        codes = [client.post("/api/v1/assign", json=body, headers=default_keys.auth("service")) for _ in range(3)]
        assert [c.status_code for c in codes] == [200, 200, 429]
        assert codes[2].headers["retry-after"] == "1" and "Rate limit" in codes[2].json()["detail"]
        # the management plane has its own bucket: not spent by the data plane
        assert client.get("/api/v1/experiments", headers=default_keys.auth("editor")).status_code == 200
    own = _key(engine, "own", "service", 0.5)  # a key created with its own limit keeps it on the data plane too
    with _client(engine, rate_limit=0) as client:
        assert [client.post("/api/v1/assign", json=body, headers=own).status_code for _ in range(2)] == [200, 429]


def test_assign_checks_key_role_query_and_body_like_every_route(engine: Engine, default_keys: Keys, started: int) -> None:
    with _client(engine) as client:
        body = {"user_id": "u1", "experiment": started}
        assert client.post("/api/v1/assign", json=body).status_code == 401
        assert client.post("/api/v1/assign", json=body, headers={"Authorization": "Basic abc"}).status_code == 401
        assert client.post("/api/v1/assign", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        viewer = client.post("/api/v1/assign", json=body, headers=default_keys.auth("viewer"))
        assert viewer.status_code == 403 and "needs service or editor" in viewer.json()["detail"]
        service = default_keys.auth("service")
        typo = client.post("/api/v1/assign?expose=0", json=body, headers=service)
        assert typo.status_code == 422 and "Unknown query parameter(s) 'expose'" in typo.json()["detail"]
        missing = client.post("/api/v1/assign", headers=service)
        assert missing.status_code == 422 and missing.json()["problems"] == ["body: Field required"]
        text = client.post("/api/v1/assign", content=b'{"user_id": "u1"}', headers={**service, "Content-Type": "text/plain"})
        assert text.status_code == 422
        broken = client.post("/api/v1/assign", content=b'{"user_id": ', headers={**service, "Content-Type": "application/json"})
        assert broken.status_code == 422 and "not valid JSON" in broken.json()["detail"]
        ok = client.post("/api/v1/assign", json=body, headers=service)
        assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
        assert set(ok.json()) == {"user_id", "assigned", "experiment_id", "experiment", "variant_id", "variant", "config",
                                  "is_control", "is_new", "model_id", "model_name", "model_version", "model_config"}
        assert client.post("/api/v1/assign", json={"user_id": "u1", "experiment": 999}, headers=service).status_code == 404


def test_assign_answers_from_memory_and_takes_a_thread_only_when_it_may_wait(engine: Engine, default_keys: Keys,
                                                                           started: int) -> None:
    with _client(engine) as client:
        service = default_keys.auth("service")
        first = client.post("/api/v1/assign", json={"user_id": "u1", "experiment": started}, headers=service).json()
        assigner = client.app.state.abcore.assigner  # type: ignore[attr-defined]
        assert answers_at_once(assigner, "u1", started, None)  # cached definitions, a known user
        assert answers_at_once(assigner, "someone-new", "exp", None)  # a new user: the hash answers, no read
        assert not answers_at_once(assigner, "u1", 999, None)  # unknown experiment: a reload may find it
        assigner._defs_expiry = 0.0  # expired definitions: assign would wait for a reload
        assert not answers_at_once(assigner, "u1", started, None)
        again = client.post("/api/v1/assign", json={"user_id": "u1", "experiment": started}, headers=service).json()
        assert again["variant_id"] == first["variant_id"] and not again["is_new"]  # sticky, through the thread
        assert answers_at_once(assigner, "u1", started, None)  # reloaded


def test_the_encoded_answer_is_assignment_out(engine: Engine, default_keys: Keys, started: int) -> None:
    with _client(engine) as client:
        assigner = client.app.state.abcore.assigner  # type: ignore[attr-defined]
        for user in ("u1", "ü-\"quoted\"", "u1"):
            answer = assigner.assign(user, started)
            assert json.loads(assignment_json(user, answer)) == assignment_out(user, answer)  # json module as the judge
            served = client.post("/api/v1/assign", json={"user_id": user, "experiment": started},
                                 headers=default_keys.auth("service"))
            assert served.json() == assignment_out(user, assigner.assign(user, started))
        assert json.loads(assignment_json("x", None)) == {"user_id": "x", "assigned": False}


def test_abcore_api_passes_both_limits_to_every_worker(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from abcore.cli.main import main

    served: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    for name in ("api_rate_limit", "api_data_rate_limit", "database_url"):
        monkeypatch.setenv(SETTINGS[name].env, "")  # abcore api sets them for its workers: restored after the test
    assert main(["--database-url", sqlite_url, "api", "--workers", "2", "--rate-limit", "20", "--data-rate-limit", "500"]) == 0
    assert served["workers"] == 2 and served["factory"] is True and served["app"] == "abcore.api.app:serve_app"
    settings = ApiSettings.from_env()  # what each worker's create_app reads
    assert (settings.rate_limit, settings.data_rate_limit) == (20.0, 500.0)


def test_a_user_outside_the_traffic_share_is_read_once_then_answered_from_memory(engine: Engine, default_keys: Keys) -> None:
    from abcore.assign import traffic_bucket

    with _client(engine) as client:
        editor = _key(engine, "ed2", "editor", 0)
        exp = client.post("/api/v1/experiments", json={**EXPERIMENT, "name": "half", "traffic_allocation": 0.5,
                                                       "salt": "half-salt"}, headers=editor).json()
        client.put(f"/api/v1/experiments/{exp['id']}/status", json={"status": "running"}, headers=editor)
        # a user the hash keeps out (traffic_bucket, the assigner's own hash, as the judge): a stored row could
        # still hold them, so the first answer reads the store
        outside = next(u for u in (f"user-{i}" for i in range(1000)) if traffic_bucket(u, "half-salt") >= 0.5)
        assigner = client.app.state.abcore.assigner  # type: ignore[attr-defined]
        assert not answers_at_once(assigner, outside, "half", None)
        first = client.post("/api/v1/assign", json={"user_id": outside, "experiment": "half"}, headers=default_keys.auth("service"))
        assert first.status_code == 200 and first.json()["assigned"] is False
        assert answers_at_once(assigner, outside, "half", None)  # read as not stored: remembered for cache_ttl


def test_assign_is_answered_without_the_router_and_everything_else_goes_through_it(
    engine: Engine, default_keys: Keys, started: int
) -> None:
    app = create_app(engine, settings=ApiSettings(key_cache_ttl=60.0))
    routed: list[str] = []

    class CountingRouter:  # FastAPI's router, counting the requests that reach it
        def __init__(self, router: Any) -> None:
            self.router = router

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                routed.append(f"{scope['method']} {scope['path']}")
            await self.router(scope, receive, send)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.router, name)

    app.router = CountingRouter(app.router)  # type: ignore[assignment]  # before the first request builds the stack
    body = {"user_id": "u1", "experiment": started}
    service = default_keys.auth("service")
    with TestClient(app) as client:
        assert client.post("/api/v1/assign", json=body, headers=service).json()["assigned"] is True
        # errors are the app's own answers (its exception handlers), as on every route
        unknown = client.post("/api/v1/assign", json={"user_id": "u1", "experiment": 999}, headers=service)
        assert unknown.status_code == 404 and set(unknown.json()) == {"detail", "problems"}
        assert client.post("/api/v1/assign", json=body).headers["www-authenticate"] == "Bearer"
        bad = client.post("/api/v1/assign", json={"user_id": 1}, headers=service)
        assert bad.status_code == 422 and bad.json()["problems"][0].startswith("user_id:")
        # other methods on the path, and the rest of the API, are the router's
        assert client.get("/api/v1/health").status_code == 200
        assert client.post("/api/v1/assign/batch", json={"user_ids": ["u1"], "experiment": started},
                           headers=service).status_code == 200
        wrong = client.get("/api/v1/assign", headers=service)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert routed == ["GET /api/v1/health", "POST /api/v1/assign/batch", "GET /api/v1/assign"]


def test_assign_behind_a_proxy_prefix_and_a_crash_is_a_500(engine: Engine, default_keys: Keys, started: int,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"user_id": "u1", "experiment": started}
    service = default_keys.auth("service")
    with TestClient(create_app(engine), root_path="/abtest") as client:
        assert client.post("/api/v1/assign", json=body, headers=service).json()["assigned"] is True
    app = create_app(engine)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.state.abcore.assigner, "assign", broken)
    monkeypatch.setattr("abcore.api.tracking.answers_at_once", lambda *args: True)
    with TestClient(app, raise_server_exceptions=False) as client:
        crash = client.post("/api/v1/assign", json=body, headers=service)
        assert crash.status_code == 500 and "a bug" not in crash.text


def test_the_server_process_freezes_its_startup_objects_and_hands_the_lock_over_often(sqlite_url: str) -> None:
    # in a process of its own: freezing the garbage collector is for the server, not for this test run
    script = (
        "import gc, sys\n"
        "from fastapi.testclient import TestClient\n"
        "from abcore.api.app import SERVER_SWITCH_INTERVAL, serve_app\n"
        "before = gc.get_freeze_count()\n"
        "with TestClient(serve_app()) as client:\n"
        "    assert client.get('/api/v1/health').status_code == 200\n"
        "    print(before, gc.get_freeze_count() > 10000, sys.getswitchinterval() == SERVER_SWITCH_INTERVAL)\n"
    )
    env = {**os.environ, SETTINGS["database_url"].env: sqlite_url}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert out.stdout.split() == ["0", "True", "True"], out.stderr
