"""CSV export (streamed from the database) and experiment config import/export (JSON).

CSV
    :func:`iter_csv` yields CSV text chunks for one experiment's ``results`` (the
    analysis table), ``assignments`` or ``events``. Assignments and events are read
    with keyset pagination on the primary key (``WHERE id > last ORDER BY id LIMIT n``),
    so memory stays constant for millions of rows and no long-running cursor is held.
    Every file starts with a header row; timestamps are ISO-8601 in UTC
    (``2026-01-31T12:00:00.000000+00:00``); variant names are joined in; JSON
    columns (attributes, properties) are written as JSON text; quoting is the csv
    module's (commas, quotes, newlines and unicode round-trip).

    Two modes (``mode=``): ``"safe"`` (the default everywhere: library, CLI, dashboard
    downloads) neutralises spreadsheet formulas as OWASP recommends against CSV injection:
    a text cell beginning with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a
    leading ``'`` (plain numbers such as ``-5`` stay as they are). ``"exact"`` writes every
    cell unchanged, for machine consumers (pandas reads back exactly what is stored).

Config JSON
    The format of seed 001's experiment configs, which ``abcore.assign.Router.from_json``
    also reads::

        {"experiment_id": "als_vs_popgen", "salt": "als-popgen-v1",
         "variants": [{"name": "als_model", "weight": 0.6}, {"name": "popgen_model", "weight": 0.4}]}

    :func:`export_config` writes it (plus descriptive extra fields), :func:`import_config`
    creates draft experiments from it (weights normalised to percents summing to exactly 100;
    without a ``salt`` the ``experiment_id`` is the salt, as in the Router).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from abcore.experiments.errors import ExperimentError
from abcore.experiments.lifecycle import create_experiment
from abcore.experiments.records import get_experiment, get_variants
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.experiments.validation import validate_experiment
from abcore.store.tables import Experiment, ExperimentEvent, UserAssignment

What = Literal["results", "assignments", "events"]
CsvMode = Literal["safe", "exact"]
CSV_MODES: tuple[str, ...] = ("safe", "exact")
DEFAULT_CSV_MODE: CsvMode = "safe"
# OWASP CSV injection: cells starting with these characters may be evaluated as formulas by spreadsheets.
FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
WHATS: tuple[str, ...] = ("results", "assignments", "events")
DEFAULT_CHUNK_SIZE = 5_000

ASSIGNMENT_COLUMNS: tuple[str, ...] = (
    "assignment_id",
    "experiment_id",
    "experiment_name",
    "user_id",
    "variant_id",
    "variant_name",
    "is_control",
    "assigned_at",
    "attributes",
)
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "experiment_id",
    "experiment_name",
    "user_id",
    "variant_id",
    "variant_name",
    "event_type",
    "metric_name",
    "value",
    "request_id",
    "ts",
    "properties",
    "event_key",
)

ProgressCallback = Callable[[int], None]


class ExportError(ValueError):
    """An export or config request abcore refuses; the message is user-readable."""


class ConfigError(ExportError, ExperimentError):
    """A config object :func:`import_config` refuses (its format, weights or fields); the message names
    the field. Both an :class:`ExportError` and an :class:`abcore.experiments.errors.ExperimentError`."""


# --------------------------------------------------------------------------- cells


def iso_utc(value: datetime | None) -> str:
    """ISO-8601 text in UTC with microseconds (a naive datetime is taken as UTC); '' for None."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _cell(value: Any) -> Any:
    """One CSV cell: datetimes as ISO UTC, dicts/lists as JSON text, None as '', floats in full precision."""
    kind = type(value)  # exact-type fast paths first: this runs once per cell of millions of rows
    if kind is str or kind is int:
        return value
    if kind is float:
        return "" if value != value else repr(value)
    if kind is dict or kind is list:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    try:  # numpy / pandas scalars
        import numpy as np

        if isinstance(value, np.generic):
            return _cell(value.item())
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    return value


def neutralise_cell(text: str) -> str:
    """``text`` made harmless for spreadsheets (OWASP CSV injection): a leading ``'`` when it starts with
    ``=``, ``+``, ``-``, ``@``, tab or carriage return; unchanged otherwise, and for plain numbers (``-5``)."""
    if text and text[0] in "=+-@\t\r" and _PLAIN_NUMBER.fullmatch(text) is None:
        return "'" + text
    return text


def _safe_cell(value: Any) -> Any:
    cell = _cell(value)
    return neutralise_cell(cell) if type(cell) is str else cell


def _rows_to_csv(rows: Iterable[Sequence[Any]], mode: str = DEFAULT_CSV_MODE) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    cell = _safe_cell if mode == "safe" else _cell
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return buffer.getvalue()


# --------------------------------------------------------------------------- CSV export


def _experiment_and_variants(session: Session, experiment: int | str | Experiment) -> tuple[Experiment, dict[int, Any]]:
    exp = get_experiment(session=session, ref=experiment)
    variants = {v.id: v for v in get_variants(session=session, experiment_id=exp.id)}  # type: ignore[arg-type]
    return exp, variants


