"""The query layer driven by metric definitions: :mod:`abcore.analysis.sql.build` and :mod:`abcore.analysis.sql.dialects`."""

from abcore.analysis.sql.build import (
    KINDS,
    MetricSpec,
    QuerySource,
    build_daily_query,
    build_stats_query,
    validate_metric,
)
from abcore.analysis.sql.dialects import DIALECTS, Dialect, get_dialect

__all__ = [
    "DIALECTS",
    "KINDS",
    "Dialect",
    "MetricSpec",
    "QuerySource",
    "build_daily_query",
    "build_stats_query",
    "get_dialect",
    "validate_metric",
]
