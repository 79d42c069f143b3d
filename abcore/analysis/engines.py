"""Engines that run the analysis SQL of :mod:`abcore.analysis.sql.build`: the store, DuckDB, Spark.

Every engine is built by a function (never at import) and offers ``dialect`` and
``run(sql) -> list[dict]``. :func:`compute_stats` is the short pipeline
definitions -> SQL -> engine -> frozen sufficient statistics (``abcore.stats.summaries``).

* ``store_engine(engine)``: the SQLite / PostgreSQL store through SQLAlchemy.
* ``duckdb_engine(store_url=..., events=...)``: embedded DuckDB. It reads the SQLite store with the
  ``sqlite_scanner`` extension and a PostgreSQL store with ``postgres_scanner``, both loaded from
  the ``duckdb-ext-sqlite`` / ``duckdb-ext-postgres`` wheels (no download at run time); if an
  extension cannot be loaded the store tables are copied through SQLAlchemy into Arrow instead.
  Parquet / CSV event files are read directly (``read_parquet`` / ``read_csv``).
* ``spark_engine(spark=None)``: Spark SQL via ``pyspark`` (``local[2]`` by default; pass a session
  built for a cluster). Store tables are copied in through SQLAlchemy (small stores only); on a
  cluster point the source at warehouse tables or Parquet paths.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from abcore.analysis.sql.build import QuerySource, build_stats_query
from abcore.stats.summaries import BinarySummary, CovariateSummary, MeanSummary

__all__ = [
    "ENGINES",
    "Engine",
    "MetricStatsRow",
    "SourceConfig",
    "compute_stats",
    "duckdb_engine",
    "load_source_config",
    "query_source",
    "spark_engine",
    "store_engine",
]

ENGINES: tuple[str, ...] = ("store", "duckdb", "spark")
STORE_TABLES: tuple[str, ...] = ("ab_experiment_results", "ab_user_assignments")


class Engine(Protocol):
    """What :func:`compute_stats` needs of an engine."""

    dialect: str
    name: str

    def run(self, sql: str) -> list[dict[str, Any]]: ...

    def relation(self, table: str) -> str: ...


class StoreEngine:
    """The store itself (SQLite or PostgreSQL) through a SQLAlchemy engine, connection or session."""

    name = "store"

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        bind = engine.get_bind() if hasattr(engine, "get_bind") else engine
        self.dialect = bind.dialect.name
        self.percent_placeholders = bind.dialect.paramstyle in ("format", "pyformat")

    def relation(self, table: str) -> str:
        return table

    def driver_text(self, sql: str) -> str:
        """``sql`` as the driver must receive it to run it as written.

        The builder inlines every literal, and the statement runs as is (no bind-parameter parsing); but a
        driver with ``format``/``pyformat`` placeholders (psycopg) reads ``%`` even inside a string literal, so
        there every ``%`` is doubled (a metric named ``50%_off`` stays that name).
        """
        return sql.replace("%", "%%") if self.percent_placeholders else sql

    def run(self, sql: str) -> list[dict[str, Any]]:
        sql = self.driver_text(sql)
        if hasattr(self.engine, "exec_driver_sql"):  # a Connection
            return [dict(r._mapping) for r in self.engine.exec_driver_sql(sql)]
        if hasattr(self.engine, "get_bind"):  # a Session: its connection (sees its transaction)
            return [dict(r._mapping) for r in self.engine.connection().exec_driver_sql(sql)]
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.exec_driver_sql(sql)]

    def run_all(self, prelude: Sequence[str], sql: str, cleanup: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Run ``prelude`` (no rows), then ``sql`` (its rows are returned), then ``cleanup`` (also after an
        error), all on ONE connection (a session's own, inside its transaction): TEMP tables of the prelude
        are seen by ``sql``."""
        prelude, cleanup = [self.driver_text(s) for s in prelude], [self.driver_text(s) for s in cleanup]
        sql = self.driver_text(sql)
        if hasattr(self.engine, "exec_driver_sql"):  # a Connection
            return _run_on(self.engine, prelude, sql, cleanup)
        if hasattr(self.engine, "get_bind"):  # a Session
            return _run_on(self.engine.connection(), prelude, sql, cleanup)
        with self.engine.connect() as conn:
            return _run_on(conn, prelude, sql, cleanup)


