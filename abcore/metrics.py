"""Metric definitions (the registry, table ``ab_metrics``): kind, direction, window, capping; validation.

A metric definition says what one user's value is, over which window after the user's first
exposure, which direction is better and how values are capped. Experiments refer to metrics by
name (``primary_metric``, ``secondary_metrics``, ``guardrail_metrics``); events carry the name in
``metric_name``. Every colour, chance to win and verdict of :mod:`abcore.analysis.pipeline` /
:mod:`abcore.analysis.verdict` reads the definition, never the data::

    from abcore.metrics import MetricCreate, define_metric, update_metric, get_metric, list_metrics
    define_metric(session=s, data=MetricCreate(name="latency_ms", kind="event_mean", direction="decrease"))
    update_metric(session=s, name="latency_ms", changes={"cap": "percentile", "cap_upper": 0.99})
    archive_metric(session=s, name="latency_ms")

Kinds (the per-user value ``x`` is computed from the user's qualifying events, i.e. events of
the metric at or after ``first exposure + delay_hours`` and before ``first exposure + delay_hours
+ window_hours``):

* ``binomial``: 1 when the user has any qualifying event (the conversion rate), else 0.
* ``count``: the number of qualifying events.
* ``mean`` ("Mean per user"): the sum of the qualifying event values (NULL value = 1), averaged over
  exposed users (users without events count 0): revenue per user, watch minutes per user.
* ``event_mean`` ("Mean per event"): the mean of the qualifying event values over all the variant's events,
  sum of values / number of events (NULL value = 1): latency per request, order value per order. A ratio of
  per-user sums (the user's values over the user's event count), analysed with the delta method over users
  (Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics", section 3): the events of
  one user are not independent, so they are not treated as independent observations. A ``mean`` latency
  moves with requests per user as well as with the latency itself; an ``event_mean`` one does not.
* ``ratio``: per-user sums of the ``numerator`` and ``denominator`` event metrics; the variant value
  is sum(numerator) / sum(denominator), compared with the delta method.
* ``quantile``: the ``quantile`` (e.g. 0.5, 0.95, 0.99) of the qualifying event values, with an
  order-statistic confidence interval (Deng, Knoblich & Lu 2018).

Capping (``count``, ``mean``, ``ratio``; not ``event_mean``, whose value is a per-event mean): ``cap="absolute"`` clips each user's value to
``[cap_lower, cap_upper]``; ``cap="percentile"`` takes ``cap_upper`` (and optional ``cap_lower``)
as quantiles in (0, 1] of the per-user values pooled over all variants, computed once, then clips
every user to those values. Capping happens before aggregation.

``min_detectable_effect`` (relative, e.g. 0.02 = 2 %) is the default threshold a success metric
must beat before the verdict says "ship".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Field, Session, SQLModel, select

from abcore.errors import NotFound
from abcore.store.tables import MetricDefinition, utcnow
from abcore.store.values import name_problem

__all__ = [
    "CAPPABLE",
    "RATIO_KINDS",
    "CAPS",
    "DEFAULT_KIND",
    "DIRECTIONS",
    "KINDS",
    "MetricCreate",
    "MetricDefinition",
    "MetricNotFound",
    "MetricSpec",
    "archive_metric",
    "default_spec",
    "define_metric",
    "get_metric",
    "import_metrics",
    "kind_label",
    "list_metrics",
    "metric_to_dict",
    "new_metric_row",
    "resolve_specs",
    "spec_of",
    "update_metric",
    "validate_metric",
]

#: Metric kinds, with what a user's value is (the Metrics page shows these words).
KINDS: dict[str, str] = {
    "binomial": "Conversion: the share of exposed users with at least one qualifying event.",
    "count": "Count: qualifying events per exposed user.",
    "mean": "Mean per user: per-user sum of event values, averaged over exposed users (users without events "
            "count 0), e.g. revenue per user.",
    "event_mean": "Mean per event: the mean event value, sum of values / number of events (a ratio over users, "
                  "delta method), e.g. latency per request.",
    "ratio": "Ratio: sum of a numerator metric over sum of a denominator metric (per-user sums, delta method).",
    "quantile": "Quantile: a quantile (e.g. p50, p95) of the event values, with an order-statistic interval.",
}
#: Which way is better.
DIRECTIONS: tuple[str, ...] = ("increase", "decrease")
#: Capping modes (``None`` = no capping).
CAPS: tuple[str, ...] = ("absolute", "percentile")
#: Kinds whose per-user values may be capped.
CAPPABLE: tuple[str, ...] = ("count", "mean", "ratio")
#: Kinds analysed as a ratio of two per-user sums (``y`` over ``x``) with the delta method: ``ratio`` (numerator
#: and denominator metrics) and ``event_mean`` (the metric's values over its event count).
RATIO_KINDS: tuple[str, ...] = ("ratio", "event_mean")
#: The kind of a definition that does not name one: ``binomial`` (a conversion). The registry, the
#: Metrics page, ``abcore metrics define`` and ``abcore stats --metrics FILE.json`` all read the same
#: definition fields, so a definition without ``kind`` means a conversion rate everywhere; an event
#: without a value is a conversion (its value counts as 1), which is what most tracked metrics are.
DEFAULT_KIND = "binomial"

def kind_label(kind: str) -> str:
    """What a kind computes, in the words every surface shows (dashboard, CLI, docs): the words before the
    colon of :data:`KINDS` ("Conversion", "Count", "Mean per user", "Mean per event", "Ratio", "Quantile");
    an unknown kind as written."""
    text = KINDS.get(kind)
    return text.split(":", 1)[0] if text else str(kind)


_FIELDS: tuple[str, ...] = (
    "name", "description", "kind", "numerator", "denominator", "quantile", "direction", "window_hours",
    "delay_hours", "cap", "cap_upper", "cap_lower", "min_detectable_effect",
)

class MetricNotFound(NotFound, LookupError):
    """No metric definition with that name."""


class MetricCreate(SQLModel):
    """Everything needed to define a metric (see the module docstring for the meaning of each field)."""

    name: str
    description: str = ""
    kind: str = DEFAULT_KIND
    numerator: str | None = None
    denominator: str | None = None
    quantile: float | None = None
    direction: str = "increase"
    window_hours: float | None = None
    delay_hours: float = 0.0
    cap: str | None = None
    cap_upper: float | None = None
    cap_lower: float | None = None
    min_detectable_effect: float | None = Field(default=None)


@dataclass(frozen=True)
class MetricSpec:
    """A metric definition as the analysis and its query builder use it (pure; no session).

    The one definition type of the package: :func:`spec_of` builds it from a stored definition,
    :func:`default_spec` for a name without one, and ``abcore stats --metrics FILE.json`` from JSON.
    ``kind`` defaults to :data:`DEFAULT_KIND` (``binomial``). Building one validates it with
    :func:`validate_metric` and raises ``ValueError`` listing every problem.
    ``defined`` is False for a name without a registry entry (defaults were used).
    """

    name: str
    kind: str = DEFAULT_KIND
    direction: str = "increase"
    numerator: str | None = None
    denominator: str | None = None
    quantile: float | None = None
    window_hours: float | None = None
    delay_hours: float = 0.0
    cap: str | None = None
    cap_upper: float | None = None
    cap_lower: float | None = None
    min_detectable_effect: float | None = None
    description: str = ""
    defined: bool = True

    def __post_init__(self) -> None:
        problems = validate_metric(self)
        if problems:
            raise ValueError(f"invalid metric {self.name!r}: " + " ".join(problems))

    @property
    def sign(self) -> float:
        """+1 when higher is better, -1 when lower is better."""
        return 1.0 if self.direction == "increase" else -1.0

    @property
    def events(self) -> tuple[str, ...]:
        """The event metric names this metric reads (numerator and denominator for a ratio)."""
        if self.kind == "ratio":
            return tuple(dict.fromkeys([str(self.numerator), str(self.denominator)]))
        return (self.name,)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fields_of(data: Any) -> tuple[dict[str, Any], list[str], bool]:
    """The definition's fields as a dict, the problems of unknown keys (mappings only), and whether
    ``data`` is typed-in input (a mapping or :class:`MetricCreate`) rather than a built object.

    A built object is a :class:`MetricSpec`, a stored :class:`MetricDefinition` or any duck-typed
    definition with the field attributes."""
    if isinstance(data, SQLModel) and not isinstance(data, MetricDefinition):
        return data.model_dump(), [], True
    if isinstance(data, Mapping):
        d = dict(data)
        unknown = sorted(set(d) - set(_FIELDS) - {"archived"})
        if unknown:
            return d, [f"Unknown field(s): {', '.join(unknown)} (known: {', '.join(_FIELDS)})."], True
        return d, [], True
    defaults = {"kind": None, "description": "", "delay_hours": 0.0}
    return {f: getattr(data, f, defaults.get(f)) for f in _FIELDS}, [], False


def _name_problems(d: Mapping[str, Any], *, typed: bool) -> list[str]:
    """A non-empty name; typed-in names also at most 200 characters without surrounding blanks, control or
    invisible formatting characters (:func:`abcore.store.values.name_problem`; a built spec may stand for an event name already in the store, which is analysed whatever it looks like)."""
    name = d.get("name")
    if not isinstance(name, str) or not name.strip():
        return ["name must be a non-empty text."]
    if typed and len(name) > 200:
        return ["name must be at most 200 characters."]
    if typed and name != name.strip():
        return ["name must not start or end with spaces."]
    character = name_problem("name", name) if typed else None
    if character is not None:
        return [character]
    return []


def _kind_problems(d: Mapping[str, Any]) -> list[str]:
    """Kind, direction and the kind-specific fields (numerator / denominator, quantile)."""
    problems: list[str] = []
    kind = d.get("kind", DEFAULT_KIND)
    if kind not in KINDS:
        problems.append(f"kind must be one of {', '.join(KINDS)}; got {kind!r}.")
    direction = d.get("direction", "increase")
    if direction not in DIRECTIONS:
        problems.append(f"direction must be 'increase' or 'decrease' (which way is better); got {direction!r}.")
    num, den = d.get("numerator"), d.get("denominator")
    if kind == "ratio":
        missing = [label for label, value in (("numerator", num), ("denominator", den))
                   if not isinstance(value, str) or not value.strip()]
        if len(missing) == 2:
            problems.append("a ratio metric needs a numerator and denominator (event metric names).")
        elif missing:
            problems.append(f"a ratio metric needs a {missing[0]} (an event metric name).")
    elif num is not None or den is not None:
        problems.append("numerator and denominator are only for kind 'ratio'.")
    q = d.get("quantile")
    if kind == "quantile":
        if not _finite(q) or not 0.0 < float(q) < 1.0:
            problems.append(f"a quantile metric needs quantile in (0, 1), e.g. 0.95; got {q!r}.")
    elif q is not None:
        problems.append("quantile is only for kind 'quantile'.")
    return problems


def _window_problems(d: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    window = d.get("window_hours")
    if window is not None and (not _finite(window) or float(window) <= 0):
        problems.append(f"window_hours must be a positive number of hours or empty (until the end); got {window!r}.")
    delay = d.get("delay_hours", 0.0)
    if delay is None:
        delay = 0.0
    if not _finite(delay) or float(delay) < 0:
        problems.append(f"delay_hours must be a number of hours >= 0; got {delay!r}.")
    mde = d.get("min_detectable_effect")
    if mde is not None and (not _finite(mde) or float(mde) < 0):
        problems.append(f"min_detectable_effect must be a relative effect >= 0 (e.g. 0.02) or empty; got {mde!r}.")
    return problems


def _cap_problems(d: Mapping[str, Any]) -> list[str]:
    """Capping: a cappable kind, a number ``cap_upper``, and for a percentile cap quantiles strictly
    inside (0, 1) (the bounds the analysis query accepts: the 0th or 100th percentile is no cap)."""
    cap, upper, lower = d.get("cap"), d.get("cap_upper"), d.get("cap_lower")
    kind = d.get("kind", DEFAULT_KIND)
    if cap is None:
        if upper is not None or lower is not None:
            return ["cap_upper / cap_lower need cap = 'absolute' or 'percentile'."]
        return []
    if cap not in CAPS:
        return [f"cap must be 'absolute', 'percentile' or empty; got {cap!r}."]
    problems: list[str] = []
    if kind not in CAPPABLE:
        problems.append(f"a {kind} metric cannot be capped (capping applies to kinds {', '.join(CAPPABLE)}).")
    if not _finite(upper):
        problems.append(f"cap {cap!r} needs a number cap_upper; got {upper!r}.")
    if lower is not None and not _finite(lower):
        problems.append(f"cap_lower must be a number or empty; got {lower!r}.")
    if cap == "percentile":
        for label, value in (("cap_upper", upper), ("cap_lower", lower)):
            if _finite(value) and not 0.0 < float(value) < 1.0:
                problems.append(f"{label} of a percentile cap must be in (0, 1), a quantile such as 0.99; "
                                f"got {value!r}.")
    if _finite(upper) and _finite(lower) and float(lower) >= float(upper):
        problems.append(f"cap_lower ({lower}) must be below cap_upper ({upper}).")
    return problems


def validate_metric(data: Any) -> list[str]:
    """Every problem of a metric definition, as readable sentences ([] when it is valid).

    ``data`` is a mapping (unknown keys are a problem), a :class:`MetricCreate`, a :class:`MetricSpec`
    or any object with the field attributes. The same rules apply when a metric is defined, when it is
    updated, when a :class:`MetricSpec` is built and when the analysis query is built from it, so a
    definition that is accepted can always be analysed.
    """
    d, problems, typed = _fields_of(data)
    problems += _name_problems(d, typed=typed)
    if not isinstance(d.get("description", ""), str):
        problems.append("description must be text.")
    problems += _kind_problems(d)
    problems += _window_problems(d)
    problems += _cap_problems(d)
    return problems


def _raise_if_invalid(data: MetricCreate | Mapping[str, Any]) -> None:
    problems = validate_metric(data)
    if problems:
        raise ValueError("Invalid metric definition: " + " ".join(problems))


def _find(session: Session, name: str) -> MetricDefinition | None:
    return session.exec(select(MetricDefinition).where(MetricDefinition.name == name)).first()


def define_metric(*, session: Session, data: MetricCreate | Mapping[str, Any]) -> MetricDefinition:
    """Create a metric definition and commit it.

    Raises ``ValueError`` listing every problem (invalid fields, a name already defined).
    """
    row = new_metric_row(session=session, data=data)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def new_metric_row(*, session: Session, data: MetricCreate | Mapping[str, Any]) -> MetricDefinition:
    """The validated row of a new metric definition, not added to ``session`` (for a caller that writes it
    with other rows in one transaction). Raises ``ValueError`` listing every problem (invalid fields, a name
    already defined)."""
    if not isinstance(data, MetricCreate):
        _raise_if_invalid(data)
        data = MetricCreate(**dict(data))
    problems = validate_metric(data)
    if isinstance(data.name, str) and data.name and _find(session, data.name) is not None:
        problems.append(f"a metric named {data.name!r} already exists (use update_metric to change it).")
    if problems:
        raise ValueError("Invalid metric definition: " + " ".join(problems))
    row = MetricDefinition(**data.model_dump())
    row.delay_hours = float(row.delay_hours or 0.0)
    return row


def get_metric(*, session: Session, name: str) -> MetricDefinition:
    """The definition named ``name`` (archived ones included); raises :class:`MetricNotFound`."""
    row = _find(session, name)
    if row is None:
        raise MetricNotFound(f"no metric named {name!r}")
    return row


def list_metrics(*, session: Session, include_archived: bool = False) -> list[MetricDefinition]:
    """Every metric definition, sorted by name (archived ones only with ``include_archived``)."""
    statement = select(MetricDefinition).order_by(MetricDefinition.name)
    if not include_archived:
        statement = statement.where(MetricDefinition.archived == False)  # noqa: E712 - SQL expression
    return list(session.exec(statement))


def update_metric(
    *, session: Session, name: str, changes: MetricCreate | Mapping[str, Any]
) -> MetricDefinition:
    """Change fields of the definition ``name`` (``changes`` maps field -> new value; a ``MetricCreate``
    replaces every field) and commit. The result is validated as a whole; ``ValueError`` lists every
    problem (renaming onto an existing name included); :class:`MetricNotFound` for an unknown name."""
    row = get_metric(session=session, name=name)
    new = changes.model_dump() if isinstance(changes, SQLModel) else dict(changes)
    merged = {f: getattr(row, f) for f in _FIELDS}
    merged.update(new)
    problems = validate_metric(merged)
    new_name = merged.get("name")
    if isinstance(new_name, str) and new_name != name and _find(session, new_name) is not None:
        problems.append(f"a metric named {new_name!r} already exists.")
    if problems:
        raise ValueError("Invalid metric definition: " + " ".join(problems))
    for key, value in merged.items():
        if key in _FIELDS or key == "archived":
            setattr(row, key, value)
    row.delay_hours = float(row.delay_hours or 0.0)
    row.updated_at = utcnow()
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def archive_metric(*, session: Session, name: str, archived: bool = True) -> MetricDefinition:
    """Archive (hide from pickers; analyses still use it) or, with ``archived=False``, restore a metric."""
    row = get_metric(session=session, name=name)
    row.archived = bool(archived)
    row.updated_at = utcnow()
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def metric_to_dict(row: MetricDefinition | MetricSpec) -> dict[str, Any]:
    """The definition's fields as a JSON-ready dict (the CLI and config export format)."""
    out = {f: getattr(row, f) for f in _FIELDS}
    if isinstance(row, MetricDefinition):
        out["archived"] = bool(row.archived)
    return out


