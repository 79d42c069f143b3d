"""The shape rules of the HTTP API, pinned by walking the app's routes and its OpenAPI document.

* Offline docs: ``/docs`` and ``/redoc`` reference only same-origin URLs, and those answer 200 with the assets.
* One name for the experiment in request bodies: ``experiment`` (``experiment_id`` only as a deprecated alias).
* 201 for every call that stores new rows (create an experiment, conversions, events), 200 for the others.
* A 405 carries an ``Allow`` listing every method served on the path.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conftest import Keys


@pytest.fixture
def running(client: TestClient, keys: Keys) -> int:
    """A running experiment (id) with two variants."""
    body = {"name": "exp", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}
    created = client.post("/api/v1/experiments", json=body, headers=keys.auth("editor")).json()
    client.put(f"/api/v1/experiments/{created['id']}/status", json={"status": "running"}, headers=keys.auth("editor"))
    return int(created["id"])


#: The operations that store new rows, and so answer 201 Created; every other one answers 200.
CREATES = {
    ("POST", "/api/v1/experiments"),
    ("POST", "/api/v1/experiments/conversions"),
    ("POST", "/api/v1/events"),
    ("POST", "/api/v1/layers"),
}


class _Refs(HTMLParser):
    """Every ``src`` / ``href`` attribute and every quoted URL in inline scripts of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.urls += re.findall(r"""(?:url|src|href)\s*:\s*['"]([^'"]+)['"]""", data)


@pytest.mark.parametrize(("page", "assets"), [
    ("/docs", {"swagger-ui-bundle.js": "javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}),
    ("/redoc", {"redoc.standalone.js": "javascript", "favicon.png": "image/png"}),
])
def test_docs_pages_need_no_internet(client: TestClient, page: str, assets: dict[str, str]) -> None:
    html = client.get(page)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    refs = _Refs()
    refs.feed(html.text)
    assert refs.urls, "the page references its assets"
    assert not re.search(r"https?://", html.text), "no absolute URL (CDN, fonts) in the page"
    for url in refs.urls:
        assert url.startswith("/") and not url.startswith("//"), f"{url} is not same-origin"
        answer = client.get(url)
        assert answer.status_code == 200, url
    found = {url.rsplit("/", 1)[-1]: url for url in refs.urls}
    for name, kind in assets.items():
        answer = client.get(found[name])
        assert kind in answer.headers["content-type"] and len(answer.content) > 1000, name
    assert "/openapi.json" in refs.urls or "/openapi.json" in html.text
    assert client.get("/openapi.json").status_code == 200


def test_docs_honour_a_proxy_prefix(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "/api-docs-assets/swagger-ui-bundle.js" in html
    prefixed = TestClient(client.app, root_path="/abc").get("/docs").text
    assert "/abc/api-docs-assets/swagger-ui-bundle.js" in prefixed and "/abc/openapi.json" in prefixed


def _operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    schema = client.get("/openapi.json").json()
    return [(method.upper(), path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


def _body_schema(schema: dict[str, Any], op: dict[str, Any]) -> dict[str, Any] | None:
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    while body and "$ref" in body:
        body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    return body


def _properties(schema: dict[str, Any], node: Any) -> set[str]:
    """Every property name reachable from ``node`` (following references, arrays and unions)."""
    names: set[str] = set()
    pending, seen = [node], set()
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if ref and ref not in seen:
                seen.add(ref)
                pending.append(schema["components"]["schemas"][ref.rsplit("/", 1)[-1]])
            names.update(item.get("properties", {}))
            pending += list(item.get("properties", {}).values()) + [v for k, v in item.items() if k != "properties"]
        elif isinstance(item, list):
            pending += item
    return names


def test_one_name_for_the_experiment_in_request_bodies(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    with_experiment = []
    for method, path, op in _operations(client):
        body = _body_schema(schema, op)
        if body is None:
            continue
        names = _properties(schema, body)
        assert "experiment_id" not in names, f"{method} {path}: the body says experiment_id, not experiment"
        if "experiment" in names:
            with_experiment.append(path)
    assert sorted(with_experiment) == sorted([
        "/api/v1/assign", "/api/v1/assign/batch", "/api/v1/experiments/conversions", "/api/v1/events",
    ])


def test_the_deprecated_alias_is_still_accepted_but_not_with_the_new_name(client: TestClient, keys: Keys, running: int) -> None:
    service = keys.auth("service")
    client.post("/api/v1/assign", json={"user_id": "u1", "experiment": running}, headers=service)
    old = client.post("/api/v1/experiments/conversions", json={"experiment_id": running, "user_id": "u1", "metric_name": "m"},
                      headers=service)
    new = client.post("/api/v1/experiments/conversions", json={"experiment": running, "user_id": "u1", "metric_name": "m"},
                      headers=service)
    assert old.status_code == new.status_code == 201 and old.json() == new.json()
    both = client.post("/api/v1/experiments/conversions", headers=service,
                       json={"experiment": running, "experiment_id": running, "user_id": "u1", "metric_name": "m"})
    assert both.status_code == 422 and "not both" in both.json()["detail"]


def test_201_for_calls_that_store_rows_and_200_otherwise(client: TestClient) -> None:
    operations = _operations(client)
    assert {(m, p) for m, p, _ in operations} >= CREATES
    for method, path, op in operations:
        success = sorted(code for code in op["responses"] if code.startswith("2"))
        if (method, path) in CREATES:
            assert "201" in success, f"{method} {path} stores rows: 201"
        else:
            assert success == ["200"], f"{method} {path} stores no new row: 200, not {success}"


def test_events_answer_200_when_nothing_was_stored(client: TestClient, keys: Keys, running: int) -> None:
    refused = client.post("/api/v1/events", headers=keys.auth("service"),
                          json={"events": [{"experiment": running, "user_id": "never-assigned", "metric_name": "m"}]})
    assert refused.status_code == 200 and refused.json()["recorded"] == 0


def _served(client: TestClient) -> dict[str, set[str]]:
    """Path template -> the methods served on it: the OpenAPI document's operations and the docs pages."""
    methods: dict[str, set[str]] = {page: {"GET", "HEAD"} for page in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")}
    for method, path, _op in _operations(client):
        methods.setdefault(path, set()).add(method)
    return methods


def test_405_lists_every_method_the_path_serves(client: TestClient, keys: Keys) -> None:
    served = _served(client)
    assert served["/api/v1/experiments"] == {"GET", "POST"}
    for template, methods in served.items():
        path = template.replace("{ref}", "1")
        for method in sorted({"GET", "POST", "PUT", "DELETE", "PATCH"} - methods):
            answer = client.request(method, path, headers=keys.auth("editor"))
            if answer.status_code != 405:  # another route serves this method on the concrete path
                assert path == "/api/v1/experiments/conversions" and method == "GET", (method, path)
                continue
            allowed = set(answer.headers["allow"].split(", "))
            expected = set().union(*(m for t, m in served.items() if re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", t), path)))
            assert allowed == expected, (method, path, allowed)
            assert answer.json()["detail"].startswith(f"{method} is not allowed")
    assets = client.post("/api-docs-assets/swagger-ui.css")
    assert assets.status_code == 405 and assets.headers["allow"] == "GET, HEAD"
