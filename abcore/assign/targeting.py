"""Targeting rules: who may enter an experiment (pure: no I/O, no store).

A rule is ``{"attribute": name, "op": operator, "value": value}`` (``user_ids`` needs no attribute);
an experiment's rules are ANDed. :func:`validate_targeting` says what is wrong with rules before they are
stored, :func:`evaluate_targeting` decides for one user on the request path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from abcore.store.values import is_number, json_value_problem

TARGETING_OPS = ("eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "user_ids")


def validate_targeting(rules: Any) -> list[str]:
    """Readable problems with a list of targeting rules ([] when every rule is well formed)."""
    if not isinstance(rules, list):
        return ["Targeting rules must be a list."]
    problems: list[str] = []
    for index, rule in enumerate(rules, start=1):
        if not isinstance(rule, Mapping):
            problems.append(f"Targeting rule {index} must be an object.")
            continue
        op = rule.get("op")
        value = rule.get("value")
        if op not in TARGETING_OPS:
            problems.append(f"Targeting rule {index}: unknown operator {op!r} (use one of {', '.join(TARGETING_OPS)}).")
            continue
        attribute = rule.get("attribute")
        if op != "user_ids" and attribute is not None and not isinstance(attribute, str):
            problems.append(
                f"Targeting rule {index}: the attribute name must be text, got {type(attribute).__name__}."
            )
            continue
        if op != "user_ids" and not str(attribute or "").strip():
            problems.append(f"Targeting rule {index}: the attribute name is missing.")
        if op in ("eq", "neq") and isinstance(value, list | Mapping):
            problems.append(f"Targeting rule {index}: '{op}' compares with one value, got {type(value).__name__}.")
        if op in ("in", "not_in", "user_ids") and isinstance(value, list) and any(
            isinstance(v, list | Mapping) for v in value
        ):
            problems.append(f"Targeting rule {index}: the values of '{op}' must be single values, not lists or objects.")
        json_problem = json_value_problem(f"targeting rule {index}", dict(rule))
        if json_problem:
            problems.append(json_problem)
        if op in ("in", "not_in", "user_ids") and not (isinstance(value, list) and value):
            problems.append(f"Targeting rule {index}: '{op}' needs a non-empty list of values.")
        if op in ("gt", "gte", "lt", "lte") and not is_number(value):
            problems.append(f"Targeting rule {index}: '{op}' needs a number, got {value!r}.")
    return problems


def evaluate_targeting(rules: Sequence[Mapping[str, Any]], user_id: str, attributes: Mapping[str, Any] | None) -> bool:
    """True when the user passes every rule (rules are ANDed; no rules: everyone is eligible).

    Operators: ``eq``/``neq`` (attribute equals / differs), ``in``/``not_in`` (attribute in a list),
    ``gt``/``gte``/``lt``/``lte`` (numeric comparison; a missing or non-numeric attribute fails it),
    ``user_ids`` (the user id is in an explicit list). A missing attribute fails ``eq``, ``in`` and the
    comparisons and passes ``neq`` and ``not_in``. Values are compared as given, except that numbers
    and numeric strings compare as numbers in the comparisons.
    """
    attributes = attributes or {}
    for rule in rules:
        op = rule.get("op")
        value = rule.get("value")
        if op == "user_ids":
            if user_id not in {str(v) for v in value or ()}:
                return False
            continue
        present = rule.get("attribute") in attributes
        actual = attributes.get(rule.get("attribute"))
        if op == "eq":
            ok = present and _loose_equal(actual, value)
        elif op == "neq":
            ok = not (present and _loose_equal(actual, value))
        elif op == "in":
            ok = present and any(_loose_equal(actual, v) for v in value or ())
        elif op == "not_in":
            ok = not (present and any(_loose_equal(actual, v) for v in value or ()))
        elif op in ("gt", "gte", "lt", "lte"):
            left, right = _as_float(actual), _as_float(value)
            if left is None or right is None:
                ok = False
            else:
                ok = {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]
        else:
            ok = False  # an unknown operator never admits anyone
        if not ok:
            return False
    return True


def _loose_equal(actual: Any, expected: Any) -> bool:
    if actual == expected:
        return True
    left, right = _as_float(actual), _as_float(expected)
    if left is not None and right is not None:
        return left == right
    return str(actual) == str(expected)


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
