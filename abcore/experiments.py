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

import math
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field as PydanticField
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, SQLModel, col, select

from abcore.models import AuditLog, Experiment, ExperimentStatus, Model, Variant, utcnow

MAX_NAME_LENGTH = 200
ALLOCATION_TOLERANCE = 1e-6
TARGETING_OPS = ("eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "user_ids")
DIRECTIONS = ("increase", "decrease")
# Limits of the store's columns (abcore.models): INTEGER is 32-bit on PostgreSQL.
INT32_MAX = 2**31 - 1
# JSON fields (variant config, targeting, success criteria): how deep they may nest, and the integer range
# kept exactly by every consumer (SQLite's JSON functions and most JSON readers stop at 64 bits).
JSON_MAX_DEPTH = 32
JSON_INT_LIMIT = 2**63

# Automated stopping rules (abcore.watch): the contract of ``ExperimentCreate.auto_stop``.
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


class ExperimentError(ValueError):
    """A request abcore refuses; the message is meant for the person who made it."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


class ExperimentNotFound(ExperimentError):
    """No experiment has that id or name."""


class InvalidTransition(ExperimentError):
    """The lifecycle action is not allowed from the experiment's current status."""


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
    # Stopping rules for abcore.watch ({} = not watched); see validate_auto_stop for the keys.
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


def validate_experiment(data: ExperimentCreate, *, session: Session | None = None) -> list[str]:
    """Readable problems with ``data``; an empty list means it can be created.

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
    elif session is not None and session.exec(select(Experiment.id).where(Experiment.name == name)).first():
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
        _audit(session, experiment.id, "create", actor, None, ExperimentStatus.DRAFT.value, name=experiment.name)
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


def list_experiments(*, session: Session, status: str | None = None) -> list[Experiment]:
    """Experiments, newest first, optionally only those in ``status``."""
    query = select(Experiment).order_by(col(Experiment.created_at).desc(), col(Experiment.id).desc())
    if status is not None:
        query = query.where(Experiment.status == status)
    return list(session.exec(query).all())


def get_variants(*, session: Session, experiment_id: int) -> list[Variant]:
    """The experiment's variants in form order (control first unless configured otherwise)."""
    return list(
        session.exec(select(Variant).where(Variant.experiment_id == experiment_id).order_by(Variant.position)).all()
    )


def _transition(
    session: Session, ref: int | str | Experiment, action: str, actor: str, **details: Any
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
        update(Experiment).where(col(Experiment.id) == experiment.id, col(Experiment.status) == current).values(**values)
    )
    if result.rowcount != 1:  # somebody else changed it between our read and our write
        session.rollback()
        fresh = get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]
        raise InvalidTransition(
            f"Cannot {action} experiment {experiment.name!r}: it was just changed to {fresh.status} by someone else."
        )
    _audit(session, experiment.id, action, actor, current, target.value, **details)
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


def start_experiment(*, session: Session, ref: int | str | Experiment, actor: str = "") -> Experiment:
    """draft -> running: users start being assigned."""
    return _transition(session, ref, "start", actor)


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
    _audit(session, experiment.id, "set_auto_stop", actor, experiment.status, experiment.status, before=before, after=after)
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


def audit_log(*, session: Session, experiment_id: int | None = None) -> list[AuditLog]:
    """Audit entries, newest first; all of them, or one experiment's."""
    query = select(AuditLog).order_by(col(AuditLog.ts).desc(), col(AuditLog.id).desc())
    if experiment_id is not None:
        query = query.where(AuditLog.experiment_id == experiment_id)
    return list(session.exec(query).all())
