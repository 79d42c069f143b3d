"""The population: units with their first exposure, and the one scan of the analysed events joined to them.

``exposures`` is each user's first exposure (store exposure events, or an exposure table);
``population`` the assigned users with that first exposure, their variant and segment, and the keys of
every window bound (:mod:`abcore.analysis.sql.time_keys`). ``events_in`` joins the events of every
analysed metric to the population in one scan; on DuckDB over the store's event table one
``event_scan`` before ``exposures`` feeds both (:attr:`abcore.analysis.sql.dialects.Dialect.narrow_shared_scan`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from abcore.analysis.sql.dialects import Dialect
from abcore.analysis.sql.source import QuerySource, literal
from abcore.analysis.sql.time_keys import TimeKeys

__all__ = ["analysed_names", "epoch_label", "events_in", "metric_code", "one_event_scan", "population_ctes", "scan_ctes"]


def epoch_label(d: Dialect, key: str, changes: Sequence[datetime], t: TimeKeys) -> str:
    """The epoch of a user whose assignment time has the key ``key``: ``'0'`` before ``changes[0]``, ``'i'`` from
    ``changes[i - 1]`` (the times the split or traffic share changed, ascending; :mod:`abcore.analysis.epochs`)."""
    whens = " ".join(f"WHEN {key} < {t.literal(c)} THEN {literal(str(i), d)}" for i, c in enumerate(changes))
    return f"CASE {whens} ELSE {literal(str(len(changes)), d)} END"


def population_ctes(
    d: Dialect, src: QuerySource, experiment: Any, start: datetime | None, end: datetime | None,
    segment: str | None, offsets: Sequence[int] = (), user_key: bool = False, epochs: Sequence[datetime] = (),
) -> list[tuple[str, str]]:
    """``exposures`` (first exposure key per user) and ``population`` (user, variant, segment, first
    exposure as key and as epoch microseconds, and the keys of the bounds at ``offsets``). With
    ``user_key`` the population's ``user_id`` is an integer surrogate and the source id is
    ``source_user_id`` (:attr:`Dialect.narrow_shared_scan`). With ``epochs`` (change times) and no ``segment``
    the segment is the user's epoch (:func:`epoch_label`) by assignment time (with an exposure table: by first
    exposure)."""
    if epochs and segment is not None:
        raise ValueError("a segment breakdown is not split by epochs")
    q = d.quote
    surrogate = "ROW_NUMBER() OVER () AS user_id, " if user_key else ""
    source_id = "source_user_id" if user_key else "user_id"
    t = TimeKeys(d, src)
    ts_window = []
    first_us = t.to_us("e.first_key")
    bounds = "".join(f", {t.from_us(f'{first_us} + {off}')} AS b{j}" for j, off in enumerate(offsets))
    if src.exposures is None:
        key = t.event_key(q(src.ts))
        where = [f"{q(src.experiment)} = {literal(experiment, d)}"] if src.experiment else []
        if src.event_type:
            where.append(f"{q(src.event_type)} = {literal(src.exposure_type, d)}")
        if start is not None:
            ts_window.append(f"{key} >= {t.literal(start)}")
        if end is not None:
            ts_window.append(f"{key} < {t.literal(end)}")
        # MIN of the key, converted once per user (the conversion is monotonic).
        exposures = (
            f"SELECT {q(src.user_id)} AS user_id, MIN({key}) AS first_key\n  FROM {src.events}\n"
            f"  WHERE {' AND '.join(where + ts_window) or '1 = 1'}\n  GROUP BY {q(src.user_id)}"
        )
        if segment is None:
            seg = epoch_label(d, t.event_key(f"a.{q(src.assignment_ts)}"), epochs, t) if epochs else literal("(all)", d)
        elif src.assignment_attributes:
            seg = f"COALESCE({d.json_text('a.' + q(src.assignment_attributes), segment)}, '(none)')"
        else:
            raise ValueError("this source has no assignment attributes to segment by")
        population = (
            f"SELECT {surrogate}a.{q(src.user_id)} AS {source_id}, a.{q(src.assignment_variant)} AS variant, e.first_key,"
            f" {first_us} AS first_us, {seg} AS segment{bounds}\n  FROM {src.assignments} a\n"
            f"  JOIN exposures e ON e.user_id = a.{q(src.user_id)}\n"
            f"  WHERE a.{q(src.assignment_experiment)} = {literal(experiment, d)}"
        )
        return [("exposures", exposures), ("population", population)]
    key = t.exposure_key(q(src.exposure_ts))
    where = [f"{q(src.exposure_experiment)} = {literal(experiment, d)}"] if src.exposure_experiment else []
    if start is not None:
        where.append(f"{key} >= {t.literal(start)}")
    if end is not None:
        where.append(f"{key} < {t.literal(end)}")
    if segment is not None and segment not in src.segment_columns:
        raise ValueError(f"segment {segment!r} is not a declared segment column of the exposure table")
    seg = literal("(all)", d) if segment is None else f"COALESCE(MIN({d.text(q(segment))}), '(none)')"
    # A user exposed to more than one variant is left out (their outcome cannot be attributed). MIN = MAX is
    # COUNT(DISTINCT variant) = 1 (both ignore NULLs; all-NULL gives NULL, left out too) without the distinct
    # set per user that DuckDB keeps for COUNT(DISTINCT): 20 s instead of 38 s over 60M exposures.
    variant = q(src.exposure_variant)
    exposures = (
        f"SELECT {q(src.exposure_user_id)} AS user_id, MIN({variant}) AS variant,"
        f" MIN({key}) AS first_key, {seg} AS segment\n  FROM {src.exposures}\n"
        f"  WHERE {' AND '.join(where) or '1 = 1'}\n  GROUP BY {q(src.exposure_user_id)}\n"
        f"  HAVING MIN({variant}) = MAX({variant})"
    )
    own_id = f"{surrogate}user_id AS source_user_id" if user_key else "user_id"
    segment_of = f"{epoch_label(d, 'first_key', epochs, t)} AS segment" if epochs else "segment"
    population = f"SELECT {own_id}, variant, first_key, {first_us} AS first_us, {segment_of}{bounds} FROM exposures e"
    return [("exposures", exposures), ("population", population)]


def events_in(
    d: Dialect, src: QuerySource, experiment: Any, names: Sequence[str], end: datetime | None,
    offsets: Sequence[int] = (), segmented: bool = True, from_scan: bool = False,
) -> str:
    """``events_in``: every event of the analysed metric names joined once to the population (one scan),
    with the event's timestamp key and the user's bound keys. With :attr:`Dialect.narrow_shared_scan`
    ``user_id`` is the population's surrogate key, ``metric_name`` the index in ``names`` and an
    unsegmented scan (``segmented`` False) has no ``segment`` (see :func:`abcore.analysis.sql.metric_values.metric_refs`). With ``from_scan`` the
    events come from ``event_scan`` (:func:`one_event_scan`), already filtered and coded."""
    q = d.quote
    t = TimeKeys(d, src)
    key = t.event_key("ev." + q(src.ts))
    where = [f"ev.{q(src.metric_name)} IN ({', '.join(literal(n, d) for n in names)})"]
    if src.experiment:  # the events' own experiment column scopes them, with an exposure table too
        where.insert(0, f"ev.{q(src.experiment)} = {literal(experiment, d)}")
    if src.event_type:
        where.insert(1 if len(where) > 1 else 0, f"ev.{q(src.event_type)} = {literal(src.conversion_type, d)}")
    if end is not None:
        where.append(f"{key} < {t.literal(end)}")
    bounds = "".join(f", p.b{j}" for j in range(len(offsets)))
    if from_scan:
        segment = ", p.segment" if segmented else ""
        return (
            f"SELECT p.user_id AS user_id, p.variant{segment}, ev.code AS metric_name, ev.value, ev.ts_key,"
            f" p.first_key{bounds}\n  FROM population p\n  JOIN event_scan ev ON ev.user_id = p.source_user_id\n"
            f"  WHERE ev.code >= 0"
        )
    if d.name == "sqlite":
        # Events first, in index order (metric, user): each user is one lookup in the population, and the
        # per-user GROUP BY downstream streams without sorting (CROSS JOIN keeps the written order in SQLite).
        join = f"{src.events} ev\n  CROSS JOIN population p ON p.user_id = ev.{q(src.user_id)}"
    elif d.narrow_shared_scan:
        join = f"population p\n  JOIN {src.events} ev ON ev.{q(src.user_id)} = p.source_user_id"
    else:
        join = f"population p\n  JOIN {src.events} ev ON ev.{q(src.user_id)} = p.user_id"
    user, segment, metric = f"ev.{q(src.user_id)}", ", p.segment", f"ev.{q(src.metric_name)}"
    if d.narrow_shared_scan:
        user, segment = "p.user_id", ", p.segment" if segmented else ""
        metric = f"CAST({metric_code(d, metric, names)} AS SMALLINT)"
    return (
        f"SELECT {user} AS user_id, p.variant{segment}, {metric} AS metric_name, ev.{q(src.value)} AS value,"
        f" {key} AS ts_key, p.first_key{bounds}\n  FROM {join}\n  WHERE {' AND '.join(where)}"
    )


def one_event_scan(
    d: Dialect, src: QuerySource, experiment: Any, names: Sequence[str], start: datetime | None,
    end: datetime | None,
) -> tuple[str, str]:
    """``event_scan`` and the ``exposures`` read from it: ONE scan of the event table for the store population's
    exposures and the analysed metrics' events (:attr:`Dialect.narrow_shared_scan`; the event table has an
    event type column), instead of one scan for each.

    ``event_scan`` keeps each row's user, timestamp key, value and ``code``: -1 for an exposure, else the metric's
    index in ``names`` (so 8-byte and 2-byte columns, not strings, are materialised). ``exposures`` is every
    user's first exposure key at or after ``start``, as :func:`population_ctes` computes it from the table.
    Over the 10M-event SQLite store through ``sqlite_scanner`` the statement took 5.0-6.0 s instead of 6.7-8.2 s.
    """
    q = d.quote
    t = TimeKeys(d, src)
    key = t.event_key(q(src.ts))
    is_exposure = f"{q(src.event_type)} = {literal(src.exposure_type, d)}"
    where = [f"{q(src.experiment)} = {literal(experiment, d)}"] if src.experiment else []
    where.append(f"({is_exposure} OR ({q(src.event_type)} = {literal(src.conversion_type, d)}"
                 f" AND {q(src.metric_name)} IN ({', '.join(literal(n, d) for n in names)})))")
    if end is not None:
        where.append(f"{key} < {t.literal(end)}")
    scan = (
        f"SELECT {q(src.user_id)} AS user_id, {key} AS ts_key, {q(src.value)} AS value,"
        f" CAST(CASE WHEN {is_exposure} THEN -1 ELSE {metric_code(d, q(src.metric_name), names)} END AS SMALLINT) AS code\n"
        f"  FROM {src.events}\n  WHERE {' AND '.join(where)}"
    )
    since = f" AND ts_key >= {t.literal(start)}" if start is not None else ""
    exposures = f"SELECT user_id, MIN(ts_key) AS first_key FROM event_scan WHERE code = -1{since} GROUP BY user_id"
    return scan, exposures


def metric_code(d: Dialect, column: str, names: Sequence[str]) -> str:
    """``column`` (a metric name) as its index in ``names`` (NULL for another name)."""
    return f"CASE {column} " + " ".join(f"WHEN {literal(n, d)} THEN {i}" for i, n in enumerate(names)) + " END"


def analysed_names(metrics: Sequence[Any]) -> list[str]:
    """The event metric names an analysis of ``metrics`` reads, in first-use order (ratio: numerator, denominator)."""
    names: list[str] = []
    for m in metrics:
        for n in [m.numerator, m.denominator] if m.kind == "ratio" else [m.name]:
            if n not in names:
                names.append(n)
    return names


def scan_ctes(
    d: Dialect, src: QuerySource, metrics: Sequence[Any], experiment: Any, start: datetime | None,
    end: datetime | None, segment: str | None, offsets: Sequence[int], epochs: Sequence[datetime] = (),
) -> list[tuple[str, str]]:
    """The CTEs every metric reads: ``exposures`` and ``population`` (:func:`population_ctes`), and where the
    dialect shares one scan of the events (:attr:`Dialect.shared_scan`) ``events_in`` (:func:`events_in`; on a
    narrow shared scan over the store's event table after ``event_scan``, :func:`one_event_scan`)."""
    ctes = population_ctes(d, src, experiment, start, end, segment, offsets, d.narrow_shared_scan, epochs)
    analysed = analysed_names(metrics)
    one_scan = d.narrow_shared_scan and src.exposures is None and src.event_type is not None
    if one_scan:
        scan, exposures = one_event_scan(d, src, experiment, analysed, start, end)
        ctes[:1] = [("event_scan", scan), ("exposures", exposures)]
    if d.shared_scan:
        grouped = segment is not None or bool(epochs)
        ctes.append(("events_in", events_in(d, src, experiment, analysed, end, offsets, grouped, one_scan)))
    return ctes
