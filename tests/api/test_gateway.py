"""The gateway helper: middleware and dependency set X-Experiment-Id / X-Experiment-Variant.

No ``from __future__ import annotations``: the routes below use a dependency defined inside a function,
which FastAPI can only see in annotations evaluated at definition time.
"""


from collections.abc import Iterator
from typing import Annotated

import mmh3
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore import experiments as ex
from abcore.api.gateway import ExperimentHeaders, experiment_assignment, experiment_headers, user_from_path
from abcore.assign import Assigner, Assignment
from abcore.store.tables import UserAssignment

SALT = "als-popgen-v1"


def expected_variant(user: str) -> str:
    # DESIGN.md's hash, computed here without abcore: mmh3 32-bit unsigned / 2**32, 60/40 split
    return "als_model" if mmh3.hash(f"{SALT}:{user}", 0, signed=False) / 2**32 < 0.6 else "popgen_model"


@pytest.fixture
def assigner(engine: Engine) -> Iterator[Assigner]:
    with Session(engine, expire_on_commit=False) as session:
        data = ex.ExperimentCreate(
            name="als_vs_popgen", salt=SALT,
            variants=[ex.VariantCreate(name="als_model", allocation_pct=60), ex.VariantCreate(name="popgen_model", allocation_pct=40)],
        )
        ex.start_experiment(session=session, ref=ex.create_experiment(session=session, data=data).id)
    client = Assigner(engine)
    yield client
    client.close()


def build_app(assigner: Assigner) -> FastAPI:
    app = FastAPI()
    app.add_middleware(ExperimentHeaders, experiment="als_vs_popgen", user_id=user_from_path("/recommend/"), assigner=assigner)
    als_vs_popgen = experiment_assignment("als_vs_popgen", assigner=assigner)

    @app.get("/recommend/{user_id}")
    def recommend(user_id: str, request: Request) -> dict:
        a = request.state.abcore_assignment
        return {"user_id": user_id, "model": a.variant_name if a else "als_model"}

    @app.get("/v2/recommend/{user_id}")
    def recommend_v2(user_id: str, a: Annotated[Assignment | None, Depends(als_vs_popgen)]) -> dict:
        return {"user_id": user_id, "model": a.variant_name if a else "als_model"}

    @app.get("/v2/home")
    def home(a: Annotated[Assignment | None, Depends(als_vs_popgen)]) -> dict:
        return {"model": a.variant_name if a else None}

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    return app


def test_middleware_and_dependency_set_seed_001_headers(assigner: Assigner, engine: Engine) -> None:
    with TestClient(build_app(assigner)) as client:
        users = [f"user{i}" for i in range(30)]
        for user in users:
            for path in (f"/recommend/{user}", f"/v2/recommend/{user}"):
                response = client.get(path)
                assert response.headers["X-Experiment-Id"] == "als_vs_popgen"
                assert response.headers["X-Experiment-Variant"] == expected_variant(user)
                assert response.json()["model"] == expected_variant(user)
        by_header = client.get("/v2/home", headers={"X-User-Id": "user3"})
        assert by_header.headers["X-Experiment-Variant"] == expected_variant("user3")
        plain = client.get("/health")  # no user id: untouched
        assert "X-Experiment-Id" not in plain.headers and plain.json() == {"ok": True}
        assert "X-Experiment-Id" not in client.get("/v2/home").headers
    assigner.flush()  # rows are written behind the answer (abcore.assign.writer)
    with Session(engine) as session:  # sticky rows were written through abcore.assign
        assert session.execute(select(func.count()).select_from(UserAssignment)).scalar_one() == 30


def test_headers_stay_ascii() -> None:
    a = Assignment(1, "ünï exp", 2, "vär 1", None, None, {}, False, False)
    assert experiment_headers(a) == {"X-Experiment-Id": "%C3%BCn%C3%AF%20exp", "X-Experiment-Variant": "v%C3%A4r%201"}
    assert experiment_headers(None) == {}
