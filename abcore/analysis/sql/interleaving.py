"""The interleaving query: per ranker pair, wins / losses / ties over users and the sums of the paired credit
difference (:class:`abcore.stats.interleaving.PairCounts`), in one statement every engine runs.

The impressions are the ``impression`` events (one per position, properties ``impression``, ``item``,
``owner``; :mod:`abcore.assign.interleave`); a click is an event of the metric naming ``item`` and
``impression`` in its properties. A click counts for the owner of its item in its impression when it happened
at or after the impression's first event plus the metric's delay and, with a window, before the window closed;
each user's credit per ranker is clipped to the metric's absolute ``cap_upper`` (whole clicks). The properties
are read with :meth:`Dialect.json_text`, so SQLite, PostgreSQL, DuckDB and Spark read the same text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from abcore.analysis.sql.dialects import Dialect, get_dialect
from abcore.analysis.sql.source import QuerySource, literal
from abcore.analysis.sql.time_keys import TimeKeys

__all__ = ["PAIR_COLUMNS", "build_interleaving_query"]

#: Columns of each row: the pair, then the :class:`~abcore.stats.interleaving.PairCounts` fields.
PAIR_COLUMNS: tuple[str, ...] = (
    "ranker_a", "ranker_b", "users", "wins", "losses", "ties", "sum_d", "sum_d2", "sum_n", "sum_n2", "sum_dn",
)  # fmt: skip
_US_PER_HOUR = 3_600_000_000


def _events(d: Dialect, src: QuerySource, experiment: Any, event_type: str, end: datetime | None) -> str:
    """``FROM ... WHERE`` of the experiment's events of one type (before ``end``)."""
    q = d.quote
    where = []
    if src.experiment:
        where.append(f"{q(src.experiment)} = {literal(experiment, d)}")
    if src.event_type:
        where.append(f"{q(src.event_type)} = {literal(event_type, d)}")
    if end is not None:
        t = TimeKeys(d, src)
        where.append(f"{t.event_key(q(src.ts))} < {t.literal(end)}")
    return f"FROM {src.events} WHERE " + " AND ".join(where or ["1 = 1"])


def build_interleaving_query(
    *,
    experiment: Any,
    rankers: Sequence[str],
    metric: Any,
    dialect: str | Dialect,
    source: QuerySource | None = None,
    end: datetime | None = None,
) -> str:
    """One row per ranker pair (``rankers[i]``, ``rankers[j]``), i < j, columns :data:`PAIR_COLUMNS`.

    ``metric`` is a :class:`~abcore.metrics.MetricSpec` (its ``name``, ``window_hours``, ``delay_hours``,
    ``cap``/``cap_upper``); only events before ``end`` count. Users are those with at least one impression.
    """
    if len(rankers) < 2:
        raise ValueError("an interleaving comparison needs at least two rankers")
    d = dialect if isinstance(dialect, Dialect) else get_dialect(dialect)
    src = source or QuerySource()
    q = d.quote
    props = q("properties")
    user, us = q(src.user_id), d.epoch_us(q(src.ts), src.ts_format)
    impression, item, owner = (d.json_text(props, k) for k in ("impression", "item", "owner"))
    delay = round(float(metric.delay_hours or 0.0) * _US_PER_HOUR)
    window = "" if metric.window_hours is None else (
        f" AND c.us < i.imp_us + {delay + round(float(metric.window_hours) * _US_PER_HOUR)}"
    )
    cap = None
    if getattr(metric, "cap", None) == "absolute" and getattr(metric, "cap_upper", None) is not None:
        cap = max(0, math.floor(float(metric.cap_upper)))
    clicks_from = _events(d, src, experiment, src.conversion_type, end)
    clicks_from += f" AND {q(src.metric_name)} = {literal(metric.name, d)}"
    credit = "c.credit" if cap is None else f"CASE WHEN c.credit > {cap} THEN {cap} ELSE c.credit END"
    columns = ",\n    ".join(
        f"SUM(CASE WHEN c.owner = {literal(name, d)} THEN {credit} ELSE 0 END) AS c{k}" for k, name in enumerate(rankers)
    )
    ctes = [
        ("imp_rows", f"SELECT DISTINCT {user} AS user_id, {impression} AS impression, {item} AS item, {owner} AS owner\n  "
                     + _events(d, src, experiment, "impression", end)),
        ("imp", f"SELECT {user} AS user_id, {impression} AS impression, MIN({us}) AS imp_us\n  "
                + _events(d, src, experiment, "impression", end) + f" GROUP BY {user}, {impression}"),
        ("clicks", f"SELECT {user} AS user_id, {impression} AS impression, {item} AS item, {us} AS us\n  {clicks_from}"),
        ("credit", "SELECT c.user_id, r.owner, COUNT(*) AS credit FROM clicks c\n"
                   "  JOIN imp i ON i.user_id = c.user_id AND i.impression = c.impression\n"
                   "  JOIN imp_rows r ON r.user_id = c.user_id AND r.impression = c.impression AND r.item = c.item\n"
                   f"  WHERE r.owner IS NOT NULL AND c.us >= i.imp_us + {delay}{window}\n"
                   "  GROUP BY c.user_id, r.owner"),
        ("per_user", "SELECT user_id, COUNT(*) AS n_imp FROM imp GROUP BY user_id"),
        ("users", f"SELECT p.user_id, p.n_imp,\n    {columns}\n"
                  "  FROM per_user p LEFT JOIN credit c ON c.user_id = p.user_id GROUP BY p.user_id, p.n_imp"),
    ]  # fmt: skip
    pairs = []
    for i in range(len(rankers)):
        for j in range(i + 1, len(rankers)):
            a, b, diff = f"c{i}", f"c{j}", f"(c{i} - c{j})"
            pairs.append(
                f"SELECT {literal(rankers[i], d)} AS ranker_a, {literal(rankers[j], d)} AS ranker_b, COUNT(*) AS users,"
                f" SUM(CASE WHEN {a} > {b} THEN 1 ELSE 0 END) AS wins,"
                f" SUM(CASE WHEN {a} < {b} THEN 1 ELSE 0 END) AS losses,"
                f" SUM(CASE WHEN {a} = {b} AND {a} > 0 THEN 1 ELSE 0 END) AS ties,"
                f" SUM({diff}) AS sum_d, SUM({diff} * {diff}) AS sum_d2, SUM(n_imp) AS sum_n,"
                f" SUM(n_imp * n_imp) AS sum_n2, SUM({diff} * n_imp) AS sum_dn FROM users"
            )
    with_sql = ",\n".join(f"{name} AS (\n  {body}\n)" for name, body in ctes)
    return f"WITH {with_sql}\n" + "\nUNION ALL\n".join(pairs)
