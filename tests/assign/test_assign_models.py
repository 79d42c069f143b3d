"""The model a variant serves reaches the caller whole: ``Assignment.model_version`` and ``model_config`` (the
registry's ``ab_models`` row, read when definitions load). The HTTP answer: tests/api/test_assign_models_http.py."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore import experiments as ex
from abcore.assign import Assigner
from abcore.experiments.ml_models import create_model, update_model
from tests.factories import make_experiment

ALS_CONFIG = {"factors": 64, "reg": 0.01}


def experiment_serving_a_model(engine: Engine, name: str = "models_served") -> int:
    """control (no model, config {"boost": 1}) / treatment (als 2.1, config {"reg": 0.02}), running."""
    with Session(engine, expire_on_commit=False) as session:
        als = create_model(session=session, name="als", version="2.1", config=ALS_CONFIG)
    variants = [ex.VariantCreate(name="control", allocation_pct=50, config={"boost": 1}, is_control=True),
                ex.VariantCreate(name="treatment", allocation_pct=50, model_id=als.id, config={"reg": 0.02})]
    return int(make_experiment(engine, name, variants, salt="models-salt").id)


def _users_of(assigner: Assigner, name: str) -> dict[str, str]:
    """A user id served by each variant (the hash decides who lands where)."""
    found: dict[str, str] = {}
    for i in range(200):
        a = assigner.assign(f"user-{i}", name, expose=False)
        assert a is not None
        found.setdefault(a.variant_name, f"user-{i}")
    return found


def test_assignment_carries_the_model_version_and_config(engine: Engine, assigner: Assigner) -> None:
    experiment_serving_a_model(engine)
    users = _users_of(assigner, "models_served")
    treated = assigner.assign(users["treatment"], "models_served")
    assert treated is not None
    assert (treated.model_name, treated.model_version) == ("als", "2.1")
    assert treated.model_config == ALS_CONFIG and treated.config == {"reg": 0.02}
    assert {**treated.model_config, **treated.config} == {"factors": 64, "reg": 0.02}  # the documented combination
    with pytest.raises(TypeError, match="read-only"):
        treated.model_config["factors"] = 8  # type: ignore[index]
    control = assigner.assign(users["control"], "models_served")
    assert control is not None
    assert (control.model_id, control.model_name, control.model_version, control.model_config) == (None, None, None, {})
    many = assigner.assign_many([users["treatment"], users["control"]], "models_served", persist=False)
    assert [(a.model_version, a.model_config) for a in many if a is not None] == [("2.1", ALS_CONFIG), (None, {})]


def test_a_changed_model_config_is_served_after_the_next_reload(engine: Engine, assigner: Assigner) -> None:
    experiment_serving_a_model(engine)
    user = _users_of(assigner, "models_served")["treatment"]
    first = assigner.assign(user, "models_served", expose=False)
    assert first is not None and first.model_id is not None
    with Session(engine) as session:
        update_model(session=session, model_id=first.model_id, config={"factors": 128})
    assigner.refresh()
    again = assigner.assign(user, "models_served", expose=False)
    assert again is not None and again.model_config == {"factors": 128} and again.model_version == "2.1"