def _run_on(conn: Any, prelude: Sequence[str], sql: str, cleanup: Sequence[str]) -> list[dict[str, Any]]:
    """:meth:`StoreEngine.run_all` on one SQLAlchemy connection.

    sqlite3 opens a transaction before the prelude's INSERT; when none was open before (nothing of
    the caller's is in it), it is committed after the cleanup, so a later rollback of the caller
    cannot undo the DROP and leave the TEMP table on the pooled connection.
    """
    dbapi = conn.connection.dbapi_connection
    was_idle = getattr(dbapi, "in_transaction", True) is False  # sqlite3 only; others: leave alone
    try:
        for statement in prelude:
            conn.exec_driver_sql(statement)
        return [dict(r._mapping) for r in conn.exec_driver_sql(sql)]
    finally:
        for statement in cleanup:
            conn.exec_driver_sql(statement)
        if was_idle and dbapi.in_transaction:
            dbapi.commit()


def store_engine(engine: Any) -> StoreEngine:
    """An engine over the store (SQLite or PostgreSQL): a SQLAlchemy ``Engine``, ``Connection`` or ``Session``
    (a session's queries run on its own connection, inside its transaction)."""
    return StoreEngine(engine)


def _extension_path(name: str) -> Path | None:
    """The bundled DuckDB extension file shipped by the ``duckdb-ext-*`` wheels, if installed."""
    try:
        import duckdb
        import duckdb_ext  # type: ignore[import-not-found]
    except ImportError:
        return None
    for base in duckdb_ext.__path__:
        for p in Path(base).glob(f"extensions/v{duckdb.__version__}/*/{name}.duckdb_extension"):
            return p
    return None


class DuckDBEngine:
    """Embedded DuckDB over the store (attached read-only) and/or event files."""

    name = "duckdb"
    dialect = "duckdb"

    def __init__(self, connection: Any, prefix: str = "") -> None:
        self.connection = connection
        self.prefix = prefix
        self.store_mode = "none"

    def relation(self, table: str) -> str:
        return f"{self.prefix}{table}"

    def run(self, sql: str) -> list[dict[str, Any]]:
        cur = self.connection.execute(sql)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def _load_extension(con: Any, name: str) -> bool:
    path = _extension_path(name)
    if path is None:
        return False
    try:
        con.execute(f"LOAD '{path}'")
    except Exception:  # noqa: BLE001 - a wrong build is the same as none: fall back
        return False
    return True


def duckdb_engine(*, store_url: str | None = None, memory_limit: str | None = None, threads: int | None = None) -> DuckDBEngine:
    """An in-memory DuckDB connection; with ``store_url`` the store's tables are reachable as ``store.<table>``.

    SQLite stores are attached with ``sqlite_scanner``, PostgreSQL stores with ``postgres_scanner``
    (the ``search_path`` of the URL's ``options`` picks the schema); without the extension the
    tables are copied through SQLAlchemy into Arrow (``engine.store_mode`` says which happened).

    Without ``memory_limit`` the limit is ``$ABCORE_DUCKDB_MEMORY_LIMIT`` when set
    (:func:`abcore.config.duckdb_memory_limit`; ``ValueError`` naming it when DuckDB refuses the value),
    else DuckDB's default (80 % of the RAM).

    ``preserve_insertion_order`` is off: every analysis statement orders its rows itself
    (``ORDER BY``), and without the promise DuckDB keeps fewer buffered rows and works in parallel
    where it would otherwise keep scan order (less memory, same rows).
    """
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET preserve_insertion_order = false")
    from abcore.config import DUCKDB_MEMORY_LIMIT_ENV, duckdb_memory_limit

    limit, origin = (memory_limit, "memory_limit") if memory_limit else (duckdb_memory_limit(), DUCKDB_MEMORY_LIMIT_ENV)
    if limit:
        try:
            con.execute("SET memory_limit = ?", [limit])
        except duckdb.Error as exc:
            con.close()
            raise ValueError(f"{origin} {limit!r} is not a DuckDB memory limit (e.g. 1GB, 1500MB): {exc}") from exc
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    eng = DuckDBEngine(con)
    if store_url is None:
        return eng
    from sqlalchemy.engine import make_url

    url = make_url(store_url)
    backend = url.get_backend_name()
    if backend == "sqlite" and _load_extension(con, "sqlite_scanner"):
        con.execute(f"ATTACH '{url.database}' AS store (TYPE sqlite, READ_ONLY)")
        eng.prefix, eng.store_mode = "store.", "sqlite_scanner"
        return eng
    if backend == "postgresql" and _load_extension(con, "postgres_scanner"):
        schema = "public"
        options = url.query.get("options")
        if isinstance(options, str) and "search_path=" in options:
            schema = options.split("search_path=", 1)[1].split()[0]
        dsn = " ".join(
            f"{k}={v}" for k, v in (("host", url.host), ("port", url.port), ("dbname", url.database),
                                    ("user", url.username), ("password", url.password)) if v
        )
        con.execute(f"ATTACH '{dsn}' AS store (TYPE postgres, READ_ONLY)")
        eng.prefix, eng.store_mode = f'store."{schema}".', "postgres_scanner"
        return eng
    _copy_store(store_url, lambda name, frame: con.register(name, frame))
    eng.store_mode = "arrow_copy"
    return eng


