"""Experiment configs as JSON: export, import, weights normalised to percents.

The format is the split config that :meth:`abcore.assign.Router.from_json` also reads::

    {"experiment_id": "als_vs_popgen", "salt": "als-popgen-v1",
     "variants": [{"name": "als_model", "weight": 0.6}, {"name": "popgen_model", "weight": 0.4}]}

:func:`export_config` writes it (plus descriptive extra fields: status, metrics, targeting, stopping
rules, the metric definitions and each variant's model by name and version), :func:`import_config`
creates draft experiments from it (weights normalised to percents summing to exactly 100;
without a ``salt`` the ``experiment_id`` is the salt, as in the Router).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session

from abcore.experiments.errors import ExperimentError
from abcore.experiments.layers import layer_names
from abcore.experiments.lifecycle import add_draft, store_refusals
from abcore.experiments.records import get_experiment, get_variants
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.experiments.validation import check_actor, validate_experiment
from abcore.io.csv_export import ExportError
from abcore.store.tables import Experiment

__all__ = [
    "ConfigError",
    "dump_configs",
    "export_config",
    "import_config",
    "load_config_file",
    "normalise_weights",
]


class ConfigError(ExportError, ExperimentError):
    """A config object :func:`import_config` refuses (its format, weights or fields); the message names
    the field. Both an :class:`ExportError` and an :class:`abcore.experiments.errors.ExperimentError`."""


def normalise_weights(weights: Sequence[float], *, total: int = 100, decimals: int = 2) -> list[float]:
    """Relative weights as percents with ``decimals`` places summing to exactly ``total``.

    Largest-remainder (Hamilton) rounding in units of ``10**-decimals``: each share is
    floored, then the units left over go to the largest remainders (ties: earlier first).
    Raises :class:`ExportError` for an empty list, a negative / NaN / infinite weight or a zero sum.
    """
    if not weights:
        raise ExportError("a config needs at least one variant")
    values = []
    for w in weights:
        try:
            number = float(w) if isinstance(w, int | float) and not isinstance(w, bool) else math.nan
        except OverflowError:  # an integer beyond the float range
            number = math.inf
        if not math.isfinite(number) or number < 0:
            shown = repr(w) if not isinstance(w, int) or abs(w) < 10**20 else f"a {len(str(abs(w)))}-digit integer"
            raise ExportError(f"a variant weight must be a finite number >= 0, got {shown[:60]}")
        values.append(number)
    try:
        weight_sum = math.fsum(values)
    except OverflowError:
        weight_sum = math.inf
    if not math.isfinite(weight_sum):
        raise ExportError("the variant weights are too large: their sum is not a finite number (use relative "
                          "weights such as 60 and 40)")
    if weight_sum <= 0:
        raise ExportError("the variant weights sum to 0")
    scale = 10**decimals
    units = total * scale
    exact = [v / weight_sum * units for v in values]
    floors = [math.floor(x) for x in exact]
    left = units - sum(floors)
    order = sorted(range(len(values)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return [f / scale for f in floors]


_CONFIG_EXTRA_FIELDS = (
    "kind",  # ab | interleaving | holdout
    "interleaving_method",  # team_draft | balanced | probabilistic (interleaving experiments)
    "description",
    "hypothesis",
    "traffic_allocation",
    "targeting",
    "primary_metric",
    "secondary_metrics",
    "guardrail_metrics",
    "success_criteria",
    "min_duration_days",
    "min_samples_per_variant",
    "auto_stop",  # stopping rules (abcore.watch.runner); validated again on import
)
#: The layer (name) and share of an experiment, the layers (names) a holdout covers; the layers must exist on import.
_LAYER_FIELDS = ("layer", "layer_share", "holdout_layers")


def export_config(*, session: Session, experiment: int | str | Experiment) -> dict[str, Any]:
    """One experiment as a config dict (``experiment_id`` = name, ``salt``, ``variants`` with weights).

    Weights are the allocation percents (relative weights summing to 100, which routers
    normalise exactly as the assigner does, so the config routes identically). Extra
    fields (status, description, traffic_allocation, targeting, metrics, variant
    ``is_control``/``config``/``model`` — the model as ``{"name", "version"}``, resolved again on
    import) ride along; :func:`import_config` uses them, routers ignore them.
    """
    exp = get_experiment(session=session, ref=experiment)
    variants = get_variants(session=session, experiment_id=exp.id)  # type: ignore[arg-type]
    models = _variant_models(session, variants)
    data: dict[str, Any] = {
        "experiment_id": exp.name,
        "salt": exp.salt,
        "variants": [
            {
                "name": v.name,
                "weight": v.allocation_pct,
                "is_control": bool(v.is_control),
                "config": v.config or {},
                **({"model": models[v.model_id]} if v.model_id in models else {}),
            }
            for v in variants
        ],
        "status": exp.status,
    }
    for field in _CONFIG_EXTRA_FIELDS:
        data[field] = getattr(exp, field)
    data["layer"], data["holdout_layers"] = layer_names(session, exp)
    data["layer_share"] = exp.layer_share
    data["metric_definitions"] = _metric_definitions(session, exp)
    return data


def _variant_models(session: Session, variants: Sequence[Any]) -> dict[int, dict[str, str]]:
    """``{model_id: {"name", "version"}}`` of the models the variants serve (the link survives an export:
    ids differ between stores, name and version do not)."""
    from abcore.experiments.ml_models import get_model

    out: dict[int, dict[str, str]] = {}
    for v in variants:
        if v.model_id is not None and v.model_id not in out:
            model = get_model(session=session, model_id=v.model_id)
            out[v.model_id] = {"name": model.name, "version": model.version}
    return out


def _resolve_models(session: Session, items: Sequence[Any], creates: Sequence[ExperimentCreate]) -> list[str]:
    """Set each variant's ``model_id`` from its ``model`` ``{"name", "version"}``; the problems otherwise.

    A missing ``version`` means the newest registered version of that name.
    """
    from abcore.experiments.ml_models import find_model, model_versions

    problems: list[str] = []
    for item, create in zip(items, creates, strict=True):
        raw_variants = item.get("variants") if isinstance(item, Mapping) else None
        for raw, variant in zip(raw_variants or [], create.variants, strict=False):
            ref = raw.get("model") if isinstance(raw, Mapping) else None
            if ref is None:
                continue
            where = f"{create.name[:80]!r}, variant {variant.name!r}"
            name = ref.get("name") if isinstance(ref, Mapping) else None
            version = ref.get("version") if isinstance(ref, Mapping) else None
            if not isinstance(name, str) or not name.strip() or (
                    version is not None and (isinstance(version, bool) or not isinstance(version, str | int))):
                problems.append(f"{where}: 'model' must be an object with a string 'name' and a 'version'")
                continue
            model = find_model(session=session, name=name, version=None if version is None else str(version))
            if model is None:
                known = model_versions(session=session, name=name)
                wanted = repr(name.strip()) + ("" if version is None else f" version {str(version).strip()!r}")
                hint = (f" (registered versions: {', '.join(known)})" if known
                        else "; register it on the Models page or with abcore.experiments.ml_models.create_model first")
                problems.append(f"{where}: the model {wanted} is not registered{hint}")
                continue
            variant.model_id = model.id
    return problems


def _metric_definitions(session: Session, exp: Experiment) -> list[dict[str, Any]]:
    """The registry definitions (:mod:`abcore.metrics`) of the experiment's metrics, ratio inputs included."""
    from abcore.metrics import metric_to_dict, resolve_specs

    crit = (exp.success_criteria or {}).get("metric")
    names = [exp.primary_metric, *(exp.secondary_metrics or []), *(exp.guardrail_metrics or []), *([crit] if crit else [])]
    specs = resolve_specs(session=session, names=names)
    out = []
    for name in dict.fromkeys(names):
        if name in specs:
            item = metric_to_dict(specs[name])
            out.append(item)
    return out


