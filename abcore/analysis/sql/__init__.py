"""The query layer driven by metric definitions: :mod:`abcore.analysis.sql.build` and :mod:`abcore.analysis.sql.dialects`.

``MetricSpec``, ``KINDS`` and ``validate_metric`` are :mod:`abcore.metrics`' (re-exported here).
"""

from abcore.analysis.sql.build import (
    QuerySource,
    build_daily_query,
    build_stats_query,
)
from abcore.analysis.sql.dialects import DIALECTS, Dialect, get_dialect
from abcore.metrics import KINDS, MetricSpec, validate_metric

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