def _iter_assignments(session: Session, exp: Experiment, variants: dict[int, Any], chunk_size: int) -> Iterator[list[tuple]]:
    last_id = 0
    while True:
        batch = session.execute(
            select(
                UserAssignment.id,
                UserAssignment.user_id,
                UserAssignment.variant_id,
                UserAssignment.assigned_at,
                UserAssignment.attributes,
            )
            .where(UserAssignment.experiment_id == exp.id, col(UserAssignment.id) > last_id)
            .order_by(col(UserAssignment.id))
            .limit(chunk_size)
        ).all()
        if not batch:
            return
        last_id = batch[-1][0]
        rows = []
        for id_, user_id, variant_id, assigned_at, attributes in batch:
            variant = variants.get(variant_id)
            rows.append(
                (
                    id_,
                    exp.id,
                    exp.name,
                    user_id,
                    variant_id,
                    variant.name if variant else "",
                    variant.is_control if variant else "",
                    assigned_at,
                    attributes if attributes is not None else {},
                )
            )
        yield rows
        if len(batch) < chunk_size:
            return


def _iter_events(session: Session, exp: Experiment, variants: dict[int, Any], chunk_size: int) -> Iterator[list[tuple]]:
    last_id = 0
    columns = (
        ExperimentEvent.id,
        ExperimentEvent.user_id,
        ExperimentEvent.variant_id,
        ExperimentEvent.event_type,
        ExperimentEvent.metric_name,
        ExperimentEvent.value,
        ExperimentEvent.request_id,
        ExperimentEvent.ts,
        ExperimentEvent.properties,
        ExperimentEvent.event_key,
    )
    while True:
        batch = session.execute(
            select(*columns)
            .where(ExperimentEvent.experiment_id == exp.id, col(ExperimentEvent.id) > last_id)
            .order_by(col(ExperimentEvent.id))
            .limit(chunk_size)
        ).all()
        if not batch:
            return
        last_id = batch[-1][0]
        rows = []
        for id_, user_id, variant_id, event_type, metric, value, request_id, ts, properties, key in batch:
            variant = variants.get(variant_id) if variant_id is not None else None
            rows.append(
                (
                    id_,
                    exp.id,
                    exp.name,
                    user_id,
                    variant_id,
                    variant.name if variant else "",
                    event_type,
                    metric,
                    value,
                    request_id,
                    ts,
                    properties if properties is not None else {},
                    key,
                )
            )
        yield rows
        if len(batch) < chunk_size:
            return


def results_frame(*, session: Session, experiment: int | str | Experiment, **analyze_kwargs: Any) -> Any:
    """The analysis table of ``experiment`` as a pandas DataFrame (``abcore.analysis.pipeline.analyze(...).to_frame()``)."""
    from abcore.analysis.pipeline import analyze

    exp = get_experiment(session=session, ref=experiment)
    return analyze(exp, session=session, **analyze_kwargs).to_frame()


def _iter_results(session: Session, exp: Experiment, analyze_kwargs: Mapping[str, Any]) -> Iterator[list[tuple]]:
    frame = results_frame(session=session, experiment=exp, **analyze_kwargs)
    header = [str(c) for c in frame.columns]
    yield [tuple(header)]
    rows = [tuple(r) for r in frame.itertuples(index=False, name=None)]
    if rows:
        yield rows


def iter_csv(
    *,
    experiment: int | str | Experiment,
    what: str,
    engine: Engine | None = None,
    session: Session | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: ProgressCallback | None = None,
    analyze_kwargs: Mapping[str, Any] | None = None,
    mode: CsvMode = DEFAULT_CSV_MODE,
) -> Iterator[str]:
    """CSV text of one experiment's ``what`` ("results" | "assignments" | "events"), in chunks.

    The first chunk is the header row; each further chunk holds at most ``chunk_size``
    rows. Pass an ``engine`` (a session is opened for the duration of the iteration) or
    an open ``session``. ``progress`` is called with the number of data rows yielded so
    far after each chunk. ``mode`` "safe" (default) neutralises spreadsheet formulas
    (:func:`neutralise_cell`), "exact" writes cells unchanged for machine consumers.
    Raises :class:`ExportError` for an unknown ``what`` or ``mode`` and
    :class:`abcore.experiments.errors.ExperimentNotFound` for an unknown experiment — both
    before the first chunk is produced when the generator is first advanced.
    """
    if what not in WHATS:
        raise ExportError(f"Cannot export {what!r}: choose one of {', '.join(WHATS)}.")
    if chunk_size < 1:
        raise ExportError("chunk_size must be at least 1")
    if mode not in CSV_MODES:
        raise ExportError(f"Unknown CSV mode {mode!r}: choose one of {', '.join(CSV_MODES)}.")
    if (engine is None) == (session is None):
        raise ExportError("pass exactly one of engine= or session=")
    if session is None:
        assert engine is not None
        with Session(engine, expire_on_commit=False) as own:
            yield from _iter_csv(own, experiment, what, chunk_size, progress, analyze_kwargs or {}, mode)
    else:
        yield from _iter_csv(session, experiment, what, chunk_size, progress, analyze_kwargs or {}, mode)


