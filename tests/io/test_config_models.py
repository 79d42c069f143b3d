"""Config export / import keeps each variant's model link (name + version, resolved on import)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session

from abcore.experiments.errors import ExperimentError
from abcore.experiments.lifecycle import create_experiment
from abcore.experiments.ml_models import create_model, get_model
from abcore.experiments.records import get_variants
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.io.configs import dump_configs, export_config, import_config
from abcore.store.db import init_db, make_engine


def _other_store(tmp_path: Path) -> Session:
    engine = init_db(make_engine(f"sqlite:///{tmp_path / 'target.db'}"))
    return Session(engine, expire_on_commit=False)


def test_model_links_survive_an_export_and_import_into_another_store(session: Session, tmp_path: Path) -> None:
    als = create_model(session=session, name="als", version="1.2", config={"factors": 64})
    two_tower = create_model(session=session, name="two-tower", version="7")
    exp = create_experiment(session=session, data=ExperimentCreate(name="models travel", variants=[
        VariantCreate(name="control", allocation_pct=50, model_id=als.id, is_control=True),
        VariantCreate(name="tower", allocation_pct=30, model_id=two_tower.id),
        VariantCreate(name="plain", allocation_pct=20),
    ]))
    exported = export_config(session=session, experiment=exp.id)
    assert [v.get("model") for v in exported["variants"]] == [
        {"name": "als", "version": "1.2"}, {"name": "two-tower", "version": "7"}, None]
    text = dump_configs([exported])
    with _other_store(tmp_path) as target:
        # other ids in the target store: an unrelated model first shifts them
        create_model(session=target, name="unrelated")
        tower_there = create_model(session=target, name="two-tower", version="7")
        als_there = create_model(session=target, name="als", version="1.2")
        (copy,) = import_config(session=target, data=json.loads(text))
        variants = get_variants(session=target, experiment_id=copy.id)
        assert [v.model_id for v in variants] == [als_there.id, tower_there.id, None]
        assert als_there.id != als.id
        again = export_config(session=target, experiment=copy.id)
        assert again["variants"] == exported["variants"]
        assert get_model(session=target, model_id=variants[0].model_id).name == "als"


def test_a_missing_model_is_a_clear_error_and_nothing_is_created(session: Session, tmp_path: Path) -> None:
    als = create_model(session=session, name="als", version="2")
    exp = create_experiment(session=session, data=ExperimentCreate(name="needs als", variants=[
        VariantCreate(name="control", allocation_pct=50, model_id=als.id),
        VariantCreate(name="treatment", allocation_pct=50),
    ]))
    exported = export_config(session=session, experiment=exp.id)
    bad = {**exported, "experiment_id": "bad ref", "variants": [
        {**exported["variants"][0], "model": "als"}, exported["variants"][1]]}
    with _other_store(tmp_path) as target:
        with pytest.raises(ExperimentError) as missing:
            import_config(session=target, data=exported)
        assert "variant 'control': the model 'als' version '2' is not registered" in str(missing.value)
        assert "Models page" in str(missing.value)
        create_model(session=target, name="als", version="1")
        with pytest.raises(ExperimentError, match=r"registered versions: 1"):
            import_config(session=target, data=exported)
        with pytest.raises(ExperimentError, match="'model' must be an object"):
            import_config(session=target, data=bad)
        from abcore.experiments.records import list_experiments

        assert list_experiments(session=target) == []