def _copy_store(store_url: str, register: Any) -> None:
    """Copy the store tables through SQLAlchemy into Arrow tables handed to ``register(name, table)``."""
    import pyarrow as pa
    from sqlalchemy import create_engine, text

    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            for table in STORE_TABLES:
                result = conn.execute(text(f"SELECT * FROM {table}"))
                cols = list(result.keys())
                rows = result.fetchall()
                data = {c: [_plain(r[i]) for r in rows] for i, c in enumerate(cols)}
                register(table, pa.table(data))
    finally:
        engine.dispose()


def _plain(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value)
    if hasattr(value, "tzinfo") and getattr(value, "tzinfo", None) is not None:
        from datetime import UTC

        return value.astimezone(UTC).replace(tzinfo=None)
    return value


class SparkEngine:
    """Spark SQL through a ``SparkSession``."""

    name = "spark"
    dialect = "spark"

    def __init__(self, spark: Any) -> None:
        self.spark = spark

    def relation(self, table: str) -> str:
        return table

    def run(self, sql: str) -> list[dict[str, Any]]:
        return [r.asDict() for r in self.spark.sql(sql).collect()]

    def csv_view(self, path: str) -> str:
        """A temporary view over the CSV file(s) at ``path`` read with their header row (column names) and
        inferred column types, as DuckDB's ``read_csv`` reads them; its name (``csv.`path``` has no header)."""
        import hashlib

        name = "abcore_csv_" + hashlib.sha256(path.encode()).hexdigest()[:16]
        self.spark.read.options(header=True, inferSchema=True).csv(path).createOrReplaceTempView(name)
        return name

    def load_store(self, store_url: str) -> None:
        """Copy the store's tables into temporary views (timestamps as UTC)."""
        def register(name: str, table: Any) -> None:
            self.spark.createDataFrame(table.to_pandas()).createOrReplaceTempView(name)

        _copy_store(store_url, register)


