"""Experiment management: create and validate experiments, and the lifecycle state machine.

Every lifecycle change is one atomic ``UPDATE ... WHERE status = <expected>``, so two
people pressing Start on the same draft at once end with one start and one clear
:class:`InvalidTransition`. Every change writes a row to ``ab_audit_log``.
Functions take the session as a keyword argument and commit their work.

Lifecycle::

    draft --start--> running --pause--> paused --resume--> running
      |                 |                  |
      |                 +------stop--------+-----> completed --ship--> completed (winner, rollout %)
      +--delete (gone)  +------cancel------+-----> cancelled
      +--cancel-------------------------------> cancelled
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field as PydanticField
from pydantic import ValidationError
from sqlalchemy import delete, update
from sqlalchemy import update as update_statement
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, SQLModel, col, select

from abcore.errors import Conflict, Invalid, NotFound
from abcore.store.tables import AuditLog, Experiment, ExperimentStatus, Model, Setting, Variant, utcnow

MAX_NAME_LENGTH = 200
ALLOCATION_TOLERANCE = 1e-6
TARGETING_OPS = ("eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "user_ids")
DIRECTIONS = ("increase", "decrease")
# Limits of the store's columns (abcore.store.tables): INTEGER is 32-bit on PostgreSQL.
INT32_MAX = 2**31 - 1
# JSON fields (variant config, targeting, success criteria): how deep they may nest, and the integer range
# kept exactly by every consumer (SQLite's JSON functions and most JSON readers stop at 64 bits).
JSON_MAX_DEPTH = 32
JSON_INT_LIMIT = 2**63

# Automated stopping rules (abcore.watch.runner): the contract of ``ExperimentCreate.auto_stop``.
AUTO_STOP_CHOICES: dict[str, tuple[str, ...]] = {
    "guardrails": ("pause", "stop", "alert", "off"),  # a guardrail significantly worse in its bad direction
    "success": ("stop", "alert", "off"),  # the primary metric reached a decision
    "srm": ("pause", "alert", "off"),  # sample ratio mismatch
}
AUTO_STOP_LIMITS: tuple[str, ...] = ("max_days", "max_users", "min_days", "min_users")
#: What a key left out of a non-empty ``auto_stop`` means.
AUTO_STOP_DEFAULTS: dict[str, Any] = {
    "guardrails": "pause",
    "success": "alert",
    "srm": "alert",
    "max_days": None,
    "max_users": None,
    "min_days": 0,
    "min_users": 0,
}

# action -> (statuses it applies to, resulting status); "ship" and "delete" are handled apart.
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "start": ((ExperimentStatus.DRAFT,), ExperimentStatus.RUNNING),
    "pause": ((ExperimentStatus.RUNNING,), ExperimentStatus.PAUSED),
    "resume": ((ExperimentStatus.PAUSED,), ExperimentStatus.RUNNING),
    "stop": ((ExperimentStatus.RUNNING, ExperimentStatus.PAUSED), ExperimentStatus.COMPLETED),
    "cancel": (
        (ExperimentStatus.DRAFT, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED),
        ExperimentStatus.CANCELLED,
    ),
}
_ACTIONS_BY_STATUS: dict[str, list[str]] = {
    ExperimentStatus.DRAFT: ["start", "delete", "cancel"],
    ExperimentStatus.RUNNING: ["pause", "stop", "cancel"],
    ExperimentStatus.PAUSED: ["resume", "stop", "cancel"],
    ExperimentStatus.COMPLETED: ["ship"],
    ExperimentStatus.CANCELLED: [],
}


class ExperimentError(Invalid, ValueError):
    """A request abcore refuses; the message is meant for the person who made it."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


class ExperimentNotFound(ExperimentError, NotFound):
    """No experiment has that id or name."""


class InvalidTransition(ExperimentError, Conflict):
    """The lifecycle action is not allowed from the experiment's current status."""


class ApprovalRequired(InvalidTransition):
    """The store requires an approval before a draft starts, and this draft has none for its configuration."""


class VariantCreate(SQLModel):
    """One arm as entered in the creation form."""

    name: str
    allocation_pct: float
    model_id: int | None = None
    config: dict[str, Any] = PydanticField(default_factory=dict)
    is_control: bool = False


class ExperimentCreate(SQLModel):
    """Everything needed to create a draft experiment."""

    name: str
    description: str = ""
    hypothesis: str = ""
    variants: list[VariantCreate] = PydanticField(default_factory=list)
    traffic_allocation: float = 1.0
    targeting: list[dict[str, Any]] = PydanticField(default_factory=list)
    primary_metric: str = "conversion"
    secondary_metrics: list[str] = PydanticField(default_factory=list)
    guardrail_metrics: list[str] = PydanticField(default_factory=list)
    success_criteria: dict[str, Any] = PydanticField(default_factory=dict)
    min_duration_days: int = 0
    min_samples_per_variant: int = 0
    salt: str | None = None
    created_by: str = ""
    # Stopping rules for abcore.watch.runner ({} = not watched); see validate_auto_stop for the keys.
    auto_stop: dict[str, Any] = PydanticField(default_factory=dict)


def allowed_actions(status: str) -> list[str]:
    """The lifecycle actions offered for an experiment in ``status`` (unknown status: none)."""
    return list(_ACTIONS_BY_STATUS.get(status, []))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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
        if op in ("gt", "gte", "lt", "lte") and not _is_number(value):
            problems.append(f"Targeting rule {index}: '{op}' needs a number, got {value!r}.")
    return problems


def validate_auto_stop(rules: Any) -> list[str]:
    """Readable problems with an ``auto_stop`` mapping ([] when it is well formed; {} means "not watched").

    Keys: ``guardrails`` (pause | stop | alert | off), ``success`` (stop | alert | off), ``srm``
    (pause | alert | off), ``max_days`` (a positive number of days or null), ``max_users`` (a positive
    whole number of exposed users or null), ``min_days`` / ``min_users`` (>= 0: no significance-based
    action or alert before both are reached). Unknown keys are refused (a typo must not disable a rule).
    """
    if rules is None:
        return []
    if not isinstance(rules, Mapping):
        return ["The stopping rules must be an object (e.g. {\"guardrails\": \"pause\"})."]
    problems: list[str] = []
    known = (*AUTO_STOP_CHOICES, *AUTO_STOP_LIMITS)
    unknown = sorted(str(k) for k in rules if k not in known)
    if unknown:
        problems.append(f"Unknown stopping rule(s): {', '.join(unknown)} (known: {', '.join(known)}).")
    for key, choices in AUTO_STOP_CHOICES.items():
        if key in rules and rules[key] not in choices:
            problems.append(f"Stopping rule {key!r} must be one of {', '.join(choices)}; got {rules[key]!r}.")
    for key in AUTO_STOP_LIMITS:
        if key not in rules or (rules[key] is None and key.startswith("max_")):
            continue
        value = rules[key]
        whole = key.endswith("_users")
        if not _is_number(value) or (whole and float(value) != int(value)):
            kind = "a whole number of users" if whole else "a number of days"
            problems.append(f"Stopping rule {key!r} must be {kind}; got {value!r}.")
        elif key.startswith("max_") and value <= 0:
            problems.append(f"Stopping rule {key!r} must be more than 0 (or null for no limit); got {value!r}.")
        elif key.startswith("min_") and value < 0:
            problems.append(f"Stopping rule {key!r} cannot be negative; got {value!r}.")
    if not problems and rules:
        merged = normalize_auto_stop(rules)
        for unit in ("days", "users"):
            low, high = merged[f"min_{unit}"], merged[f"max_{unit}"]
            if high is not None and low > high:
                problems.append(f"min_{unit} ({low:g}) is larger than max_{unit} ({high:g}).")
    return problems


