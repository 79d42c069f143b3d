"""Where the analysed events and exposures are (:class:`QuerySource`) and how values become SQL literals."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from abcore.analysis.sql.dialects import Dialect

__all__ = ["QuerySource", "literal"]


@dataclass(frozen=True)
class QuerySource:
    """Where the events and exposures are, and which columns mean what.

    ``events`` / ``exposures`` are relation references in the target dialect (a table name, a
    qualified ``store.ab_experiment_results``, ``read_parquet('...')``, a Spark view). With
    ``exposures=None`` the population is the store's: ``assignments`` (user, experiment,
    variant, JSON attributes) joined to the first event of type ``exposure_type``.
    """

    events: str = "ab_experiment_results"
    user_id: str = "user_id"
    ts: str = "ts"
    ts_format: str = "timestamp"
    event_type: str | None = "event_type"
    metric_name: str = "metric_name"
    value: str = "value"
    experiment: str | None = "experiment_id"
    conversion_type: str = "conversion"
    exposure_type: str = "exposure"
    # Store population.
    assignments: str | None = "ab_user_assignments"
    assignment_variant: str = "variant_id"
    assignment_experiment: str = "experiment_id"
    assignment_attributes: str | None = "attributes"
    assignment_ts: str = "assigned_at"
    # Exposure-table population (overrides the store's when set).
    exposures: str | None = None
    exposure_user_id: str = "user_id"
    exposure_ts: str = "ts"
    exposure_ts_format: str = "timestamp"
    exposure_variant: str = "variant"
    exposure_experiment: str | None = "experiment"
    segment_columns: tuple[str, ...] = field(default_factory=tuple)


def literal(value: Any, d: Dialect) -> str:
    """A SQL literal for a number, string or ``None`` in dialect ``d``: the literal reads back as exactly ``value``
    on that engine, whatever the text holds (quotes, backslashes, ``$``, newlines; :meth:`Dialect.string`)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite literal")
        return repr(value)
    return d.string(str(value))
