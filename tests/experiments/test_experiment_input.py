"""Hostile experiment input: each case is an ExperimentError naming the field, on both backends, and the
session stays usable. Plus a property-based fuzz of create and of config import:
nothing but the documented exception types ever escapes.

Column limits come from abcore.store.tables: ``min_duration_days``, ``min_samples_per_variant`` and
``ab_experiment_variants.model_id`` are ``INTEGER`` columns (PostgreSQL: 32-bit, max 2**31 - 1).
JSON columns cannot hold NaN or infinities (PostgreSQL's json type refuses the tokens; RFC 8259 has none).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlmodel import Session

from abcore.experiments.errors import ExperimentError
from abcore.experiments.lifecycle import create_experiment, delete_experiment
from abcore.experiments.records import list_experiments
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.io.configs import import_config
from abcore.io.csv_export import ExportError

ROOT = Path(__file__).resolve().parents[2]
NAN, INF = float("nan"), float("inf")


def _variants(**first: Any) -> list[VariantCreate]:
    return [VariantCreate(name="a", allocation_pct=50, **first), VariantCreate(name="b", allocation_pct=50)]


CREATE_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "surrogate in name": ({"name": "bad \ud800 name"}, "name"),
    "surrogate in description": ({"description": "x\udfff"}, "description"),
    "surrogate in hypothesis": ({"hypothesis": "\ud83d"}, "hypothesis"),
    "surrogate in variant name": ({"variants": [VariantCreate(name="a\ud800", allocation_pct=50),
                                                VariantCreate(name="b", allocation_pct=50)]}, "variant name"),
    "surrogate in metric": ({"secondary_metrics": ["m\ud800"]}, "metric"),
    "surrogate in config key": ({"variants": _variants(config={"\ud800": 1})}, "config"),
    "min_samples 2**63": ({"min_samples_per_variant": 2**63}, "min_samples_per_variant"),
    "min_samples 2**31": ({"min_samples_per_variant": 2**31}, "min_samples_per_variant"),
    "min_duration 2**31": ({"min_duration_days": 2**31}, "min_duration_days"),
    "model_id 2**40": ({"variants": _variants(model_id=2**40)}, "model_id"),
    "model_id 0": ({"variants": _variants(model_id=0)}, "model_id"),
    "nan in variant config": ({"variants": _variants(config={"deep": [1, {"x": NAN}]})}, "config"),
    "inf in success criteria": ({"success_criteria": {"threshold": 0.1, "note": INF}}, "success_criteria"),
    "nan threshold": ({"success_criteria": {"threshold": NAN}}, "minimum effect"),
    "nan in targeting": ({"targeting": [{"attribute": "country", "op": "eq", "value": NAN}]}, "targeting"),
    "inf in targeting list": ({"targeting": [{"attribute": "country", "op": "in", "value": ["DE", -INF]}]}, "targeting"),
    "list-valued attribute": ({"targeting": [{"attribute": ["country", "city"], "op": "eq", "value": "DE"}]}, "attribute"),
    "dict-valued attribute": ({"targeting": [{"attribute": {"a": 1}, "op": "in", "value": ["DE"]}]}, "attribute"),
    "list as eq value": ({"targeting": [{"attribute": "country", "op": "eq", "value": ["DE"]}]}, "targeting"),
    "int beyond 64 bits in config": ({"variants": _variants(config={"n": 2**64})}, "config"),
    "deeply nested config": ({"variants": _variants(config={"x": json.loads("[" * 500 + "]" * 500)})}, "config"),
}


def _ok(name: str = "fine") -> ExperimentCreate:
    return ExperimentCreate(name=name, variants=_variants())


@pytest.mark.parametrize("case", list(CREATE_CASES))
def test_hostile_create_is_refused_naming_the_field(session: Session, case: str) -> None:
    fields, field_name = CREATE_CASES[case]
    data = ExperimentCreate(**{"name": "hostile", "variants": _variants(), **fields})
    with pytest.raises(ExperimentError) as info:
        create_experiment(session=session, data=data)
    assert field_name.lower() in str(info.value).lower(), str(info.value)
    assert list_experiments(session=session) == []
    # The session is still usable.
    assert create_experiment(session=session, data=_ok()).id is not None


CONFIG_CASES: dict[str, tuple[Any, str]] = {
    "weights 1e308": ({"experiment_id": "w", "variants": [{"name": "a", "weight": 1e308}, {"name": "b", "weight": 1e308}]},
                      "weight"),
    "weight 10**400": ({"experiment_id": "w", "variants": [{"name": "a", "weight": 10**400}, {"name": "b"}]}, "weight"),
    "weight inf": ({"experiment_id": "w", "variants": [{"name": "a", "weight": INF}, {"name": "b"}]}, "weight"),
    "nan in config": ({"experiment_id": "w", "variants": [{"name": "a", "config": {"q": NAN}}, {"name": "b"}]}, "config"),
    "nan in criteria": ({"experiment_id": "w", "success_criteria": {"confidence": 0.9, "x": [NAN]},
                         "variants": [{"name": "a"}, {"name": "b"}]}, "success_criteria"),
    "min_samples 2**63": ({"experiment_id": "w", "min_samples_per_variant": 2**63,
                           "variants": [{"name": "a"}, {"name": "b"}]}, "min_samples_per_variant"),
    "min_duration 2**31": ({"experiment_id": "w", "min_duration_days": 2**31,
                            "variants": [{"name": "a"}, {"name": "b"}]}, "min_duration_days"),
    "surrogate name": ({"experiment_id": "w\ud800", "variants": [{"name": "a"}, {"name": "b"}]}, "name"),
    "surrogate salt": ({"experiment_id": "w", "salt": "\udc00", "variants": [{"name": "a"}, {"name": "b"}]}, "salt"),
    "list attribute": ({"experiment_id": "w", "targeting": [{"attribute": ["x"], "op": "eq", "value": 1}],
                        "variants": [{"name": "a"}, {"name": "b"}]}, "attribute"),
    "traffic 10**400": ({"experiment_id": "w", "traffic_allocation": 10**400, "variants": [{"name": "a"}, {"name": "b"}]},
                        "traffic_allocation"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_hostile_config_import_is_refused_naming_the_field(session: Session, case: str) -> None:
    config, field_name = CONFIG_CASES[case]
    with pytest.raises((ExperimentError, ExportError)) as info:
        import_config(session=session, data=config)
    assert field_name.lower() in str(info.value).lower(), str(info.value)
    session.rollback()
    assert list_experiments(session=session) == []
    assert import_config(session=session, data={"experiment_id": "fine", "variants": [{"name": "a"}, {"name": "b"}]})


CLI_FILES: dict[str, str] = {
    "nan": '{"experiment_id": "c", "variants": [{"name": "a", "config": {"x": NaN}}, {"name": "b"}]}',
    "infinity weight": '{"experiment_id": "c", "variants": [{"name": "a", "weight": Infinity}, {"name": "b"}]}',
    "1e308": '{"experiment_id": "c", "variants": [{"name": "a", "weight": 1e308}, {"name": "b", "weight": 1e308}]}',
    "2**63": '{"experiment_id": "c", "min_samples_per_variant": 9223372036854775808, "variants": [{"name": "a"}, {"name": "b"}]}',
    "surrogate": '{"experiment_id": "c\\ud800", "variants": [{"name": "a"}, {"name": "b"}]}',
    "5000 digits": '{"experiment_id": "c", "min_duration_days": ' + "9" * 5000 + ', "variants": [{"name": "a"}, {"name": "b"}]}',
    "deep": '{"experiment_id": "c", "variants": [{"name": "a", "config": {"x": ' + "[" * 100_000 + "]" * 100_000 + '}}, {"name": "b"}]}',
    "min_duration 2**31": '{"experiment_id": "c", "min_duration_days": 2147483648, "variants": [{"name": "a"}, {"name": "b"}]}',
}


@pytest.mark.parametrize("case", list(CLI_FILES))
def test_cli_config_import_prints_one_error_line(sqlite_url: str, tmp_path: Path, case: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(CLI_FILES[case], encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "abcore", "--database-url", sqlite_url, "config", "import", str(path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert len(lines[0]) < 1000


# --------------------------------------------------------------------------- property-based fuzz

_ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=30)  # includes lone surrogates
_NUMBERS = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True))
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), _NUMBERS, _ANY_TEXT),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(_ANY_TEXT, children, max_size=3)),
    max_leaves=8,
)
_RULE = st.dictionaries(st.sampled_from(["attribute", "op", "value"]), st.one_of(_JSON, st.sampled_from(
    ["eq", "neq", "in", "not_in", "gt", "lte", "user_ids"])), max_size=3)
_VARIANT = st.fixed_dictionaries(
    {"name": _ANY_TEXT, "allocation_pct": _NUMBERS},
    optional={"model_id": st.one_of(st.none(), st.integers()), "config": st.dictionaries(_ANY_TEXT, _JSON, max_size=2),
              "is_control": st.booleans()},
)
_CREATE = st.fixed_dictionaries(
    {"name": _ANY_TEXT, "variants": st.lists(_VARIANT, max_size=3)},
    optional={
        "description": _ANY_TEXT, "hypothesis": _ANY_TEXT, "traffic_allocation": _NUMBERS,
        "targeting": st.lists(_RULE, max_size=2), "primary_metric": _ANY_TEXT,
        "secondary_metrics": st.lists(_ANY_TEXT, max_size=2), "success_criteria": st.dictionaries(
            st.sampled_from(["direction", "threshold", "confidence", "other"]), _JSON, max_size=3),
        "min_duration_days": st.integers(), "min_samples_per_variant": st.integers(), "salt": _ANY_TEXT,
    },
)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


def _cleanup(session: Session) -> None:
    session.rollback()
    for exp in list_experiments(session=session):
        delete_experiment(session=session, ref=exp.id)


@FUZZ
@given(fields=_CREATE)
def test_fuzz_create_experiment_raises_only_experiment_error(session: Session, fields: dict[str, Any]) -> None:
    try:
        data = ExperimentCreate(**{**fields, "variants": [VariantCreate(**v) for v in fields["variants"]]})
    except ValidationError:  # pydantic refuses the shape itself (documented: ExperimentCreate is a pydantic model)
        return
    with contextlib.suppress(ExperimentError):
        create_experiment(session=session, data=data)
    _cleanup(session)
    create_experiment(session=session, data=_ok("after-fuzz"))  # the session is still usable
    _cleanup(session)


_CONFIG = st.fixed_dictionaries(
    {"experiment_id": st.one_of(_ANY_TEXT, st.integers()),
     "variants": st.lists(st.fixed_dictionaries({"name": _ANY_TEXT}, optional={
         "weight": _JSON, "config": _JSON, "is_control": _JSON, "model_id": _JSON}), max_size=3)},
    optional={"salt": _JSON, "description": _JSON, "targeting": _JSON, "success_criteria": _JSON,
              "traffic_allocation": _JSON, "min_duration_days": _JSON, "min_samples_per_variant": _JSON,
              "secondary_metrics": _JSON},
)


@FUZZ
@given(config=st.one_of(_CONFIG, _JSON))
def test_fuzz_config_import_raises_only_documented_errors(session: Session, config: Any) -> None:
    with contextlib.suppress(ExperimentError, ExportError):
        import_config(session=session, data=config)
    _cleanup(session)
    import_config(session=session, data={"experiment_id": "after-fuzz", "variants": [{"name": "a"}, {"name": "b"}]})
    _cleanup(session)


def test_cli_refs_with_undecodable_bytes_give_one_error_line(sqlite_url: str) -> None:
    # A name of raw bytes that are not UTF-8 reaches Python as lone surrogates (surrogateescape).
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"abcore", b"--database-url", sqlite_url.encode(), b"start", b"bad\xff"],
        capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), lines
