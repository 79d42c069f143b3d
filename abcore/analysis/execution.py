"""Where :func:`abcore.analysis.pipeline.analyze` runs its query: the engine opened for the store and/or a
source config, and the analysis statements run on it, their rows grouped by part."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from abcore.analysis.engines import (
    Engine,
    MetricStatsRow,
    SourceConfig,
    duckdb_engine,
    spark_engine,
    store_engine,
)
from abcore.analysis.sql.build import (
    AnalysisStatements,
    QuerySource,
    build_analysis_statements,
    build_daily_query,
)
from abcore.metrics import MetricSpec

__all__ = ["open_engine", "run_analysis"]


def open_engine(engine: str | Engine, config: SourceConfig | None, session: Session) -> Engine:
    """The engine object for ``engine`` (a name or a ready Engine), set up to read the store and/or ``config``."""
    files = config is not None and (config.format != "table" or config.exposures_format not in ("table", None))
    needs_store = config is None or config.exposures is None  # the population comes from the store's assignments
    if not isinstance(engine, str):
        return engine
    bind = session.get_bind()
    if engine == "store":
        if files:
            raise ValueError("a parquet or csv source needs engine 'duckdb' or 'spark' (the store engine reads tables)")
        return store_engine(session)
    url = bind.url.render_as_string(hide_password=False)
    if engine == "duckdb":
        try:
            import duckdb  # noqa: F401
        except ImportError as exc:
            raise ImportError("engine 'duckdb' needs the duckdb extra: pip install 'abcore[duckdb]'") from exc
        if bind.dialect.name == "sqlite" and bind.url.database in (None, "", ":memory:"):
            raise ValueError("engine 'duckdb' reads the store from its file: an in-memory SQLite store cannot be attached")
        session.commit()  # DuckDB reads the store through its own connection: it sees committed rows only
        return duckdb_engine(store_url=url) if needs_store or config is None else duckdb_engine()
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ImportError("engine 'spark' needs the spark extra: pip install 'abcore[spark]'") from exc
    spark = spark_engine(SparkSession.getActiveSession())
    if needs_store:
        session.commit()
        spark.load_store(url)
    return spark


def run_analysis(
    runner: Engine, qsource: QuerySource, key: Any, metrics: Sequence[MetricSpec], start: datetime | None,
    end: datetime | None, cuped: bool, alpha: float, daily: bool, pct_names: Sequence[str],
    epochs: Sequence[datetime] = (),
) -> dict[str, list[Any]]:
    """Run :func:`abcore.analysis.sql.build.build_analysis_statements` (one query; on SQLite after its TEMP population);
    its rows by ``part`` (``stats`` rows as :class:`abcore.analysis.engines.MetricStatsRow`). Without metrics only the
    arm sizes are queried. With ``epochs`` (change times) the ``stats`` and ``users`` rows are per epoch."""
    out: dict[str, list[Any]] = {"stats": [], "users": [], "daily": [], "percentile": []}
    if not metrics:
        sql = build_daily_query(experiment=key, dialect=runner.dialect, source=qsource, start=start, end=end)
        out["users"] = [{"variant": r["variant"], "day": r["day"], "n": r["users"]} for r in runner.run(sql)]
        return out
    plan = build_analysis_statements(metrics, experiment=key, dialect=runner.dialect, source=qsource, start=start,
                                     end=end, cuped=cuped, quantile_alpha=alpha, daily=daily, percentiles=pct_names,
                                     epochs=epochs)
    kinds = {m.name: m.kind for m in metrics}
    for r in _run_statements(runner, plan):
        part = str(r["part"])
        if part != "stats":
            out[part].append(r)
            continue
        out["stats"].append(MetricStatsRow(
            metric=str(r["metric"]), kind=kinds[str(r["metric"])], variant=r["variant"], segment=str(r["segment"]),
            n=int(r["n"]), sum_y=_num(r["sum_y"]), sum_y2=_num(r["sum_y2"]), sum_x=_num(r["sum_x"]),
            sum_x2=_num(r["sum_x2"]), sum_xy=_num(r["sum_xy"]), q_n=int(r["q_n"] or 0),
            q_value=_opt(r["q_value"]), engine=runner.name, q_lower=_opt(r["q_lower"]), q_upper=_opt(r["q_upper"]),
        ))
    return out


def _run_statements(runner: Engine, plan: AnalysisStatements) -> list[dict[str, Any]]:
    """The rows of ``plan.query``, after its prelude (on the same connection: ``run_all`` of the store
    engine; an engine without it runs the statements one after another), cleanup always."""
    if not plan.prelude and not plan.cleanup:
        return runner.run(plan.query)
    run_all = getattr(runner, "run_all", None)
    if run_all is not None:
        return run_all(plan.prelude, plan.query, plan.cleanup)
    try:
        for statement in plan.prelude:
            runner.run(statement)
        return runner.run(plan.query)
    finally:
        for statement in plan.cleanup:
            runner.run(statement)


def _num(v: Any) -> float:
    return 0.0 if v is None else float(v)


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)