def normalize_auto_stop(rules: Mapping[str, Any] | None) -> dict[str, Any]:
    """``rules`` with every key present (defaults from :data:`AUTO_STOP_DEFAULTS`); {} / None stay {}.

    Whole-number limits become ints, day limits floats. Assumes :func:`validate_auto_stop` passed.
    """
    if not rules:
        return {}
    merged = {**AUTO_STOP_DEFAULTS, **dict(rules)}
    for key in AUTO_STOP_LIMITS:
        value = merged[key]
        if value is not None:
            merged[key] = int(value) if key.endswith("_users") else float(value)
    return merged


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


def has_lone_surrogate(text: str) -> bool:
    """True when ``text`` holds a lone UTF-16 surrogate (U+D800-U+DFFF), which no UTF-8 store can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def json_value_problem(label: str, value: Any) -> str | None:
    """Why ``value`` cannot be stored as JSON under ``label`` (None when it can).

    Refused: NaN and infinities (RFC 8259 has no such numbers; PostgreSQL's json type refuses them),
    integers beyond 64 bits, lone surrogates in keys or strings, nesting deeper than
    :data:`JSON_MAX_DEPTH`, keys that are not text, and values that are not JSON at all.
    The walk is iterative, so hostile nesting never exhausts the stack.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > JSON_MAX_DEPTH:
            return f"The {label} is nested more than {JSON_MAX_DEPTH} levels deep."
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not -JSON_INT_LIMIT <= item < JSON_INT_LIMIT:
                return f"The {label} holds an integer beyond 64 bits."
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"The {label} holds {item!r}; JSON numbers must be finite."
        elif isinstance(item, str):
            if has_lone_surrogate(item):
                return f"The {label} holds text with a lone surrogate (invalid Unicode)."
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"The {label} has a key that is not text ({type(key).__name__})."
                if has_lone_surrogate(key):
                    return f"The {label} has a key with a lone surrogate (invalid Unicode)."
                stack.append((child, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
        else:
            return f"The {label} holds a {type(item).__name__}, which is not a JSON value."
    return None


def _text_problems(label: str, value: str, max_length: int | None = MAX_NAME_LENGTH) -> list[str]:
    """Problems with a short text field: NUL characters (PostgreSQL refuses them), lone surrogates
    (no UTF-8 store holds them) and overlong values."""
    problems = []
    if "\x00" in value:
        problems.append(f"The {label} contains a NUL character.")
    if has_lone_surrogate(value):
        problems.append(f"The {label} contains a lone surrogate (invalid Unicode).")
    if max_length is not None and len(value.strip()) > max_length:
        problems.append(f"The {label} is {len(value.strip()):,} characters long; at most {max_length} are allowed.")
    return problems


def _check_actor(actor: str) -> None:
    problems = _text_problems("actor name", actor)
    if problems:
        raise ExperimentError(" ".join(problems), problems)


def validate_experiment(
    data: ExperimentCreate, *, session: Session | None = None, existing_id: int | None = None
) -> list[str]:
    """Readable problems with ``data``; an empty list means it can be created.

    ``existing_id``: the experiment ``data`` describes after an edit (its own name is not a duplicate).
    Checks: a non-empty name (unique in the store when a session is given), at least two
    variants with unique non-empty names, allocations that are finite, non-negative and
    sum to exactly 100, at most one control, known models, a traffic share in (0, 1],
    well-formed targeting rules, success criteria and minimums.
    """
    problems: list[str] = []
    name = (data.name or "").strip()
    name_problems = _text_problems("name", name)
    if not name:
        problems.append("The experiment needs a name.")
    elif name_problems:
        problems.extend(name_problems)
    elif session is not None and session.exec(
        select(Experiment.id).where(Experiment.name == name, col(Experiment.id) != (existing_id or -1))
    ).first():
        problems.append(f"An experiment named {name!r} already exists.")

    variants = data.variants
    if len(variants) < 2:
        problems.append("An experiment needs at least two variants.")
    names = [(v.name or "").strip() for v in variants]
    if any(not n for n in names):
        problems.append("Every variant needs a name.")
    if any(len(n) > MAX_NAME_LENGTH for n in names):
        problems.append(f"Variant names can be at most {MAX_NAME_LENGTH} characters long.")
    if any("\x00" in n for n in names):
        problems.append("Variant names cannot contain NUL characters.")
    if any(has_lone_surrogate(n) for n in names):
        problems.append("A variant name contains a lone surrogate (invalid Unicode).")
    for v, n in zip(variants, names, strict=True):
        config_problem = json_value_problem(f"config of variant {n[:80]!r}", v.config)
        if config_problem:
            problems.append(config_problem)
    duplicates = sorted({n for n in names if n and names.count(n) > 1})
    if duplicates:
        problems.append(f"Variant names must be unique: {', '.join(duplicates)} appears more than once.")
    allocations = [v.allocation_pct for v in variants]
    if not all(_is_number(a) for a in allocations):
        problems.append("Every allocation must be a finite number.")
    elif any(a < 0 for a in allocations):
        problems.append("Allocations cannot be negative.")
    elif variants and abs(sum(allocations) - 100.0) > ALLOCATION_TOLERANCE:
        problems.append(f"Allocations must sum to exactly 100 %; they sum to {sum(allocations):g} %.")
    if sum(1 for v in variants if v.is_control) > 1:
        problems.append("Only one variant can be the control.")
    model_ids = {v.model_id for v in variants if v.model_id is not None}
    out_of_range = sorted(m for m in model_ids if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= INT32_MAX)
    if out_of_range:
        problems.append(f"A variant's model_id must be a model's id (1 to {INT32_MAX:,}); got {out_of_range[0]!r}.")
        model_ids -= set(out_of_range)
    if session is not None and model_ids:
        known = set(session.exec(select(Model.id).where(col(Model.id).in_(model_ids))).all())
        missing = sorted(model_ids - known)
        if missing:
            problems.append(f"Unknown model id(s): {', '.join(map(str, missing))}.")

    if not _is_number(data.traffic_allocation) or not 0 < data.traffic_allocation <= 1:
        problems.append("The traffic share must be more than 0 % and at most 100 %.")
    problems.extend(validate_targeting(data.targeting))
    if not (data.primary_metric or "").strip():
        problems.append("The experiment needs a primary metric.")
    texts = [
        ("primary metric", data.primary_metric or "", MAX_NAME_LENGTH),
        ("salt", data.salt or "", MAX_NAME_LENGTH),
        ("creator name", data.created_by or "", MAX_NAME_LENGTH),
        ("description", data.description or "", None),
        ("hypothesis", data.hypothesis or "", None),
    ]
    texts += [("metric name", m, MAX_NAME_LENGTH) for m in [*data.secondary_metrics, *data.guardrail_metrics]]
    for label, value, max_length in texts:
        problems.extend(_text_problems(label, value, max_length))
    criteria = data.success_criteria or {}
    criteria_problem = json_value_problem("success_criteria", criteria)
    if criteria_problem:
        problems.append(criteria_problem)
    if criteria:
        if criteria.get("direction", "increase") not in DIRECTIONS:
            problems.append("The success direction must be 'increase' or 'decrease'.")
        threshold = criteria.get("threshold", 0.0)
        if not _is_number(threshold) or threshold < 0:
            problems.append("The minimum effect must be a non-negative number.")
        confidence = criteria.get("confidence", 0.95)
        if not _is_number(confidence) or not 0.5 <= confidence < 1:
            problems.append("The confidence level must lie between 50 % and 100 % (e.g. 0.95).")
    problems.extend(validate_auto_stop(data.auto_stop))
    for label, field, value in (
        ("minimum duration", "min_duration_days", data.min_duration_days),
        ("minimum samples", "min_samples_per_variant", data.min_samples_per_variant),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"The {label} must be a whole number of at least 0.")
        elif value > INT32_MAX:
            problems.append(f"The {label} ({field}) must be at most {INT32_MAX:,}; got a {len(str(value))}-digit number.")
    return problems


def _raise_problems(problems: list[str]) -> None:
    if problems:
        raise ExperimentError("The experiment cannot be saved: " + " ".join(problems), problems)


def _audit(
    session: Session,
    experiment_id: int | None,
    action: str,
    actor: str,
    from_status: str | None = None,
    to_status: str | None = None,
    **details: Any,
) -> None:
    session.add(
        AuditLog(
            experiment_id=experiment_id,
            action=action,
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            details=details,
        )
    )


def create_experiment(*, session: Session, data: ExperimentCreate, actor: str = "") -> Experiment:
    """Save ``data`` as a **draft** experiment with its variants and return it.

    The first variant is the control unless one is marked ``is_control``. The salt is
    generated when not given and never changes afterwards (renaming never reshuffles).
    Raises :class:`ExperimentError` listing every problem found by :func:`validate_experiment`.
    """
    return _create(session, data, actor)


def _create(session: Session, data: ExperimentCreate, actor: str, source: Experiment | None = None, **clone: Any) -> Experiment:
    """Insert the draft; with ``source`` it is a clone, audited on both experiments in the same commit."""
    _check_actor(actor)
    _raise_problems(validate_experiment(data, session=session))
    control_index = next((i for i, v in enumerate(data.variants) if v.is_control), 0)
    now = utcnow()
    experiment = Experiment(
        name=data.name.strip(),
        description=data.description,
        hypothesis=data.hypothesis,
        status=ExperimentStatus.DRAFT.value,
        salt=(data.salt or "").strip() or f"{data.name.strip()[:80]}-{secrets.token_hex(4)}",
        traffic_allocation=float(data.traffic_allocation),
        targeting=list(data.targeting),
        primary_metric=data.primary_metric.strip(),
        secondary_metrics=[m.strip() for m in data.secondary_metrics if m.strip()],
        guardrail_metrics=[m.strip() for m in data.guardrail_metrics if m.strip()],
        success_criteria=dict(data.success_criteria),
        min_duration_days=data.min_duration_days,
        min_samples_per_variant=data.min_samples_per_variant,
        auto_stop=normalize_auto_stop(data.auto_stop),
        created_by=actor or data.created_by,
        created_at=now,
        updated_at=now,
    )
    session.add(experiment)
    try:
        session.flush()
        for position, spec in enumerate(data.variants):
            session.add(
                Variant(
                    experiment_id=experiment.id,
                    name=spec.name.strip(),
                    allocation_pct=float(spec.allocation_pct),
                    model_id=spec.model_id,
                    config=dict(spec.config),
                    is_control=position == control_index,
                    position=position,
                )
            )
        if source is None:
            _audit(session, experiment.id, "create", actor, None, ExperimentStatus.DRAFT.value, name=experiment.name)
        else:
            _audit(session, experiment.id, "create", actor, None, ExperimentStatus.DRAFT.value, name=experiment.name,
                   cloned_from={"id": source.id, "name": source.name}, **clone)
            _audit(session, source.id, "clone", actor, source.status, source.status,
                   clone={"id": experiment.id, "name": experiment.name}, **clone)
        session.commit()
    except IntegrityError as error:  # a concurrent create took the name between validation and insert
        session.rollback()
        raise ExperimentError(f"An experiment named {data.name.strip()!r} already exists.") from error
    except (SQLAlchemyError, ValueError, OverflowError) as error:  # validation missed something the store refuses
        session.rollback()
        reason = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
        raise ExperimentError(f"The experiment cannot be saved: the database refused it ({reason}).") from error
    session.refresh(experiment)
    return experiment


def get_experiment(*, session: Session, ref: int | str | Experiment) -> Experiment:
    """The experiment with id or name ``ref`` (a numeric string is tried as an id, then as a name)."""
    if isinstance(ref, Experiment):
        ref = ref.id  # type: ignore[assignment]
    experiment: Experiment | None = None
    if isinstance(ref, int) and not isinstance(ref, bool):
        experiment = session.get(Experiment, ref)
    elif isinstance(ref, str) and has_lone_surrogate(ref):  # e.g. undecodable bytes on a command line
        raise ExperimentNotFound(f"No experiment with id or name {ref!r} (the name is not valid Unicode).")
    elif isinstance(ref, str):
        experiment = session.exec(select(Experiment).where(Experiment.name == ref.strip())).first()
        if experiment is None and _is_id_text(ref.strip()):
            experiment = session.get(Experiment, int(ref.strip()))
    if experiment is None:
        raise ExperimentNotFound(f"No experiment with id or name {ref!r}.")
    session.refresh(experiment)
    return experiment


def _is_id_text(text: str) -> bool:
    """ASCII digits of a value a database integer id can hold ('³' is a digit to str.isdigit, not to int())."""
    return text.isascii() and text.isdigit() and int(text) < 2**31


def list_experiments(
    *, session: Session, status: str | None = None, include_archived: bool = False
) -> list[Experiment]:
    """Experiments, newest first, optionally only those in ``status``; archived ones only with ``include_archived``."""
    query = select(Experiment).order_by(col(Experiment.created_at).desc(), col(Experiment.id).desc())
    if status is not None:
        query = query.where(Experiment.status == status)
    if not include_archived:
        query = query.where(col(Experiment.archived_at).is_(None))
    return list(session.exec(query).all())


def get_variants(*, session: Session, experiment_id: int) -> list[Variant]:
    """The experiment's variants in form order (control first unless configured otherwise)."""
    return list(
        session.exec(select(Variant).where(Variant.experiment_id == experiment_id).order_by(Variant.position)).all()
    )


def _transition(
    session: Session,
    ref: int | str | Experiment,
    action: str,
    actor: str,
    conditions: Sequence[Any] = (),
    **details: Any,
) -> Experiment:
    _check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    sources, target = TRANSITIONS[action]
    current = experiment.status
    if current not in sources:
        raise InvalidTransition(
            f"Cannot {action} experiment {experiment.name!r}: it is {current}"
            f" (allowed from {', '.join(s.value for s in sources)})."
        )
    now = utcnow()
    values: dict[str, Any] = {"status": target.value, "updated_at": now}
    if action == "start":
        values["started_at"] = now
    if action in ("stop", "cancel") and current != ExperimentStatus.DRAFT:
        values["stopped_at"] = now
    result = session.execute(
        update(Experiment)
        .where(col(Experiment.id) == experiment.id, col(Experiment.status) == current, *conditions)
        .values(**values)
    )
    if result.rowcount != 1:  # somebody else changed it between our read and our write
        session.rollback()
        fresh = get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]
        if conditions and fresh.status == current:
            raise ApprovalRequired(
                f"Cannot {action} experiment {experiment.name!r}: its approval was withdrawn or it was edited just now;"
                " it needs a new approval."
            )
        raise InvalidTransition(
            f"Cannot {action} experiment {experiment.name!r}: it was just changed to {fresh.status} by someone else."
        )
    _audit(session, experiment.id, action, actor, current, target.value, **details)
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


def start_experiment(*, session: Session, ref: int | str | Experiment, actor: str = "") -> Experiment:
    """draft -> running: users start being assigned.

    When the store requires approvals (:func:`require_approval`), the draft must be approved in its
    current configuration (:func:`approve_experiment`; an edit since then withdraws the approval),
    otherwise :class:`ApprovalRequired` says why. The check and the start are one atomic update, so
    an approval withdrawn or an edit saved at the same moment is never started unapproved.
    """
    _check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    if experiment.status != ExperimentStatus.DRAFT or not require_approval(session=session):
        return _transition(session, experiment, "start", actor)
    problem = approval_problem(session=session, ref=experiment)
    if problem is not None:
        raise ApprovalRequired(problem)
    conditions = (
        col(Experiment.approval_status) == APPROVED,
        col(Experiment.approval_fingerprint) == experiment.approval_fingerprint,
    )
    return _transition(session, experiment, "start", actor, conditions, approved_by=experiment.approved_by)


def pause_experiment(
    *, session: Session, ref: int | str | Experiment, actor: str = "", reason: str = ""
) -> Experiment:
    """running -> paused: assigned users keep their variant, nobody new enters (``reason`` goes to the audit log)."""
    return _transition(session, ref, "pause", actor, **({"reason": reason} if reason else {}))


def resume_experiment(*, session: Session, ref: int | str | Experiment, actor: str = "") -> Experiment:
    """paused -> running."""
    return _transition(session, ref, "resume", actor)


def stop_experiment(
    *, session: Session, ref: int | str | Experiment, actor: str = "", reason: str = ""
) -> Experiment:
    """running or paused -> completed: assignments freeze, data is kept (``reason`` goes to the audit log)."""
    return _transition(session, ref, "stop", actor, **({"reason": reason} if reason else {}))


def cancel_experiment(*, session: Session, ref: int | str | Experiment, actor: str = "") -> Experiment:
    """draft, running or paused -> cancelled: callers get None from then on."""
    return _transition(session, ref, "cancel", actor)


def ship_winner(
    *,
    session: Session,
    ref: int | str | Experiment,
    variant: int | str,
    rollout_pct: float = 100.0,
    actor: str = "",
) -> Experiment:
    """Declare ``variant`` (id or name) the winner of a completed experiment, served to ``rollout_pct`` % of users."""
    _check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    if experiment.status != ExperimentStatus.COMPLETED:
        raise InvalidTransition(
            f"Cannot ship a winner of {experiment.name!r}: it is {experiment.status}; stop the experiment first."
        )
    if not _is_number(rollout_pct) or not 0 < rollout_pct <= 100:
        raise ExperimentError("The rollout must be more than 0 % and at most 100 %.")
    variants = get_variants(session=session, experiment_id=experiment.id)  # type: ignore[arg-type]
    chosen = next((v for v in variants if v.id == variant or v.name == variant), None)
    if chosen is None and isinstance(variant, str) and _is_id_text(variant):
        chosen = next((v for v in variants if v.id == int(variant)), None)
    if chosen is None:
        names = ", ".join(v.name for v in variants)
        raise ExperimentError(f"{experiment.name!r} has no variant {variant!r} (its variants: {names}).")
    previous = {"winner_variant_id": experiment.winner_variant_id, "rollout_pct": experiment.rollout_pct}
    experiment.winner_variant_id = chosen.id
    experiment.rollout_pct = float(rollout_pct)
    experiment.updated_at = utcnow()
    session.add(experiment)
    _audit(
        session,
        experiment.id,
        "ship",
        actor,
        experiment.status,
        experiment.status,
        winner=chosen.name,
        rollout_pct=float(rollout_pct),
        previous=previous,
    )
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


def delete_experiment(*, session: Session, ref: int | str | Experiment, actor: str = "") -> None:
    """Delete a draft (it has no data yet); the audit log keeps a record with its name."""
    _check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    if experiment.status != ExperimentStatus.DRAFT:
        raise InvalidTransition(
            f"Cannot delete {experiment.name!r}: it is {experiment.status}; only drafts can be deleted (cancel it instead)."
        )
    result = session.execute(
        delete(Experiment).where(col(Experiment.id) == experiment.id, col(Experiment.status) == ExperimentStatus.DRAFT)
    )
    if result.rowcount != 1:
        session.rollback()
        raise InvalidTransition(f"Cannot delete {experiment.name!r}: it was just changed by someone else.")
    _audit(session, None, "delete", actor, ExperimentStatus.DRAFT.value, None, name=experiment.name, id=experiment.id)
    session.commit()


def update_allocations(
    *, session: Session, ref: int | str | Experiment, allocations: Mapping[str, float], actor: str = ""
) -> Experiment:
    """Change the split (variant name -> percent, summing to 100) of a draft, running or paused experiment.

    Users already assigned keep their variant (the stored assignment always wins);
    only new users follow the new split.
    """
    _check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    if experiment.status not in (ExperimentStatus.DRAFT, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED):
        raise InvalidTransition(f"Cannot change the split of {experiment.name!r}: it is {experiment.status}.")
    variants = get_variants(session=session, experiment_id=experiment.id)  # type: ignore[arg-type]
    by_name = {v.name: v for v in variants}
    unknown = sorted(set(allocations) - set(by_name))
    if unknown:
        raise ExperimentError(f"{experiment.name!r} has no variant(s) {', '.join(unknown)}.")
    new = {name: allocations.get(name, v.allocation_pct) for name, v in by_name.items()}
    if not all(_is_number(a) and a >= 0 for a in new.values()):
        raise ExperimentError("Allocations must be finite, non-negative numbers.")
    if abs(sum(new.values()) - 100.0) > ALLOCATION_TOLERANCE:
        raise ExperimentError(f"Allocations must sum to exactly 100 %; they sum to {sum(new.values()):g} %.")
    before = {v.name: v.allocation_pct for v in variants}
    for name, variant in by_name.items():
        variant.allocation_pct = float(new[name])
        session.add(variant)
    experiment.updated_at = utcnow()
    session.add(experiment)
    _withdraw_approval(session, experiment, actor, "split changed")
    _audit(session, experiment.id, "update_allocations", actor, experiment.status, experiment.status, before=before, after=new)
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


def set_traffic_allocation(
    *, session: Session, ref: int | str | Experiment, traffic_allocation: float, actor: str = ""
) -> Experiment:
    """Change the share [0-1] of eligible users that enter; raising it only adds users.

    0 lets nobody new in (assigned users keep their variant); a new experiment needs more than 0.
    """
    _check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    if experiment.status not in (ExperimentStatus.DRAFT, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED):
        raise InvalidTransition(f"Cannot change the traffic share of {experiment.name!r}: it is {experiment.status}.")
    if not _is_number(traffic_allocation) or not 0 <= traffic_allocation <= 1:
        raise ExperimentError("The traffic share must be between 0 and 1 (100 %).")
    before = experiment.traffic_allocation
    experiment.traffic_allocation = float(traffic_allocation)
    experiment.updated_at = utcnow()
    session.add(experiment)
    _withdraw_approval(session, experiment, actor, "traffic share changed")
    _audit(
        session,
        experiment.id,
        "set_traffic",
        actor,
        experiment.status,
        experiment.status,
        before=before,
        after=float(traffic_allocation),
    )
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


def set_auto_stop(
    *, session: Session, ref: int | str | Experiment, auto_stop: Mapping[str, Any] | None, actor: str = ""
) -> Experiment:
    """Replace the stopping rules of a draft, running or paused experiment ({} / None: stop watching it).

    Raises :class:`ExperimentError` listing the problems found by :func:`validate_auto_stop`.
    The change is audited (``set_auto_stop`` with the rules before and after).
    """
    _check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    if experiment.status not in (ExperimentStatus.DRAFT, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED):
        raise InvalidTransition(f"Cannot change the stopping rules of {experiment.name!r}: it is {experiment.status}.")
    problems = validate_auto_stop(auto_stop)
    if problems:
        raise ExperimentError("The stopping rules cannot be saved: " + " ".join(problems), problems)
    before = dict(experiment.auto_stop or {})
    after = normalize_auto_stop(auto_stop)
    experiment.auto_stop = after
    experiment.updated_at = utcnow()
    session.add(experiment)
    _withdraw_approval(session, experiment, actor, "stopping rules changed")
    _audit(session, experiment.id, "set_auto_stop", actor, experiment.status, experiment.status, before=before, after=after)
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


def audit_log(*, session: Session, experiment_id: int | None = None) -> list[AuditLog]:
    """Audit entries, newest first; all of them, or one experiment's."""
    query = select(AuditLog).order_by(col(AuditLog.ts).desc(), col(AuditLog.id).desc())
    if experiment_id is not None:
        query = query.where(AuditLog.experiment_id == experiment_id)
    return list(session.exec(query).all())


# --------------------------------------------------------------------------- editing


class ExperimentUpdate(SQLModel):
    """Changes to an experiment; a field left at None is not changed.

    ``allocations``, ``variant_models`` and ``variant_configs`` map variant names to the new
    percent, model id (None: no model) or JSON config; variants not named keep theirs.
    """

    description: str | None = None
    hypothesis: str | None = None
    primary_metric: str | None = None
    secondary_metrics: list[str] | None = None
    guardrail_metrics: list[str] | None = None
    targeting: list[dict[str, Any]] | None = None
    traffic_allocation: float | None = None
    allocations: dict[str, float] | None = None
    variant_models: dict[str, int | None] | None = None
    variant_configs: dict[str, dict[str, Any]] | None = None
    success_criteria: dict[str, Any] | None = None
    min_duration_days: int | None = None
    min_samples_per_variant: int | None = None
    auto_stop: dict[str, Any] | None = None


UPDATE_FIELDS: tuple[str, ...] = tuple(ExperimentUpdate.model_fields)
#: What may change while an experiment runs or is paused (the traffic share only upwards).
SAFE_WHILE_RUNNING: tuple[str, ...] = ("description", "hypothesis", "secondary_metrics", "traffic_allocation")
# Why each other field is frozen once the experiment has started.
_FROZEN_REASONS: dict[str, str] = {
    "primary_metric": "the primary metric is the decision the experiment was started for; changing it after "
    "seeing data invalidates the test (clone the experiment to test another metric)",
    "guardrail_metrics": "guardrails are part of the plan the experiment was started with and the stopping rules "
    "act on them",
    "targeting": "changing who enters mixes two populations in one result",
    "allocations": "changing the split mid-experiment biases the comparison (early and late users are split "
    "differently); clone the experiment instead",
    "variant_models": "users already assigned would be served something else than what they were assigned to",
    "variant_configs": "users already assigned would be served something else than what they were assigned to",
    "success_criteria": "the success criteria were fixed before the data came in",
    "min_duration_days": "the minimum duration was fixed before the data came in",
    "min_samples_per_variant": "the minimum sample size was fixed before the data came in",
    "auto_stop": "change the stopping rules with the stopping-rules box (set_auto_stop), which audits them apart",
}


def _as_update(changes: ExperimentUpdate | Mapping[str, Any]) -> ExperimentUpdate:
    if isinstance(changes, ExperimentUpdate):
        return changes
    if not isinstance(changes, Mapping):
        raise ExperimentError("The changes must be an ExperimentUpdate or a mapping of field -> new value.")
    unknown = sorted(str(k) for k in changes if k not in UPDATE_FIELDS)
    problems = [f"Unknown field {k!r} (editable: {', '.join(UPDATE_FIELDS)})." for k in unknown]
    try:
        update = ExperimentUpdate.model_validate({k: v for k, v in changes.items() if k in UPDATE_FIELDS})
    except ValidationError as error:
        problems += [f"{'.'.join(map(str, e['loc']))}: {e['msg']}." for e in error.errors()]
        update = ExperimentUpdate()
    if problems:
        raise ExperimentError("The changes cannot be applied: " + " ".join(problems), problems)
    return update


def _clean_metrics(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(m.strip() for m in names if isinstance(m, str) and m.strip()))


def _current_values(experiment: Experiment, variants: Sequence[Variant]) -> dict[str, Any]:
    return {
        "description": experiment.description,
        "hypothesis": experiment.hypothesis,
        "primary_metric": experiment.primary_metric,
        "secondary_metrics": list(experiment.secondary_metrics or []),
        "guardrail_metrics": list(experiment.guardrail_metrics or []),
        "targeting": list(experiment.targeting or []),
        "traffic_allocation": experiment.traffic_allocation,
        "allocations": {v.name: v.allocation_pct for v in variants},
        "variant_models": {v.name: v.model_id for v in variants},
        "variant_configs": {v.name: dict(v.config or {}) for v in variants},
        "success_criteria": dict(experiment.success_criteria or {}),
        "min_duration_days": experiment.min_duration_days,
        "min_samples_per_variant": experiment.min_samples_per_variant,
        "auto_stop": dict(experiment.auto_stop or {}),
    }


def _as_create(experiment: Experiment, values: Mapping[str, Any], variants: Sequence[Variant]) -> ExperimentCreate:
    return ExperimentCreate(
        name=experiment.name,
        description=values["description"],
        hypothesis=values["hypothesis"],
        variants=[
            VariantCreate(
                name=v.name,
                allocation_pct=values["allocations"][v.name],
                model_id=values["variant_models"][v.name],
                config=values["variant_configs"][v.name],
                is_control=v.is_control,
            )
            for v in variants
        ],
        traffic_allocation=values["traffic_allocation"],
        targeting=values["targeting"],
        primary_metric=values["primary_metric"],
        secondary_metrics=values["secondary_metrics"],
        guardrail_metrics=values["guardrail_metrics"],
        success_criteria=values["success_criteria"],
        min_duration_days=values["min_duration_days"],
        min_samples_per_variant=values["min_samples_per_variant"],
        salt=experiment.salt,
        created_by=experiment.created_by,
        auto_stop=values["auto_stop"],
    )


def planned_changes(
    *, session: Session, ref: int | str | Experiment, changes: ExperimentUpdate | Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """What :func:`update_experiment` would change: field -> {"before", "after"} (only real changes).

    A field given with its current value is not a change. Metric names are stripped and deduplicated;
    when a draft's primary metric changes and the success criteria named the old one, they follow it.
    Raises exactly what :func:`update_experiment` would raise (refused changes, invalid values); saves nothing.
    """
    return _prepare_update(session, ref, changes)[2]


def _prepare_update(
    session: Session, ref: int | str | Experiment, changes: ExperimentUpdate | Mapping[str, Any]
) -> tuple[Experiment, list[Variant], dict[str, dict[str, Any]], dict[str, Any]]:
    """(experiment, variants, diff, merged values) after every check of :func:`update_experiment`."""
    update = _as_update(changes)
    experiment = get_experiment(session=session, ref=ref)
    variants = get_variants(session=session, experiment_id=experiment.id)  # type: ignore[arg-type]
    diff = _diff(experiment, variants, update)
    refused = _refusals(experiment, diff)
    if refused:
        raise InvalidTransition(f"Cannot edit {experiment.name!r}: " + " ".join(refused), refused)
    current = _current_values(experiment, variants)
    merged = {**current, **{f: c["after"] for f, c in diff.items()}}
    if diff:
        before_problems = set(validate_experiment(_as_create(experiment, current, variants), session=session,
                                                  existing_id=experiment.id))
        problems = [
            p
            for p in validate_experiment(_as_create(experiment, merged, variants), session=session,
                                         existing_id=experiment.id)
            if p not in before_problems
        ]
        if problems:
            raise ExperimentError(f"Cannot edit {experiment.name!r}: " + " ".join(problems), problems)
    return experiment, variants, diff, merged


def _diff(experiment: Experiment, variants: Sequence[Variant], update: ExperimentUpdate) -> dict[str, dict[str, Any]]:
    current = _current_values(experiment, variants)
    problems: list[str] = []
    requested: dict[str, Any] = {}
    for field in UPDATE_FIELDS:
        value = getattr(update, field)
        if value is None:
            continue
        if field in ("allocations", "variant_models", "variant_configs"):
            unknown = sorted(set(value) - set(current[field]))
            if unknown:
                names = ", ".join(current[field])
                problems.append(f"{experiment.name!r} has no variant(s) {', '.join(unknown)} (its variants: {names}).")
                continue
            value = {**current[field], **value}
        elif field in ("secondary_metrics", "guardrail_metrics"):
            value = _clean_metrics(value)
        elif field == "primary_metric":
            value = value.strip()
        elif field == "auto_stop" and not validate_auto_stop(value):
            value = normalize_auto_stop(value)
        requested[field] = value
    if problems:
        raise ExperimentError("The changes cannot be applied: " + " ".join(problems), problems)
    old_primary = current["primary_metric"]
    new_primary = requested.get("primary_metric", old_primary)
    criteria = dict(requested.get("success_criteria", current["success_criteria"]))
    following = experiment.status == ExperimentStatus.DRAFT  # elsewhere the primary change itself is refused
    if following and new_primary != old_primary and criteria.get("metric") == old_primary:
        criteria["metric"] = new_primary
        requested["success_criteria"] = criteria
    return {f: {"before": current[f], "after": v} for f, v in requested.items() if v != current[f]}


def _refusals(experiment: Experiment, diff: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every change refused in the experiment's status, each with its reason."""
    status = experiment.status
    if status == ExperimentStatus.DRAFT:
        return []
    if status not in (ExperimentStatus.RUNNING, ExperimentStatus.PAUSED):
        return [
            f"{field}: {experiment.name!r} is {status}; a finished experiment is not edited (clone it to run a "
            "changed version)."
            for field in diff
        ]
    refused = []
    for field, change in diff.items():
        if field == "traffic_allocation":
            if _is_number(change["after"]) and change["after"] < change["before"]:
                refused.append(
                    f"traffic_allocation: the share can only go up while the experiment is {status} "
                    f"({change['before']:g} -> {change['after']:g}); lowering it would make the users who "
                    "entered and those who stay out differ over time (pause or stop it instead)."
                )
        elif field not in SAFE_WHILE_RUNNING:
            refused.append(f"{field}: cannot change while the experiment is {status}: {_FROZEN_REASONS[field]}.")
    return refused


def update_experiment(
    *,
    session: Session,
    ref: int | str | Experiment,
    changes: ExperimentUpdate | Mapping[str, Any],
    actor: str = "",
) -> Experiment:
    """Apply ``changes`` and return the experiment; one ``update`` audit entry holds every field's before/after.

    * draft: description, hypothesis, primary / secondary / guardrail metrics, targeting, traffic share,
      allocations, each variant's model and config, success criteria, minimums, stopping rules;
    * running or paused: only :data:`SAFE_WHILE_RUNNING` (description, hypothesis, secondary metrics,
      the traffic share upwards: raising it only adds users, see abcore.assign);
    * completed or cancelled: nothing (clone it instead).

    Raises :class:`InvalidTransition` listing every refused change with its reason, and
    :class:`ExperimentError` listing the problems :func:`validate_experiment` finds in the edited
    configuration (problems the experiment already had before the edit are not blamed on it).
    Nothing changes when anything is refused. Editing an approved draft withdraws its approval.
    """
    _check_actor(actor)
    experiment, variants, diff, merged = _prepare_update(session, ref, changes)
    if not diff:
        return experiment
    status = experiment.status
    values: dict[str, Any] = {"updated_at": utcnow()}
    for field in ("description", "hypothesis", "primary_metric", "secondary_metrics", "guardrail_metrics", "targeting",
                  "success_criteria", "min_duration_days", "min_samples_per_variant", "auto_stop"):
        if field in diff:
            values[field] = merged[field]
    if "traffic_allocation" in diff:
        values["traffic_allocation"] = float(merged["traffic_allocation"])
    withdrawn = status == ExperimentStatus.DRAFT and experiment.approval_status == APPROVED
    approved_by = experiment.approved_by  # the update below refreshes the loaded object
    if withdrawn:
        values.update(_NO_APPROVAL)
    try:
        result = session.execute(
            update_statement(Experiment)
            .where(col(Experiment.id) == experiment.id, col(Experiment.status) == status)
            .values(**values)
        )
        if result.rowcount != 1:
            session.rollback()
            fresh = get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]
            raise InvalidTransition(f"Cannot edit {experiment.name!r}: it was just changed to {fresh.status} by someone else.")
        for variant in variants:
            new = (merged["allocations"][variant.name], merged["variant_models"][variant.name],
                   merged["variant_configs"][variant.name])
            if new != (variant.allocation_pct, variant.model_id, dict(variant.config or {})):
                variant.allocation_pct = float(new[0])
                variant.model_id = new[1]
                variant.config = dict(new[2])
                session.add(variant)
        _audit(session, experiment.id, "update", actor, status, status, changes=diff)
        if withdrawn:
            _audit(session, experiment.id, "approval_withdrawn", actor, status, status,
                   reason="edited after approval", approved_by=approved_by)
        session.commit()
    except (SQLAlchemyError, OverflowError) as error:
        session.rollback()
        reason = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
        raise ExperimentError(f"Cannot edit {experiment.name!r}: the database refused it ({reason}).") from error
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- cloning and archiving


def clone_experiment(
    *, session: Session, ref: int | str | Experiment, name: str, keep_salt: bool = False, actor: str = ""
) -> Experiment:
    """A new **draft** named ``name`` with the configuration of ``ref``: variants (names, split, models,
    configs, control), traffic share, targeting, metrics, success criteria, minimums and stopping rules.

    A new salt is drawn unless ``keep_salt`` (then every user lands in the same variant as in the
    original, which suits a re-run of the same test but carries its users' history along). Status,
    dates, winner, approval and archive state are not copied. Audited on both experiments (``clone``
    on the original, ``create`` with ``cloned_from`` on the copy). Raises :class:`ExperimentError` for a
    taken or invalid name (every problem :func:`validate_experiment` finds).
    """
    source = get_experiment(session=session, ref=ref)
    variants = get_variants(session=session, experiment_id=source.id)  # type: ignore[arg-type]
    values = _current_values(source, variants)
    data = _as_create(source, values, variants)
    data.name = name if isinstance(name, str) else ""
    data.salt = source.salt if keep_salt else None
    data.created_by = actor or source.created_by
    return _create(session, data, actor, source, keep_salt=bool(keep_salt))


FINISHED: tuple[str, ...] = (ExperimentStatus.COMPLETED.value, ExperimentStatus.CANCELLED.value)


def archive_experiment(
    *, session: Session, ref: int | str | Experiment, actor: str = "", archived: bool = True
) -> Experiment:
    """Archive (``archived=False``: restore) a completed or cancelled experiment.

    Archived experiments are left out of :func:`list_experiments` unless ``include_archived``; nothing
    else changes (a shipped winner keeps being served, results stay readable by id or name).
    Raises :class:`InvalidTransition` for an experiment that is not finished, or already in the asked state.
    Audited as ``archive`` / ``unarchive``.
    """
    _check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    verb = "archive" if archived else "restore"
    if experiment.status not in FINISHED:
        raise InvalidTransition(
            f"Cannot {verb} {experiment.name!r}: it is {experiment.status}; only completed or cancelled experiments"
            " are archived (stop or cancel it first)."
        )
    if (experiment.archived_at is not None) == bool(archived):
        state = "already archived" if archived else "not archived"
        raise InvalidTransition(f"Cannot {verb} {experiment.name!r}: it is {state}.")
    now = utcnow()
    was = col(Experiment.archived_at).is_(None) if archived else col(Experiment.archived_at).is_not(None)
    result = session.execute(
        update_statement(Experiment)
        .where(col(Experiment.id) == experiment.id, col(Experiment.status).in_(FINISHED), was)
        .values(archived_at=now if archived else None, updated_at=now)
    )
    if result.rowcount != 1:
        session.rollback()
        raise InvalidTransition(f"Cannot {verb} {experiment.name!r}: it was just changed by someone else.")
    _audit(session, experiment.id, "archive" if archived else "unarchive", actor, experiment.status, experiment.status)
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- settings


REQUIRE_APPROVAL = "require_approval"
#: The per-store settings abcore knows: key -> (type of the value, default, what it means).
SETTINGS: dict[str, tuple[type, Any, str]] = {
    REQUIRE_APPROVAL: (bool, False, "a draft needs an approver's approval before it can start"),
}


def get_setting(*, session: Session, key: str) -> Any:
    """The stored value of setting ``key``, or its default (:data:`SETTINGS`); unknown keys raise."""
    if key not in SETTINGS:
        raise ExperimentError(f"Unknown setting {key!r} (known: {', '.join(SETTINGS)}).")
    row = session.get(Setting, key)
    if row is not None:
        session.refresh(row)  # another process may have changed it
    return SETTINGS[key][1] if row is None or row.value is None else row.value


def set_setting(*, session: Session, key: str, value: Any, actor: str = "") -> Any:
    """Store setting ``key`` (audited as ``set_setting`` with before/after); returns the new value.

    Raises :class:`ExperimentError` for an unknown key or a value of the wrong type.
    """
    _check_actor(actor)
    if key not in SETTINGS:
        raise ExperimentError(f"Unknown setting {key!r} (known: {', '.join(SETTINGS)}).")
    kind = SETTINGS[key][0]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ExperimentError(f"The setting {key!r} must be a {kind.__name__}; got {value!r}.")
    before = get_setting(session=session, key=key)
    for attempt in range(2):  # a concurrent first write of the same key: retry once as an update
        row = session.get(Setting, key)
        if row is None:
            row = Setting(key=key)
        row.value = value
        row.updated_by = actor
        row.updated_at = utcnow()
        session.add(row)
        _audit(session, None, "set_setting", actor, None, None, key=key, before=before, after=value)
        try:
            session.commit()
            break
        except IntegrityError:
            session.rollback()
            if attempt:
                raise
    return value


def require_approval(*, session: Session) -> bool:
    """Whether drafts need an approval before they start (setting ``require_approval``, off by default)."""
    return bool(get_setting(session=session, key=REQUIRE_APPROVAL))


def set_require_approval(*, session: Session, required: bool, actor: str = "") -> bool:
    """Turn the approval requirement on or off for the whole store (audited)."""
    return bool(set_setting(session=session, key=REQUIRE_APPROVAL, value=required, actor=actor))


# --------------------------------------------------------------------------- approvals


APPROVAL_NONE = ""
#: Audit actions that change a draft's configuration (what an approval covers).
CONFIGURATION_ACTIONS: tuple[str, ...] = ("update", "update_allocations", "set_traffic", "set_auto_stop")
REQUESTED = "requested"
APPROVED = "approved"
REJECTED = "rejected"
_NO_APPROVAL: dict[str, Any] = {
    "approval_status": APPROVAL_NONE, "approved_by": None, "approved_at": None, "approval_fingerprint": None,
}


def run_configuration(*, session: Session, ref: int | str | Experiment) -> dict[str, Any]:
    """What will run when the draft starts, as plain JSON: variants (split, model, config, control),
    traffic share, targeting, metrics, success criteria, minimums, stopping rules and the salt.

    This is what an approver approves; :func:`configuration_fingerprint` hashes it.
    """
    experiment = get_experiment(session=session, ref=ref)
    variants = get_variants(session=session, experiment_id=experiment.id)  # type: ignore[arg-type]
    return _run_configuration(experiment, variants)


def _run_configuration(experiment: Experiment, variants: Sequence[Variant]) -> dict[str, Any]:
    return {
        "name": experiment.name,
        "description": experiment.description,
        "hypothesis": experiment.hypothesis,
        "salt": experiment.salt,
        "variants": [
            {"name": v.name, "allocation_pct": float(v.allocation_pct), "model_id": v.model_id,
             "config": dict(v.config or {}), "is_control": bool(v.is_control)}
            for v in variants
        ],
        "traffic_allocation": float(experiment.traffic_allocation),
        "targeting": list(experiment.targeting or []),
        "primary_metric": experiment.primary_metric,
        "secondary_metrics": list(experiment.secondary_metrics or []),
        "guardrail_metrics": list(experiment.guardrail_metrics or []),
        "success_criteria": dict(experiment.success_criteria or {}),
        "min_duration_days": experiment.min_duration_days,
        "min_samples_per_variant": experiment.min_samples_per_variant,
        "auto_stop": dict(experiment.auto_stop or {}),
    }


def configuration_fingerprint(configuration: Mapping[str, Any]) -> str:
    """Hex SHA-256 of :func:`run_configuration`'s JSON (sorted keys, compact): equal iff nothing changed."""
    text = json.dumps(configuration, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class ApprovalState:
    """Where a draft stands with approvals (:func:`approval_state`)."""

    required: bool  # the store requires approvals
    status: str  # "" | requested | approved | rejected
    approved_by: str | None
    approved_at: datetime | None
    current: bool  # approved, and the configuration is still the approved one
    comment: str  # the comment of the last request, approval or rejection
    decided_by: str  # who made the last decision (approve / reject), "" when none

    @property
    def can_start(self) -> bool:
        """Whether the approval rule lets the draft start."""
        return not self.required or self.current


def approval_state(*, session: Session, ref: int | str | Experiment) -> ApprovalState:
    """The approval state of an experiment, with the last comment from the audit log."""
    experiment = get_experiment(session=session, ref=ref)
    variants = get_variants(session=session, experiment_id=experiment.id)  # type: ignore[arg-type]
    current = (
        experiment.approval_status == APPROVED
        and experiment.approval_fingerprint == configuration_fingerprint(_run_configuration(experiment, variants))
    )
    last = next(
        (a for a in audit_log(session=session, experiment_id=experiment.id)
         if a.action in ("request_approval", "approve", "reject", "approval_withdrawn")),
        None,
    )
    return ApprovalState(
        required=require_approval(session=session),
        status=experiment.approval_status or APPROVAL_NONE,
        approved_by=experiment.approved_by,
        approved_at=experiment.approved_at,
        current=current,
        comment=str((last.details or {}).get("comment", "")) if last is not None else "",
        decided_by=last.actor if last is not None and last.action in ("approve", "reject") else "",
    )


def approval_problem(*, session: Session, ref: int | str | Experiment) -> str | None:
    """Why the draft cannot start under the approval rule (None when it can, or approvals are off)."""
    if not require_approval(session=session):
        return None
    experiment = get_experiment(session=session, ref=ref)
    state = approval_state(session=session, ref=experiment)
    if state.current:
        return None
    prefix = f"Cannot start {experiment.name!r}: this store requires an approval before a draft starts, and"
    if state.status == APPROVED:
        return f"{prefix} it was changed after {state.approved_by} approved it; it needs a new approval."
    if state.status == REJECTED:
        why = f" ({state.comment})" if state.comment else ""
        return f"{prefix} {state.decided_by or 'an approver'} rejected it{why}; edit it and request approval again."
    if state.status == REQUESTED:
        return f"{prefix} it is waiting for an approver (`abcore approve {experiment.name}`)."
    return f"{prefix} nobody approved it yet; request an approval from someone with the approver role."


def approval_authors(*, session: Session, ref: int | str | Experiment) -> set[str]:
    """Who cannot approve the draft's current configuration (four eyes): whoever asked for the approval
    since the last decision, and whoever wrote the configuration last (its creator or last editor)."""
    experiment = get_experiment(session=session, ref=ref)
    authors: set[str] = set()
    for entry in audit_log(session=session, experiment_id=experiment.id):  # newest first
        if entry.action in ("approve", "reject"):
            break
        if entry.action == "request_approval":
            authors.add(entry.actor)
    last_edit = next((e for e in audit_log(session=session, experiment_id=experiment.id)
                      if e.action in (*CONFIGURATION_ACTIONS, "create")), None)
    if last_edit is not None:
        authors.add(last_edit.actor)
    return {a for a in authors if a}


def _approval_change(
    session: Session,
    ref: int | str | Experiment,
    action: str,
    actor: str,
    comment: str,
    allowed_from: Sequence[str],
    allow_self_approval: bool = True,
) -> Experiment:
    _check_actor(actor)
    problems = _text_problems("comment", comment if isinstance(comment, str) else "", None)
    if not isinstance(comment, str):
        problems.append("The comment must be text.")
    if problems:
        raise ExperimentError(" ".join(problems), problems)
    experiment = get_experiment(session=session, ref=ref)
    verb = {"request_approval": "request an approval of", "approve": "approve", "reject": "reject"}[action]
    if experiment.status != ExperimentStatus.DRAFT:
        raise InvalidTransition(
            f"Cannot {verb} {experiment.name!r}: it is {experiment.status}; approvals are for drafts."
        )
    if action in ("approve", "reject") and not actor.strip():
        raise ExperimentError(f"Cannot {verb} {experiment.name!r} anonymously: say who decides (the actor).")
    if action == "reject" and not comment.strip():
        raise ExperimentError(f"Cannot reject {experiment.name!r} without a comment: say what has to change.")
    if action == "approve" and not allow_self_approval and actor in approval_authors(session=session, ref=experiment):
        raise ExperimentError(
            f"Cannot approve {experiment.name!r}: {actor} asked for this approval or wrote its current configuration;"
            " another approver must approve it (four eyes)."
        )
    state = approval_state(session=session, ref=experiment)
    status = experiment.approval_status or APPROVAL_NONE
    if status == APPROVED and not state.current:  # edited behind abcore's back: treat as not approved
        status = APPROVAL_NONE
    if status not in allowed_from:
        raise InvalidTransition(f"Cannot {verb} {experiment.name!r}: it is already {status}.")
    variants = get_variants(session=session, experiment_id=experiment.id)  # type: ignore[arg-type]
    configuration = _run_configuration(experiment, variants)
    now = utcnow()
    if action == "approve":
        values: dict[str, Any] = {"approval_status": APPROVED, "approved_by": actor, "approved_at": now,
                                  "approval_fingerprint": configuration_fingerprint(configuration)}
    else:
        values = {**_NO_APPROVAL, "approval_status": REQUESTED if action == "request_approval" else REJECTED}
    result = session.execute(
        update_statement(Experiment)
        .where(col(Experiment.id) == experiment.id, col(Experiment.status) == ExperimentStatus.DRAFT,
               col(Experiment.updated_at) == experiment.updated_at)
        .values(**values, updated_at=experiment.updated_at)  # a decision is not an edit
    )
    if result.rowcount != 1:
        session.rollback()
        raise InvalidTransition(f"Cannot {verb} {experiment.name!r}: it was just changed by someone else; look again.")
    details: dict[str, Any] = {"comment": comment.strip(), "previous": status}
    if action == "approve":
        details.update(configuration=configuration, fingerprint=values["approval_fingerprint"])
    _audit(session, experiment.id, action, actor, experiment.status, experiment.status, **details)
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


def request_approval(*, session: Session, ref: int | str | Experiment, actor: str = "", comment: str = "") -> Experiment:
    """Mark a draft as waiting for an approver (also after a rejection); audited as ``request_approval``."""
    return _approval_change(session, ref, "request_approval", actor, comment, (APPROVAL_NONE, REJECTED))


def approve_experiment(
    *,
    session: Session,
    ref: int | str | Experiment,
    actor: str,
    comment: str = "",
    allow_self_approval: bool = False,
) -> Experiment:
    """Approve a draft's current configuration (seed 004's ``approvedBy`` = ``actor``).

    Any draft not yet approved can be approved (requested or not, or rejected before), but not by
    someone in :func:`approval_authors` unless ``allow_self_approval`` (the open-mode dashboard, where
    every visitor is the same anonymous actor, passes it). The audit entry
    ``approve`` holds the comment and the approved configuration (:func:`run_configuration`); an edit
    afterwards withdraws the approval. Who may approve (the ``approver`` role) is checked by the
    caller: the dashboard by :func:`abcore.access.users.can_approve`; the CLI acts with database access.
    """
    return _approval_change(session, ref, "approve", actor, comment, (APPROVAL_NONE, REQUESTED, REJECTED),
                            allow_self_approval)


def reject_experiment(*, session: Session, ref: int | str | Experiment, actor: str, comment: str) -> Experiment:
    """Reject a draft (a comment saying what must change is required); withdraws an earlier approval.

    Audited as ``reject``; the draft can be edited and :func:`request_approval` asked again.
    """
    return _approval_change(session, ref, "reject", actor, comment, (APPROVAL_NONE, REQUESTED, APPROVED))


def _withdraw_approval(session: Session, experiment: Experiment, actor: str, reason: str) -> None:
    """An approved draft changed (split, traffic, stopping rules): its approval no longer holds."""
    if experiment.status != ExperimentStatus.DRAFT or experiment.approval_status != APPROVED:
        return
    approved_by = experiment.approved_by
    for key, value in _NO_APPROVAL.items():
        setattr(experiment, key, value)
    _audit(session, experiment.id, "approval_withdrawn", actor, experiment.status, experiment.status,
           reason=reason, approved_by=approved_by)



def edits_since_decision(*, session: Session, ref: int | str | Experiment) -> list[AuditLog]:
    """Configuration changes (``update``, split, traffic, stopping rules) since the last approval,
    rejection or request (since creation when there was none), oldest first: what an approver reviews."""
    experiment = get_experiment(session=session, ref=ref)
    edits: list[AuditLog] = []
    for entry in audit_log(session=session, experiment_id=experiment.id):  # newest first
        if entry.action in ("approve", "reject", "request_approval", "create"):
            break
        if entry.action in CONFIGURATION_ACTIONS:
            edits.append(entry)
    return edits[::-1]
