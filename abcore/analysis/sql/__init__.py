"""The analysis SQL, built from metric definitions.

:mod:`~abcore.analysis.sql.build` has the public builders; they put together one module per CTE family
(:mod:`~abcore.analysis.sql.population`, :mod:`~abcore.analysis.sql.metric_values`,
:mod:`~abcore.analysis.sql.caps`, :mod:`~abcore.analysis.sql.stats`, :mod:`~abcore.analysis.sql.daily`), with
the per-engine differences in :mod:`~abcore.analysis.sql.dialects` and timestamps in
:mod:`~abcore.analysis.sql.time_keys`.
"""

from abcore.analysis.sql.build import (
    QuerySource,
    build_daily_query,
    build_stats_query,
)
from abcore.analysis.sql.dialects import DIALECTS, Dialect, get_dialect

__all__ = [
    "DIALECTS",
    "Dialect",
    "QuerySource",
    "build_daily_query",
    "build_stats_query",
    "get_dialect",
]
