"""Checks of experiment input: every problem as a readable sentence, before anything is stored.

:func:`validate_experiment` checks a whole :class:`~abcore.experiments.schemas.ExperimentCreate`;
:func:`validate_auto_stop` and :func:`normalize_auto_stop` the stopping rules; :func:`text_problems` and
:func:`check_actor` short text fields, :func:`name_problems` names (experiment, variant, metric, model). Targeting rules are checked by
:func:`abcore.assign.targeting.validate_targeting`, JSON values by :func:`abcore.store.values.json_value_problem`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlmodel import Session, col, select

from abcore.assign.interleaving import INTERLEAVING_METHODS, max_rankers
from abcore.assign.layers import HOLDOUT_KIND, HOLDOUT_VARIANTS
from abcore.assign.targeting import validate_targeting
from abcore.experiments.errors import ExperimentError
from abcore.experiments.schemas import (
    ALLOCATION_TOLERANCE,
    AUTO_STOP_CHOICES,
    AUTO_STOP_DEFAULTS,
    AUTO_STOP_LIMITS,
    EXPERIMENT_KINDS,
    MAX_NAME_LENGTH,
    ExperimentCreate,
    VariantCreate,
)
from abcore.metrics import DIRECTIONS
from abcore.store.tables import Experiment, Layer, Model
from abcore.store.values import (
    INT32_MAX,
    has_lone_surrogate,
    is_id_text,
    is_number,
    json_value_problem,
    name_problem,
)


def validate_auto_stop(rules: Any) -> list[str]:
    """Readable problems with an ``auto_stop`` mapping ([] when it is well formed; {} means "not watched").

    Keys: ``guardrails`` (pause | stop | alert | off), ``success`` (stop | alert | off), ``srm``,
    ``novelty`` and ``differential`` (pause | alert | off), ``max_days`` (a positive number of days or
    null), ``max_users`` (a positive whole number of exposed users or null), ``min_days`` / ``min_users`` (>= 0: no significance-based
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
        limit_problem = _auto_stop_limit_problem(key, rules[key])
        if limit_problem:
            problems.append(limit_problem)
    if not problems and rules:
        problems += _auto_stop_order_problems(rules)
    return problems


def _auto_stop_limit_problem(key: str, value: Any) -> str | None:
    """Why ``value`` is not a valid limit for the stopping rule ``key`` (None when it is).

    ``*_users`` limits are whole numbers, ``*_days`` limits numbers; ``max_*`` limits are more than 0,
    ``min_*`` limits at least 0.
    """
    whole = key.endswith("_users")
    if not is_number(value) or (whole and float(value) != int(value)):
        kind = "a whole number of users" if whole else "a number of days"
        return f"Stopping rule {key!r} must be {kind}; got {value!r}."
    if key.startswith("max_") and value <= 0:
        return f"Stopping rule {key!r} must be more than 0 (or null for no limit); got {value!r}."
    if key.startswith("min_") and value < 0:
        return f"Stopping rule {key!r} cannot be negative; got {value!r}."
    return None


def _auto_stop_order_problems(rules: Mapping[str, Any]) -> list[str]:
    """A sentence for each unit (days, users) whose minimum exceeds its maximum, defaults filled in."""
    merged = normalize_auto_stop(rules)
    problems: list[str] = []
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


def text_problems(label: str, value: str, max_length: int | None = MAX_NAME_LENGTH) -> list[str]:
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


def name_problems(label: str, value: str) -> list[str]:
    """Problems with a name (of an experiment, a variant, a metric or a model): those of :func:`text_problems`,
    and control or invisible formatting characters (:func:`abcore.store.values.name_problem`)."""
    problems = text_problems(label, value)
    character = name_problem(label, value)
    if character is not None and "\x00" not in value:  # a NUL is already reported
        problems.append(character)
    return problems


def check_actor(actor: str) -> None:
    problems = text_problems("actor name", actor)
    if problems:
        raise ExperimentError(" ".join(problems), problems)


def validate_experiment(
    data: ExperimentCreate, *, session: Session | None = None, existing_id: int | None = None
) -> list[str]:
    """Readable problems with ``data``; an empty list means it can be created.

    ``existing_id``: the experiment ``data`` describes after an edit (its own name is not a duplicate).
    Checks: a non-empty name (unique in the store when a session is given), at least two
    variants with unique non-empty names, allocations that are finite, more than 0 and
    sum to exactly 100, at most one control, known models, a traffic share in (0, 1],
    well-formed targeting rules, success criteria and minimums.
    """
    problems = _name_problems(data.name, session, existing_id)
    if data.kind not in EXPERIMENT_KINDS:
        problems.append(f"The kind must be one of {', '.join(EXPERIMENT_KINDS)}; got {data.kind!r}.")
    problems += _interleaving_problems(data)
    problems += _variant_problems(data.variants, session)
    if not is_number(data.traffic_allocation) or not 0 < data.traffic_allocation <= 1:
        problems.append("The traffic share must be more than 0 % and at most 100 %.")
    problems.extend(validate_targeting(data.targeting))
    problems += _text_field_problems(data)
    problems += _criteria_problems(data.success_criteria or {})
    problems.extend(validate_auto_stop(data.auto_stop))
    problems += _minimum_problems(data)
    problems += layer_problems(data, session)
    return problems


def interleaving_method_of(data: ExperimentCreate) -> str | None:
    """The method stored for ``data``: ``team_draft`` when an interleaving experiment names none, None for other kinds."""
    if data.kind != "interleaving":
        return None
    return data.interleaving_method or "team_draft"


def _interleaving_problems(data: ExperimentCreate) -> list[str]:
    """An interleaving method only on an interleaving experiment, a known one, and as many rankers as it merges."""
    method = data.interleaving_method
    if data.kind != "interleaving":
        if method is not None:
            return [f"An interleaving method is set only on an interleaving experiment; this one is {data.kind!r}."]
        return []
    method = interleaving_method_of(data)
    if method not in INTERLEAVING_METHODS:
        return [f"The interleaving method must be one of {', '.join(INTERLEAVING_METHODS)}; got {method!r}."]
    most = max_rankers(method)
    if most is not None and len(data.variants) > most:
        return [f"The {method} method compares exactly {most} rankers; use team_draft for {len(data.variants)}."]
    return []


def _name_problems(raw_name: str, session: Session | None, existing_id: int | None) -> list[str]:
    """The experiment name: present, storable, and (with a session) not another experiment's."""
    problems: list[str] = []
    name = (raw_name or "").strip()
    found = name_problems("name", name)
    if not name:
        problems.append("The experiment needs a name.")
    elif found:
        problems.extend(found)
    elif is_id_text(name):
        problems.append(
            f"The experiment name {name!r} is all digits: a reference made of digits is always an id, so add a"
            " letter (e.g. 'exp-" + name[:20] + "')."
        )
    elif session is not None and session.exec(
        select(Experiment.id).where(Experiment.name == name, col(Experiment.id) != (existing_id or -1))
    ).first():
        problems.append(f"An experiment named {name!r} already exists.")
    return problems


def _variant_problems(variants: list[VariantCreate], session: Session | None) -> list[str]:
    """The arms: at least two, names unique and storable, configs JSON, a split summing to 100, at most one
    control, model ids that are models' ids (and known to the store when a session is given)."""
    problems: list[str] = []
    if len(variants) < 2:
        problems.append("An experiment needs at least two variants.")
    names = [(v.name or "").strip() for v in variants]
    problems += _variant_name_problems(names)
    for v, n in zip(variants, names, strict=True):
        config_problem = json_value_problem(f"config of variant {n[:80]!r}", v.config)
        if config_problem:
            problems.append(config_problem)
    duplicates = sorted({n for n in names if n and names.count(n) > 1})
    if duplicates:
        problems.append(f"Variant names must be unique: {', '.join(duplicates)} appears more than once.")
    problems += allocation_problems([v.allocation_pct for v in variants])
    if sum(1 for v in variants if v.is_control) > 1:
        problems.append("Only one variant can be the control.")
    problems += _model_id_problems({v.model_id for v in variants if v.model_id is not None}, session)
    return problems


def _variant_name_problems(names: list[str]) -> list[str]:
    """The stripped variant names: none empty, each a valid name (:func:`name_problems`)."""
    problems: list[str] = []
    if any(not n for n in names):
        problems.append("Every variant needs a name.")
    for n in dict.fromkeys(n for n in names if n):
        problems += name_problems("variant name", n)
    return list(dict.fromkeys(problems))


def allocation_problems(allocations: list[Any]) -> list[str]:
    """The split in percent, the one rule every surface applies (create, edit, the split of a running
    experiment; dashboard, HTTP API, CLI): finite numbers, each more than 0 (a 0 % variant would never
    get a user), summing to exactly 100 (within :data:`ALLOCATION_TOLERANCE` percentage points).

    At most one sentence: the first rule broken, in that order. Sums are written with every decimal
    that matters (``99.999``, ``100.0001``), never rounded to "100".
    """
    if not all(is_number(a) for a in allocations):
        return ["Every allocation must be a finite number."]
    if any(a < 0 for a in allocations):
        return ["Allocations cannot be negative."]
    if any(a == 0 for a in allocations):
        return ["Every variant needs more than 0 % of the traffic (a 0 % variant would never get a user)."]
    total = sum(allocations)
    if allocations and abs(total - 100.0) > ALLOCATION_TOLERANCE:
        return [f"Allocations must sum to exactly 100 %; they sum to {exact_percent(total)} %."]
    return []


def exact_percent(value: float) -> str:
    """A percentage with the decimals the allocation rule sees (up to 6, float noise dropped):
    ``99.999 -> '99.999'``, ``100.0001 -> '100.0001'``, ``90.0 -> '90'``."""
    return f"{round(float(value), 6):.12g}"


def _model_id_problems(model_ids: set[Any], session: Session | None) -> list[str]:
    """The variants' model ids: ints in 1..INT32_MAX, and (with a session) ids of stored models."""
    problems: list[str] = []
    out_of_range = sorted(m for m in model_ids if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= INT32_MAX)
    if out_of_range:
        problems.append(f"A variant's model_id must be a model's id (1 to {INT32_MAX:,}); got {out_of_range[0]!r}.")
        model_ids = model_ids - set(out_of_range)
    if session is not None and model_ids:
        known = set(session.exec(select(Model.id).where(col(Model.id).in_(model_ids))).all())
        missing = sorted(model_ids - known)
        if missing:
            problems.append(f"Unknown model id(s): {', '.join(map(str, missing))}.")
    return problems


def _text_field_problems(data: ExperimentCreate) -> list[str]:
    """A primary metric, and every text field storable (metric names, salt, creator, description, hypothesis)."""
    problems: list[str] = []
    if not (data.primary_metric or "").strip():
        problems.append("The experiment needs a primary metric.")
    texts = [
        ("salt", data.salt or "", MAX_NAME_LENGTH),
        ("creator name", data.created_by or "", MAX_NAME_LENGTH),
        ("description", data.description or "", None),
        ("hypothesis", data.hypothesis or "", None),
    ]
    for label, value, max_length in texts:
        problems.extend(text_problems(label, value, max_length))
    problems += name_problems("primary metric", data.primary_metric or "")
    for label, metrics in (("secondary metric", data.secondary_metrics), ("guardrail metric", data.guardrail_metrics)):
        for metric in metrics:
            problems += name_problems(label, metric)
    return problems


def _criteria_problems(criteria: dict[str, Any]) -> list[str]:
    """The success criteria: JSON, a known direction, a non-negative minimum effect, a confidence in [0.5, 1)."""
    problems: list[str] = []
    criteria_problem = json_value_problem("success_criteria", criteria)
    if criteria_problem:
        problems.append(criteria_problem)
    if criteria:
        if criteria.get("direction", "increase") not in DIRECTIONS:
            problems.append("The success direction must be 'increase' or 'decrease'.")
        threshold = criteria.get("threshold", 0.0)
        if not is_number(threshold) or threshold < 0:
            problems.append("The minimum effect must be a non-negative number.")
        confidence = criteria.get("confidence", 0.95)
        if not is_number(confidence) or not 0.5 <= confidence < 1:
            problems.append("The confidence level must lie between 50 % and 100 % (e.g. 0.95).")
    return problems


def _minimum_problems(data: ExperimentCreate) -> list[str]:
    """The minimum duration and sample size: whole numbers from 0 to what the store's INTEGER holds."""
    problems: list[str] = []
    for label, field, value in (
        ("minimum duration", "min_duration_days", data.min_duration_days),
        ("minimum samples", "min_samples_per_variant", data.min_samples_per_variant),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"The {label} must be a whole number of at least 0.")
        elif value > INT32_MAX:
            problems.append(f"The {label} ({field}) must be at most {INT32_MAX:,}; got a {len(str(value))}-digit number.")
    return problems


def layer_problems(data: ExperimentCreate, session: Session | None) -> list[str]:
    """Problems with the layer fields of ``data``: a known layer, a share in (0, 100], a holdout in no layer
    covering known layers; the variants of a holdout (``holdout`` and ``exposed``, traffic 100 %, no targeting)."""
    problems: list[str] = []
    if data.layer is not None:
        if data.kind == HOLDOUT_KIND:
            problems.append("A holdout belongs to no layer; name the layers it covers instead.")
        elif not isinstance(data.layer, str) or not data.layer.strip():
            problems.append("The layer must be a layer's name.")
        elif session is not None and session.exec(select(Layer.id).where(Layer.name == data.layer.strip())).first() is None:
            problems.append(f"Unknown layer {data.layer!r} (create it first).")
        if not is_number(data.layer_share) or not 0 < data.layer_share <= 100:  # type: ignore[operator]
            problems.append("The layer share must be more than 0 % and at most 100 % of the layer.")
    elif data.layer_share is not None:
        problems.append("A layer share needs a layer.")
    if data.kind == HOLDOUT_KIND:
        problems += _holdout_problems(data, session)
    elif data.holdout_layers is not None:
        problems.append("Only a holdout covers layers.")
    return problems


def _holdout_problems(data: ExperimentCreate, session: Session | None) -> list[str]:
    """A holdout: exactly the variants ``holdout`` and ``exposed``, all traffic, no targeting, known covered layers."""
    problems: list[str] = []
    if sorted(v.name.strip() for v in data.variants) != sorted(HOLDOUT_VARIANTS):
        problems.append("A holdout has exactly two variants, 'holdout' and 'exposed'.")
    if data.traffic_allocation != 1.0 or data.targeting:
        problems.append("A holdout takes its percent of all users: traffic share 100 % and no targeting.")
    names = data.holdout_layers
    if names is not None and session is not None:
        known = set(session.exec(select(Layer.name).where(col(Layer.name).in_(names))).all())
        missing = [n for n in names if n not in known]
        if missing:
            problems.append(f"Unknown layer(s) for the holdout: {', '.join(map(repr, missing))}.")
    return problems


def raise_problems(problems: list[str]) -> None:
    if problems:
        raise ExperimentError("The experiment cannot be saved: " + " ".join(problems), problems)
