"""What :func:`abcore.analysis.pipeline.analyze` returns: frozen dataclasses, a pandas table and a JSON-ready dict.

:class:`Results` holds the arms (:class:`VariantInfo`), one :class:`MetricResult` per metric and
treatment (judged by :mod:`abcore.analysis.verdict`: ``outcome`` better / worse / inconclusive in the
metric's direction), the :class:`HealthCheck` list, the verdict, the daily series (:class:`DailyPoint`)
and the per-segment breakdown (:class:`SegmentResult`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import date, datetime
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from abcore.analysis import overview
from abcore.analysis.verdict import Verdict
from abcore.stats import BayesResult, SRMResult, TestResult

__all__ = [
    "DailyPoint",
    "HealthCheck",
    "MetricResult",
    "Results",
    "SegmentResult",
    "VariantInfo",
    "Verdict",
]


@dataclass(frozen=True)
class VariantInfo:
    """One arm: configured share, assigned users and analysed (exposed) users."""

    variant_id: int
    name: str
    is_control: bool
    allocation_pct: float
    assigned: int
    users: int


@dataclass(frozen=True)
class MetricResult:
    """One metric for one treatment variant against the control.

    ``test`` is the TestResult of the chosen method (a ``SequentialResult`` or ``CupedResult``
    subclass where applicable); ``p_value_adjusted`` is its p-value after the multiple-comparison
    correction and ``significant`` compares that with ``alpha`` (for ``bayesian``: the chance
    to beat control is beyond ``1 - alpha/2`` or below ``alpha/2``).
    """

    metric: str
    role: str  # primary | secondary | guardrail
    #: The test family: "binary" (conversion rate: binomial), "mean" (per-user mean: count, mean),
    #: "ratio" (delta method: ratio, event_mean) or "quantile"; ``metric_kind`` is the definition's kind.
    kind: str
    variant_id: int
    variant: str
    control_variant: str
    control_users: int
    users: int
    control_conversions: int | None
    conversions: int | None
    control_value: float
    value: float
    control_std: float
    std: float
    test: TestResult
    p_value_adjusted: float
    significant: bool
    method: str
    cuped: bool = False
    bayes: BayesResult | None = None
    #: Which way is better for this metric (from its definition): "increase" | "decrease".
    direction: str = "increase"
    #: "better" (significant move in the good direction), "worse" (significant move in the bad
    #: direction) or "inconclusive" (not significant, or not computable); see abcore.analysis.verdict.
    outcome: str = "inconclusive"
    #: The metric definition's kind: binomial | count | mean | event_mean | ratio | quantile.
    metric_kind: str = "binomial"


@dataclass(frozen=True)
class HealthCheck:
    """A data-quality check: ``ok`` or not, with a readable message (severity warning/error)."""

    name: str
    ok: bool
    severity: str  # ok | warning | error
    message: str


@dataclass(frozen=True)
class DailyPoint:
    """Cumulative state at the end of a UTC day for one variant and metric.

    ``value`` is the cumulative conversion rate (binary) or mean per user (mean metrics),
    ``lift`` the relative difference to the control's cumulative value (``nan`` for the control).
    """

    day: date
    variant_id: int
    variant: str
    metric: str
    users: int
    value: float
    lift: float


@dataclass(frozen=True)
class SegmentResult:
    """One metric x treatment comparison within one value of the segment attribute (unadjusted)."""

    segment: str
    value: str
    metric: str
    variant: str
    control_users: int
    users: int
    control_value: float
    treatment_value: float
    test: TestResult


@dataclass(frozen=True)
class Results:
    """Everything ``analyze`` computed for one experiment."""

    experiment_id: int
    experiment: str
    status: str
    method: str
    correction: str
    alpha: float
    cuped: bool
    start: datetime | None
    end: datetime | None
    computed_at: datetime
    days_run: float
    variants: tuple[VariantInfo, ...]
    metrics: tuple[MetricResult, ...]
    percentiles: tuple[overview.PercentileStats, ...]
    feedback: dict[str, dict[str, int]]
    srm: SRMResult
    health: tuple[HealthCheck, ...]
    verdict: Verdict
    daily: tuple[DailyPoint, ...]
    segment: str | None = None
    segments: tuple[SegmentResult, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    #: Which engine computed the metric statistics: "store", "duckdb" or "spark".
    engine: str = "store"

    @property
    def control(self) -> VariantInfo:
        """The control arm."""
        return next(v for v in self.variants if v.is_control)

    def result(self, metric: str, variant: str | None = None) -> MetricResult:
        """The result for ``metric`` (and treatment ``variant``; the first treatment by default)."""
        for r in self.metrics:
            if r.metric == metric and (variant is None or r.variant == variant):
                return r
        raise KeyError(f"no result for metric {metric!r} and variant {variant!r}")

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per metric x treatment variant (the CSV export's columns), with the
        judge's ``outcome`` (better / worse / inconclusive) in the metric's ``direction``."""
        import pandas as pd

        rows = []
        for r in self.metrics:
            t = r.test
            row: dict[str, Any] = {
                "metric": r.metric,
                "role": r.role,
                "kind": r.kind,
                "metric_kind": r.metric_kind,
                "variant": r.variant,
                "control_users": r.control_users,
                "users": r.users,
                "control_conversions": r.control_conversions,
                "conversions": r.conversions,
                "control_value": r.control_value,
                "value": r.value,
                "diff": t.diff,
                "ci_low": t.ci_low,
                "ci_high": t.ci_high,
                "lift": t.lift,
                "lift_ci_low": t.lift_ci_low,
                "lift_ci_high": t.lift_ci_high,
                "p_value": t.p_value,
                "p_value_adjusted": r.p_value_adjusted,
                "significant": r.significant,
                "direction": r.direction,
                "outcome": r.outcome,
            }
            if r.bayes is not None:
                row["chance_to_beat_control"] = r.bayes.chance_to_beat_control
                row["expected_loss"] = r.bayes.expected_loss
            rows.append(row)
        columns = list(rows[0]) if rows else [
            "metric", "role", "kind", "metric_kind", "variant", "control_users", "users", "control_conversions", "conversions",
            "control_value", "value", "diff", "ci_low", "ci_high", "lift", "lift_ci_low", "lift_ci_high",
            "p_value", "p_value_adjusted", "significant", "direction", "outcome",
        ]
        return pd.DataFrame(rows, columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: nan/inf -> None, datetimes and dates ISO strings, tuples -> lists."""
        out = _jsonable(asdict(self))
        out["frame"] = _jsonable(self.to_frame().to_dict(orient="records"))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Results:
        """The inverse of :meth:`to_dict` (e.g. a watcher snapshot read back from the store): every number,
        label and outcome as it was (missing numbers -> nan), the test's class (sequential, CUPED) kept, so a
        snapshot is shown by the same views as a live result."""
        return _rebuild(cls, data)


def _test_class(data: dict[str, Any]) -> type:
    """The TestResult subclass a dict of :meth:`Results.to_dict` came from (by its extra fields)."""
    from abcore.stats import CupedResult, SequentialResult

    if "planned_n" in data:
        return SequentialResult
    if "theta" in data:
        return CupedResult
    return TestResult


def _rebuild(cls: type, data: dict[str, Any]) -> Any:
    """An instance of the dataclass ``cls`` from its :func:`_jsonable` form (fields it does not know are dropped)."""
    hints = get_type_hints(cls)
    values = {f.name: _value(hints[f.name], data[f.name]) for f in fields(cls) if f.name in data}
    return cls(**values)


def _value(hint: Any, value: Any) -> Any:  # noqa: C901 - one branch per type the results hold
    """``value`` (JSON) as the type ``hint`` of a results field."""
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) in (UnionType, Union):
        return None if value is None else _value(args[0], value)
    if hint is float:
        return math.nan if value is None else float(value)
    if hint is datetime:
        return datetime.fromisoformat(value)
    if hint is date:
        return date.fromisoformat(value)
    if get_origin(hint) is tuple:
        return tuple(_value(args[0], v) for v in value)
    if get_origin(hint) is dict:
        key_type, value_type = args
        return {_value(key_type, k): _value(value_type, v) for k, v in value.items()}
    if hint is TestResult:
        return _rebuild(_test_class(value), value)
    if is_dataclass(hint) and isinstance(value, dict):
        return _rebuild(hint, value)  # type: ignore[arg-type]
    if hint is int and value is not None:
        return int(value)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if hasattr(value, "item") and callable(value.item):  # numpy scalars from pandas
        return _jsonable(value.item())
    return value