def import_metrics(*, session: Session, items: Sequence[Mapping[str, Any]]) -> list[MetricDefinition]:
    """Define every metric of ``items`` that is not defined yet, or update it to the given fields.

    All items are validated first; ``ValueError`` lists every problem and nothing is written.
    """
    problems: list[str] = []
    for i, item in enumerate(items, start=1):
        if not isinstance(item, Mapping):
            problems.append(f"metric {i}: must be an object.")
            continue
        problems += [f"metric {i} ({item.get('name')!r}): {p}" for p in validate_metric(item)]
    if problems:
        raise ValueError("Invalid metric definitions: " + " ".join(problems))
    out = []
    for item in items:
        fields = {k: v for k, v in item.items() if k in _FIELDS}
        archived = bool(item.get("archived", False))
        if _find(session, str(item["name"])) is None:
            row = define_metric(session=session, data=MetricCreate(**fields))
        else:
            row = update_metric(session=session, name=str(item["name"]), changes=fields)
        if row.archived != archived:
            row = archive_metric(session=session, name=row.name, archived=archived)
        out.append(row)
    return out


def spec_of(row: MetricDefinition) -> MetricSpec:
    """The :class:`MetricSpec` of a stored definition."""
    return MetricSpec(
        name=row.name, kind=row.kind, direction=row.direction, numerator=row.numerator,
        denominator=row.denominator, quantile=row.quantile, window_hours=row.window_hours,
        delay_hours=float(row.delay_hours or 0.0), cap=row.cap, cap_upper=row.cap_upper, cap_lower=row.cap_lower,
        min_detectable_effect=row.min_detectable_effect, description=row.description, defined=True,
    )


def default_spec(name: str, *, kind: str = DEFAULT_KIND, role: str = "primary") -> MetricSpec:
    """The defaults for a metric name without a definition: the inferred ``kind`` and
    ``direction="increase"``, except guardrails (``"decrease"``: "must not increase")."""
    return MetricSpec(name=name, kind=kind, direction="decrease" if role == "guardrail" else "increase",
                      defined=False)


def resolve_specs(*, session: Session, names: Sequence[str]) -> dict[str, MetricSpec]:
    """``{name: MetricSpec}`` for the defined names among ``names`` (archived included)."""
    wanted = list(dict.fromkeys(n for n in names if n))
    if not wanted:
        return {}
    rows = session.exec(select(MetricDefinition).where(MetricDefinition.name.in_(wanted)))  # type: ignore[attr-defined]
    return {r.name: spec_of(r) for r in rows}