def spark_engine(spark: Any = None, *, master: str = "local[2]") -> SparkEngine:
    """A Spark engine on ``spark`` or on a new local session (UTC session time zone, 2 shuffle partitions)."""
    if spark is None:
        from pyspark.sql import SparkSession

        spark = (
            SparkSession.builder.master(master).appName("abcore")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
    return SparkEngine(spark)


# --------------------------------------------------------------------------- source config

_MAPPING_KEYS = ("user_id", "timestamp", "event_type", "metric_name", "value", "experiment")
_EXPOSURE_KEYS = ("user_id", "timestamp", "variant", "experiment")
_TS_FORMATS = ("timestamp", "epoch_s", "epoch_ms", "epoch_us")
#: The keys each part of a source config may have (anything else is an error, never ignored).
_PART_KEYS = {
    "events": ("path", "table", "format", "timestamp_format", "columns", "conversion_type", "exposure_type"),
    "exposures": ("path", "table", "format", "timestamp_format", "columns", "segments"),
}


@dataclass(frozen=True)
class SourceConfig:
    """A validated event source: where events (and optionally exposures) live and which column is which."""

    events: str
    format: str
    columns: dict[str, str | None]
    timestamp_format: str = "timestamp"
    conversion_type: str = "conversion"
    exposure_type: str = "exposure"
    exposures: str | None = None
    exposures_format: str = "table"
    exposure_columns: dict[str, str | None] | None = None
    exposures_timestamp_format: str = "timestamp"
    segment_columns: tuple[str, ...] = ()

    def relation(self, engine: Engine, what: str, fmt: str) -> str:
        """The relation of ``what`` (a path or table) in format ``fmt`` on ``engine``: CSV files are read with
        their header row on every engine (on Spark through :meth:`SparkEngine.csv_view`)."""
        if fmt == "parquet":
            return f"read_parquet('{what}')" if engine.dialect == "duckdb" else f"parquet.`{what}`"
        if fmt == "csv":
            if engine.dialect == "duckdb":
                return f"read_csv('{what}', header = true)"
            csv_view = getattr(engine, "csv_view", None)
            if csv_view is None:
                raise ValueError(f"a csv source needs engine 'duckdb' or 'spark' (got {engine.name!r})")
            return str(csv_view(what))
        return what

    def query_source(self, engine: Engine) -> QuerySource:
        """The builder's :class:`QuerySource` for this config on ``engine``."""
        c = self.columns
        kw: dict[str, Any] = dict(
            events=self.relation(engine, self.events, self.format), user_id=c["user_id"], ts=c["timestamp"],
            ts_format=self.timestamp_format, event_type=c.get("event_type"), metric_name=c["metric_name"],
            value=c["value"], experiment=c.get("experiment"), conversion_type=self.conversion_type,
            exposure_type=self.exposure_type,
        )
        if self.exposures is None:
            kw.update(assignments=engine.relation("ab_user_assignments"))
        else:
            e = self.exposure_columns or {}
            kw.update(
                exposures=self.relation(engine, self.exposures, self.exposures_format),
                exposure_user_id=e["user_id"], exposure_ts=e["timestamp"], exposure_variant=e["variant"],
                exposure_experiment=e.get("experiment"), exposure_ts_format=self.exposures_timestamp_format,
                segment_columns=self.segment_columns,
            )
        return QuerySource(**kw)


def load_source_config(config: dict[str, Any] | str | Path) -> SourceConfig:
    """Validate a source config (a dict, JSON text or a path to a JSON file); ``ValueError`` lists every problem.

    Shape::

        {"events": {"path": "events.parquet", "format": "parquet",     # or "table": "warehouse.events"
                    "timestamp_format": "timestamp",                   # or epoch_s | epoch_ms | epoch_us
                    "columns": {"user_id": "uid", "timestamp": "ts", "event_type": "type",
                                "metric_name": "name", "value": "value", "experiment": "exp"},
                    "conversion_type": "conversion", "exposure_type": "exposure"},
         "exposures": {"path": "exposures.parquet", "format": "parquet",   # optional: else the store's assignments
                       "timestamp_format": "timestamp",                  # of the exposures' timestamp column
                       "columns": {"user_id": "uid", "timestamp": "ts", "variant": "arm", "experiment": "exp"},
                       "segments": ["country"]}}

    ``event_type`` and ``experiment`` may be null (every row is a conversion / of this experiment). An unknown
    or misplaced key (``timestamp_format`` inside ``columns``, a ``path`` with format ``table``) is a problem,
    never ignored.
    """
    config = _config_object(config)
    problems: list[str] = []
    unknown = set(config) - {"events", "exposures"}
    if unknown:
        problems.append(f"unknown keys: {', '.join(sorted(unknown))}")
    ev = config.get("events")
    if not isinstance(ev, dict):
        raise ValueError("source config needs an 'events' object" + ("; " + "; ".join(problems) if problems else ""))
    _unknown_keys(ev, "events", _PART_KEYS["events"], problems)
    events, fmt = _location(ev, "events", problems)
    cols = _event_columns(ev, problems)
    tsf = _timestamp_format(ev, "events", problems)
    exposures: dict[str, Any] = {}
    ex = config.get("exposures")
    if ex is not None:
        if not isinstance(ex, dict):
            problems.append("exposures must be an object")
        else:
            exposures = _exposures(ex, problems)
    if problems:
        raise ValueError("invalid source config: " + "; ".join(problems))
    return SourceConfig(
        events=events, format=fmt, columns={k: cols.get(k) for k in _MAPPING_KEYS}, timestamp_format=tsf,
        conversion_type=str(ev.get("conversion_type", "conversion")), exposure_type=str(ev.get("exposure_type", "exposure")),
        **exposures,
    )


def _config_object(config: dict[str, Any] | str | Path) -> dict[str, Any]:
    """The config as a dict: read from a path, parsed from JSON text, or as given (``ValueError`` otherwise)."""
    if isinstance(config, Path) or (isinstance(config, str) and not config.lstrip().startswith("{")):
        path = Path(config)
        if not path.exists():
            raise ValueError(f"source config file not found: {path}")
        config = path.read_text()
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as exc:
            raise ValueError(f"source config is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError("source config must be a JSON object")
    return config


def _unknown_keys(part: dict[str, Any], label: str, allowed: Sequence[str], problems: list[str]) -> None:
    """A problem for every key of ``part`` not in ``allowed`` (``timestamp_format`` among columns: where it goes)."""
    for key in sorted(set(part) - set(allowed), key=str):
        hint = f" (timestamp_format goes in {label.split('.')[0]}, next to columns)" if key == "timestamp_format" else ""
        problems.append(f"{label}: unknown key {key!r}{hint}")


def _timestamp_format(part: dict[str, Any], label: str, problems: list[str]) -> str:
    """The ``timestamp_format`` of the ``events`` / ``exposures`` part (``timestamp`` when missing); problems appended."""
    tsf = part.get("timestamp_format", "timestamp")
    if tsf not in _TS_FORMATS:
        problems.append(f"{label}.timestamp_format must be timestamp, epoch_s, epoch_ms or epoch_us (got {tsf!r})")
        return "timestamp"
    return str(tsf)


def _location(part: dict[str, Any], label: str, problems: list[str]) -> tuple[str, str]:
    """The table or path and the format of the ``events`` / ``exposures`` part; problems appended."""
    fmt = part.get("format", "table" if "table" in part else "parquet")
    if fmt not in ("table", "parquet", "csv"):
        problems.append(f"{label}.format must be table, parquet or csv (got {fmt!r})")
    elif fmt == "table" and "path" in part:
        problems.append(f"{label}: 'path' goes with format parquet or csv; a table is named by 'table'")
    elif fmt != "table" and "table" in part:
        problems.append(f"{label}: 'table' goes with format table; a {fmt} file is named by 'path'")
    loc = part.get("table") if fmt == "table" else part.get("path")
    if not isinstance(loc, str) or not loc:
        problems.append(f"{label} needs {'table' if fmt == 'table' else 'path'}")
        loc = ""
    elif "'" in loc:
        problems.append(f"{label} location must not contain quotes")
    return str(loc), str(fmt)


def _event_columns(ev: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """``events.columns`` (empty when missing); problems appended."""
    cols = ev.get("columns")
    if not isinstance(cols, dict):
        problems.append("events.columns must map " + ", ".join(_MAPPING_KEYS) + " to column names")
        cols = {}
    _unknown_keys(cols, "events.columns", _MAPPING_KEYS, problems)
    for key in ("user_id", "timestamp", "metric_name", "value"):
        if not isinstance(cols.get(key), str) or not cols.get(key):
            problems.append(f"events.columns.{key} is required (a column name)")
    return cols


def _exposures(ex: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The :class:`SourceConfig` fields of an ``exposures`` part; problems appended."""
    _unknown_keys(ex, "exposures", _PART_KEYS["exposures"], problems)
    exposures, exposures_fmt = _location(ex, "exposures", problems)
    ecols = ex.get("columns") if isinstance(ex.get("columns"), dict) else None
    if ecols is None:
        problems.append("exposures.columns must map user_id, timestamp, variant (and experiment)")
        ecols = {}
    _unknown_keys(ecols, "exposures.columns", _EXPOSURE_KEYS, problems)
    for key in ("user_id", "timestamp", "variant"):
        if not isinstance(ecols.get(key), str) or not ecols.get(key):
            problems.append(f"exposures.columns.{key} is required (a column name)")
    seg = ex.get("segments", [])
    if not (isinstance(seg, list) and all(isinstance(s, str) for s in seg)):
        problems.append("exposures.segments must be a list of column names")
        seg = []
    return {"exposures": exposures, "exposures_format": exposures_fmt or "table", "exposure_columns": ecols,
            "exposures_timestamp_format": _timestamp_format(ex, "exposures", problems), "segment_columns": tuple(seg)}


# --------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class MetricStatsRow:
    """Sufficient statistics of one metric in one variant (and segment), from any engine.

    For ``ratio`` metrics y is the numerator and x the denominator; with CUPED x is the
    pre-exposure covariate. For ``quantile`` metrics ``q_n`` values were ranked and ``q_value`` is
    the exact nearest-rank quantile (``n`` = users with a value).
    """

    metric: str
    kind: str
    variant: Any
    segment: str
    n: int
    sum_y: float
    sum_y2: float
    sum_x: float
    sum_x2: float
    sum_xy: float
    q_n: int
    q_value: float | None
    engine: str
    #: Quantile metrics: the order statistics bounding the interval (``build_stats_query``'s ``quantile_alpha``).
    q_lower: float | None = None
    q_upper: float | None = None

    @property
    def binary(self) -> BinarySummary:
        """A binomial metric as a :class:`BinarySummary` (converted users out of ``n``)."""
        return BinarySummary(n=self.n, conversions=int(round(self.sum_y)))

    @property
    def summary(self) -> MeanSummary:
        """The metric (numerator for ratios) as a :class:`MeanSummary`."""
        return MeanSummary(n=self.n, sum=self.sum_y, sum_squares=self.sum_y2)

    @property
    def covariate(self) -> CovariateSummary:
        """y with x (CUPED covariate or ratio denominator) as a :class:`CovariateSummary`."""
        return CovariateSummary(
            n=self.n, sum_y=self.sum_y, sum_y2=self.sum_y2, sum_x=self.sum_x, sum_x2=self.sum_x2, sum_xy=self.sum_xy
        )


def query_source(engine: Engine, source: QuerySource | SourceConfig | None = None) -> QuerySource:
    """The builder's :class:`QuerySource` on ``engine``: the store's tables by default."""
    if isinstance(source, SourceConfig):
        return source.query_source(engine)
    if source is None:
        return QuerySource(events=engine.relation("ab_experiment_results"), assignments=engine.relation("ab_user_assignments"))
    return source


def _num(v: Any) -> float:
    return 0.0 if v is None else float(v)


def compute_stats(
    experiment: Any,
    metrics: Sequence[Any],
    *,
    engine: Engine,
    source: QuerySource | SourceConfig | None = None,
    **options: Any,
) -> list[MetricStatsRow]:
    """Run the one analysis query of ``metrics`` on ``engine`` and return its rows as frozen dataclasses.

    ``experiment`` is the experiment id (store) or key (external source); ``options`` go to
    :func:`abcore.analysis.sql.build.build_stats_query` (start, end, segment, cuped, cuped_lookback_hours,
    quantile_alpha). Variants without population users have no row.
    """
    qs = query_source(engine, source)
    sql = build_stats_query(metrics, experiment=experiment, dialect=engine.dialect, source=qs, **options)
    kinds = {m.name: m.kind for m in metrics}
    return [
        MetricStatsRow(
            metric=str(r["metric"]), kind=kinds[str(r["metric"])], variant=r["variant"], segment=str(r["segment"]),
            n=int(r["n"]), sum_y=_num(r["sum_y"]), sum_y2=_num(r["sum_y2"]), sum_x=_num(r["sum_x"]),
            sum_x2=_num(r["sum_x2"]), sum_xy=_num(r["sum_xy"]), q_n=int(r["q_n"] or 0),
            q_value=None if r["q_value"] is None else float(r["q_value"]), engine=engine.name,
            q_lower=None if r.get("q_lower") is None else float(r["q_lower"]),
            q_upper=None if r.get("q_upper") is None else float(r["q_upper"]),
        )
        for r in engine.run(sql)
    ]