def _iter_csv(
    session: Session,
    experiment: int | str | Experiment,
    what: str,
    chunk_size: int,
    progress: ProgressCallback | None,
    analyze_kwargs: Mapping[str, Any],
    mode: str = DEFAULT_CSV_MODE,
) -> Iterator[str]:
    exp, variants = _experiment_and_variants(session, experiment)
    if what == "results":
        chunks = _iter_results(session, exp, analyze_kwargs)
        header = next(chunks)
        yield _rows_to_csv(header, mode)
    else:
        yield _rows_to_csv([ASSIGNMENT_COLUMNS if what == "assignments" else EVENT_COLUMNS], mode)
        chunks = (_iter_assignments if what == "assignments" else _iter_events)(session, exp, variants, chunk_size)
    done = 0
    for rows in chunks:
        yield _rows_to_csv(rows, mode)
        done += len(rows)
        if progress is not None:
            progress(done)


def write_csv(
    *,
    experiment: int | str | Experiment,
    what: str,
    path: str | Path | IO[str],
    engine: Engine | None = None,
    session: Session | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: ProgressCallback | None = None,
    analyze_kwargs: Mapping[str, Any] | None = None,
    mode: CsvMode = DEFAULT_CSV_MODE,
) -> int:
    """Write the CSV of :func:`iter_csv` to ``path`` (a file path, or an open text stream); returns the data rows.

    A path is written to ``<path>.part`` and renamed when complete, so a failed export
    never leaves a truncated file behind under the final name.
    """
    counted = [0]

    def _count(n: int) -> None:
        counted[0] = n
        if progress is not None:
            progress(n)

    chunks = iter_csv(
        experiment=experiment,
        what=what,
        engine=engine,
        session=session,
        chunk_size=chunk_size,
        progress=_count,
        analyze_kwargs=analyze_kwargs,
        mode=mode,
    )
    if hasattr(path, "write"):
        for chunk in chunks:
            path.write(chunk)  # type: ignore[union-attr]
        return counted[0]
    target = Path(path)  # type: ignore[arg-type]
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            for chunk in chunks:
                handle.write(chunk)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return counted[0]


# --------------------------------------------------------------------------- config JSON


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


def export_config(*, session: Session, experiment: int | str | Experiment) -> dict[str, Any]:
    """One experiment as a seed-001 config dict (``experiment_id`` = name, ``salt``, ``variants`` with weights).

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


def _config_to_create(item: Any, index: int, created_by: str) -> ExperimentCreate:
    where = f"config #{index + 1}"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(item).__name__}")
    name = item.get("experiment_id", item.get("name"))
    if isinstance(name, int) and not isinstance(name, bool) and abs(name) >= 10**200:
        raise ConfigError(f"{where}: 'experiment_id' is a {len(str(abs(name)))}-digit number; use a name")
    if isinstance(name, bool) or not isinstance(name, str | int) or str(name).strip() == "":
        raise ConfigError(f"{where}: 'experiment_id' (the experiment name) is missing or empty")
    where = f"config {str(name)[:80]!r}"
    raw_variants = item.get("variants")
    if not isinstance(raw_variants, list) or not raw_variants:
        raise ConfigError(f"{where}: 'variants' must be a non-empty list of {{name, weight}}")
    names: list[str] = []
    weights: list[float] = []
    for j, v in enumerate(raw_variants):
        if not isinstance(v, Mapping) or not isinstance(v.get("name"), str):
            raise ConfigError(f"{where}: variant #{j + 1} needs a string 'name'")
        names.append(v["name"])
        weights.append(v.get("weight", 1.0))
    try:
        percents = normalise_weights(weights)
    except ExportError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    variants = [
        VariantCreate(
            name=n,
            allocation_pct=p,
            is_control=bool(v.get("is_control", False)),
            config=v.get("config") if isinstance(v.get("config"), Mapping) else {},
        )
        for n, p, v in zip(names, percents, raw_variants, strict=True)
    ]
    fields: dict[str, Any] = {k: item[k] for k in _CONFIG_EXTRA_FIELDS if k in item and item[k] is not None}
    salt = item.get("salt")
    if salt is None or salt == "":
        salt = str(name).strip()  # seed 001 / abcore.assign.Router: without a salt the experiment id is the salt
    if not isinstance(salt, str) or not salt.strip():
        raise ConfigError(f"{where}: 'salt' must be a non-empty string")
    if len(salt) > 200:
        raise ConfigError(f"{where}: 'salt' is {len(salt)} characters long (at most 200)")
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
    if new_metrics:
        from abcore.metrics import import_metrics

        import_metrics(session=session, items=new_metrics)
    return [create_experiment(session=session, data=create, actor=actor) for create in creates]


def dump_configs(configs: Sequence[Mapping[str, Any]]) -> str:
    """JSON text of one config (a single object) or several (a list), pretty-printed, unicode kept."""
    payload: Any = configs[0] if len(configs) == 1 else list(configs)
    return json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n"