def _import_metric_definitions(session: Session, items: Sequence[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``metric_definitions`` of config objects that are not in the registry yet, and their problems.

    Definitions already in the registry are left as they are (the store's definition wins)."""
    from abcore.metrics import resolve_specs, validate_metric

    wanted: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for index, item in enumerate(items):
        defs = item.get("metric_definitions") if isinstance(item, Mapping) else None
        if defs is None:
            continue
        if not isinstance(defs, list):
            problems.append(f"config #{index + 1}: 'metric_definitions' must be a list of metric objects")
            continue
        for d in defs:
            if not isinstance(d, Mapping):
                problems.append(f"config #{index + 1}: every metric definition must be an object")
                continue
            problems += [f"metric {d.get('name')!r}: {p}" for p in validate_metric(d)]
            if isinstance(d.get("name"), str):
                wanted.setdefault(d["name"], dict(d))
    known = resolve_specs(session=session, names=list(wanted))
    return [d for n, d in wanted.items() if n not in known], problems


def _config_name(item: Any, index: int) -> str | int:
    """The experiment name of config number ``index`` (``experiment_id``, else ``name``); ConfigError when unusable."""
    where = f"config #{index + 1}"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(item).__name__}")
    name = item.get("experiment_id", item.get("name"))
    if isinstance(name, int) and not isinstance(name, bool) and abs(name) >= 10**200:
        raise ConfigError(f"{where}: 'experiment_id' is a {len(str(abs(name)))}-digit number; use a name")
    if isinstance(name, bool) or not isinstance(name, str | int) or str(name).strip() == "":
        raise ConfigError(f"{where}: 'experiment_id' (the experiment name) is missing or empty")
    return name


def _config_variants(raw_variants: Any, where: str) -> list[VariantCreate]:
    """The variants of a config (``[{name, weight, is_control, config}]``), weights normalised to percents."""
    if not isinstance(raw_variants, list) or not raw_variants:
        raise ConfigError(f"{where}: 'variants' must be a non-empty list of {{name, weight}}")
    for j, v in enumerate(raw_variants):
        if not isinstance(v, Mapping) or not isinstance(v.get("name"), str):
            raise ConfigError(f"{where}: variant #{j + 1} needs a string 'name'")
    try:
        percents = normalise_weights([v.get("weight", 1.0) for v in raw_variants])
    except ExportError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return [
        VariantCreate(
            name=v["name"],
            allocation_pct=p,
            is_control=bool(v.get("is_control", False)),
            config=v.get("config") if isinstance(v.get("config"), Mapping) else {},
        )
        for p, v in zip(percents, raw_variants, strict=True)
    ]


def _config_salt(item: Mapping[str, Any], name: str | int, where: str) -> str:
    salt = item.get("salt")
    if salt is None or salt == "":
        salt = str(name).strip()  # as in abcore.assign.Router: without a salt the experiment id is the salt
    if not isinstance(salt, str) or not salt.strip():
        raise ConfigError(f"{where}: 'salt' must be a non-empty string")
    if len(salt) > 200:
        raise ConfigError(f"{where}: 'salt' is {len(salt)} characters long (at most 200)")
    return salt


def _config_to_create(item: Any, index: int, created_by: str) -> ExperimentCreate:
    name = _config_name(item, index)
    where = f"config {str(name)[:80]!r}"
    variants = _config_variants(item.get("variants"), where)
    fields: dict[str, Any] = {
        k: item[k] for k in (*_CONFIG_EXTRA_FIELDS, *_LAYER_FIELDS) if k in item and item[k] is not None
    }
    salt = _config_salt(item, name, where)
    try:
        return ExperimentCreate(name=str(name), variants=variants, salt=salt, created_by=created_by, **fields)
    except ValidationError as exc:  # pydantic validation of the extra fields: name the field
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or "config"
        raise ConfigError(f"{where}: {field}: {first.get('msg', 'invalid value')}"[:300]) from None
    except Exception as exc:  # anything else pydantic raises while coercing
        raise ConfigError(f"{where}: {exc}".splitlines()[0][:300]) from None


def load_config_file(path: str | Path) -> list[dict[str, Any]]:
    """The config objects in a JSON file holding one object or a list of them."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file") from None
    except RecursionError:
        raise ExportError(f"{path}: not accepted: arrays or objects nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integers beyond Python's digit limit
        raise ExportError(f"{path}: not valid JSON ({str(exc).splitlines()[0][:200]})") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ExportError(f"{path}: the list is empty")
    return items


def import_config(*, session: Session, data: Any, actor: str = "") -> list[Experiment]:
    """Create one draft experiment per config object in ``data`` (an object or a list).

    All configs are checked first (format, weights, :func:`abcore.experiments.validation.validate_experiment`,
    names unique within the file, their ``metric_definitions``, each variant's ``model`` name and version
    registered in this store); nothing is created unless all pass.
    Metric definitions not yet in the registry are defined; existing ones are kept as they are. Raises
    :class:`ExportError` / :class:`abcore.experiments.errors.ExperimentError` with the problems.
    """
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ExportError("no experiment config given")
    creates = [_config_to_create(item, i, actor) for i, item in enumerate(items)]
    problems: list[str] = _resolve_models(session, items, creates)
    seen: set[str] = set()
    for create in creates:
        key = create.name.strip()
        if key in seen:
            problems.append(f"{key!r}: the name appears twice in the file")
        seen.add(key)
        problems.extend(f"{key[:80]!r}: {p}" for p in validate_experiment(create, session=session))
    new_metrics, metric_problems = _import_metric_definitions(session, items)
    problems.extend(metric_problems)
    if problems:
        raise ExperimentError("; ".join(problems), problems)
    return _write_all(session, creates, new_metrics, actor)


def _write_all(session: Session, creates: Sequence[ExperimentCreate], new_metrics: Sequence[Mapping[str, Any]],
               actor: str) -> list[Experiment]:
    """Write the validated drafts and the new metric definitions in one transaction: all of them, or none
    (what the store still refuses rolls everything back and is raised as ExperimentError)."""
    from abcore.metrics import MetricCreate, new_metric_row

    check_actor(actor)
    with store_refusals(session, [c.name for c in creates]):
        for d in new_metrics:
            row = new_metric_row(session=session, data={k: v for k, v in d.items() if k in MetricCreate.model_fields})
            row.archived = bool(d.get("archived", False))
            session.add(row)
        experiments = [add_draft(session, create, actor) for create in creates]
        session.commit()
    for experiment in experiments:
        session.refresh(experiment)
    return experiments


def dump_configs(configs: Sequence[Mapping[str, Any]]) -> str:
    """JSON text of one config (a single object) or several (a list), pretty-printed, unicode kept."""
    payload: Any = configs[0] if len(configs) == 1 else list(configs)
    return json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n"
