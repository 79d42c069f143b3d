"""The quick check of flat objects agrees with the full walk of ``json_value_problem``."""

from __future__ import annotations

import math

import pytest

from abcore.store import values
from abcore.store.values import JSON_INT_LIMIT, is_plain_json_object, json_value_problem


@pytest.mark.parametrize("value", [
    {}, {"country": "DE", "age": 31, "score": 0.5, "new": True, "plan": None},
    {"n": JSON_INT_LIMIT - 1}, {"n": -JSON_INT_LIMIT},
])
def test_plain_objects_are_storable(value: dict) -> None:
    assert is_plain_json_object(value)
    assert json_value_problem("attributes object", value) is None


@pytest.mark.parametrize("value", [
    {"x": math.nan}, {"x": math.inf}, {"x": JSON_INT_LIMIT}, {"x": "\udc00"}, {"\udc00": 1}, {1: "a"},
    {"x": [1, 2]}, {"x": {"y": 1}}, {"país": "ES"}, {"x": "müde"}, {"x": object()}, [1], "text",
])
def test_anything_else_takes_the_full_walk(value: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # Not plain: the answer is the full walk's, the same with the quick check switched off.
    assert not is_plain_json_object(value)
    with_quick = json_value_problem("attributes object", value)
    monkeypatch.setattr(values, "is_plain_json_object", lambda _value: False)
    assert json_value_problem("attributes object", value) == with_quick
