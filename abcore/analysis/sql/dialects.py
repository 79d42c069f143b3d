"""The few per-engine differences of the analysis SQL, in one place.

Everything else in :mod:`abcore.analysis.sql` is plain ANSI SQL (CTEs, ``CASE``, ``COALESCE``,
window functions) that SQLite (>= 3.35 with math functions), PostgreSQL, DuckDB and
Spark SQL all run unchanged. Nothing here relies on a transpiler passing an unknown function
through: every dialect spells its functions explicitly.

Differences kept here:

* **timestamps to integers** (date arithmetic): windows and delays are compared as integer
  microseconds since the epoch, so every engine does exact integer arithmetic;
* **integer division** (the UTC day number of a timestamp for the daily series);
* **string literals** (:meth:`Dialect.string`: Spark reads backslash escapes and ``${...}`` variables
  inside literals, the others only a doubled quote);
* **JSON access** (segment attributes stored as JSON on the assignment, :meth:`Dialect.json_text`: any
  attribute name, booleans as ``true``/``false``);
* **text casts** and identifier quoting;
* **the population as a keyed TEMP table** on SQLite (:attr:`Dialect.temp_population`);
* **plan shapes** of DuckDB (:attr:`Dialect.inline_metric_events`, :attr:`Dialect.group_user_keys`,
  :attr:`Dialect.one_user_pass`, :attr:`Dialect.rank_distinct_values`,
  :attr:`Dialect.narrow_shared_scan`): the same rows, less memory and less work on a column store.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DIALECTS", "Dialect", "get_dialect"]

US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class Dialect:
    """How one engine spells the handful of non-portable expressions."""

    name: str

    def quote(self, identifier: str) -> str:
        """A quoted identifier (backticks on Spark, double quotes elsewhere)."""
        if self.name == "spark":
            return "`" + identifier.replace("`", "``") + "`"
        return '"' + identifier.replace('"', '""') + '"'

    def epoch_us(self, expr: str, fmt: str = "timestamp") -> str:
        """Integer microseconds since 1970-01-01 UTC of a timestamp expression.

        ``fmt`` says how the column stores time: ``timestamp`` (a native timestamp; on SQLite the
        store's UTC text ``YYYY-MM-DD HH:MM:SS[.ffffff]``), ``epoch_s``, ``epoch_ms`` or ``epoch_us``.
        """
        if fmt == "epoch_us":
            return f"CAST({expr} AS BIGINT)"
        if fmt == "epoch_ms":
            return f"(CAST({expr} AS BIGINT) * 1000)"
        if fmt == "epoch_s":
            return f"(CAST({expr} AS BIGINT) * 1000000)"
        if fmt != "timestamp":
            raise ValueError(f"unknown timestamp format {fmt!r}")
        if self.name == "sqlite":
            # Seconds from strftime, microseconds from the fixed-position fraction ('' -> 0).
            return (
                f"(CAST(strftime('%s', substr({expr}, 1, 19)) AS INTEGER) * 1000000"
                f" + CAST(substr(substr({expr}, 21, 6) || '000000', 1, 6) AS INTEGER))"
            )
        if self.name == "postgresql":
            return f"CAST(EXTRACT(EPOCH FROM {expr}) * 1000000 AS BIGINT)"
        if self.name == "duckdb":
            return f"epoch_us(CAST({expr} AS TIMESTAMP))"
        if self.name == "spark":
            return f"unix_micros(CAST({expr} AS TIMESTAMP))"
        raise ValueError(f"unknown dialect {self.name!r}")

    @property
    def shared_scan(self) -> bool:
        """Whether the events of every metric are read in one shared scan (``events_in``).

        Column stores and PostgreSQL scan once and split; SQLite instead reads each metric's own
        range of the ``(experiment_id, event_type, metric_name, user_id, ts, value)`` index, whose
        user order lets the per-user aggregation stream (SQLite's GROUP BY otherwise sorts every row).
        """
        return self.name != "sqlite"

    @property
    def temp_population(self) -> bool:
        """Whether :func:`abcore.analysis.sql.build.build_analysis_statements` materialises the population first.

        On SQLite the population CTE, read by every metric's events, would be looked up through an
        automatic index rebuilt for each consumer (per-user values, daily sums, percentiles); a TEMP
        table keyed by ``user_id`` (prelude statements on the same connection) is built once.
        The other engines plan the CTE themselves (hash joins) and run the one statement.
        """
        return self.name == "sqlite"

    @property
    def inline_metric_events(self) -> bool:
        """Whether the per-metric event CTEs (``m<i>_events``) are ``NOT MATERIALIZED``.

        SQLite streams each metric's index range in user order into every consumer. DuckDB
        materialises a CTE read more than once: ``m<i>_events`` would be a second copy of its rows
        of the (materialised) shared scan ``events_in``; inlined, each consumer filters
        ``events_in`` itself (a column filter, no copy).
        """
        return self.name in ("sqlite", "duckdb")

    @property
    def group_user_keys(self) -> bool:
        """Whether per-user CTEs group by ``user_id, variant, segment`` instead of taking ``MIN(variant)``,
        ``MIN(segment)`` per ``user_id``.

        Both give the same rows (a population user has one variant and one segment). DuckDB hashes
        the three keys more cheaply than it keeps two string ``MIN`` states per user; SQLite keeps
        ``GROUP BY user_id`` so its per-user aggregation streams in the index's user order.
        """
        return self.name == "duckdb"

    @property
    def one_user_pass(self) -> bool:
        """Whether the per-user values of every metric come from ONE ``GROUP BY user_id, variant, segment``
        over the shared scan (``users_all``) instead of one per metric.

        A user without events of a metric then has y = x = 0 there, which adds nothing to any sum
        (and no day of first conversion), so the rows are the same. DuckDB builds one hash table of
        the users instead of one per metric (time and memory); SQLite reads each metric's own index
        range instead (:attr:`shared_scan` False), so this does not apply there.
        """
        return self.name == "duckdb"

    @property
    def narrow_shared_scan(self) -> bool:
        """Whether the shared scan ``events_in`` carries small columns: the population's ``user_id`` is an
        integer surrogate (``ROW_NUMBER() OVER ()``, the source id kept as ``source_user_id`` for the join),
        ``metric_name`` is the metric's index among the analysed names, and an unsegmented analysis has no
        ``segment`` column there (the constant is written where it is read).

        The same rows: every user keeps one distinct key and every name one distinct code. DuckDB
        materialises ``events_in`` (every analysed event) and hashes its users twice; with 8-byte keys and
        1-byte codes instead of 16-byte strings less of both spills to disk under a memory limit
        (100M Parquet events at a 1 GB limit: the statement 97-103 s before, 69-83 s after). Not on Spark, where ``ROW_NUMBER() OVER ()`` gathers
        every row in one partition.
        """
        return self.name == "duckdb"

    @property
    def rank_distinct_values(self) -> bool:
        """Whether nearest-rank percentiles rank the distinct values with their counts instead of every value.

        The value at rank ``k`` is the smallest distinct value whose running count reaches ``k``:
        exactly the ``k``-th smallest value (ties included), with one row per distinct value in the
        window's sort instead of one per event. Used on DuckDB, where the sort of every event
        value was the largest single cost of the percentile table.
        """
        return self.name == "duckdb"

    # -- timestamp keys: what rows are compared and grouped by (cheap per row), converted per user only
    def text_keys(self, fmt: str) -> bool:
        """Whether timestamps of format ``fmt`` are compared as text on this engine.

        SQLite stores the store's timestamps as fixed-width UTC text ``YYYY-MM-DD HH:MM:SS.ffffff``
        (what SQLAlchemy writes), which sorts like time: comparing that text is several times
        cheaper than converting every event row with ``strftime``. Bounds are rendered in the
        same format (:meth:`us_to_key`, :meth:`key_literal`), so comparisons stay exact.
        """
        return self.name == "sqlite" and fmt == "timestamp"

    def ts_key(self, expr: str, fmt: str = "timestamp") -> str:
        """The per-row comparable key of a timestamp: the text on SQLite (:meth:`text_keys`), else epoch microseconds."""
        return expr if self.text_keys(fmt) else self.epoch_us(expr, fmt)

    def key_to_us(self, expr: str, fmt: str = "timestamp") -> str:
        """Epoch microseconds of a key of :meth:`ts_key` (the identity unless keys are text)."""
        return self.epoch_us(expr, fmt) if self.text_keys(fmt) else expr

    def us_to_key(self, expr: str, fmt: str = "timestamp") -> str:
        """The key of an epoch-microsecond expression (non-negative), the inverse of :meth:`key_to_us`."""
        if not self.text_keys(fmt):
            return expr
        return (
            f"(strftime('%Y-%m-%d %H:%M:%S', ({expr}) / 1000000, 'unixepoch') || '.'"
            f" || printf('%06d', ({expr}) % 1000000))"
        )

    def key_literal(self, epoch_us: int, fmt: str = "timestamp") -> str:
        """A literal key for an instant given as epoch microseconds."""
        if not self.text_keys(fmt):
            return str(int(epoch_us))
        from datetime import UTC, datetime, timedelta

        instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(epoch_us))
        return "'" + instant.strftime("%Y-%m-%d %H:%M:%S.%f") + "'"

    def key_day(self, key: str, fmt: str = "timestamp") -> str:
        """The UTC day of a key, as a group key (``'YYYY-MM-DD'`` text on SQLite, else the day number)."""
        return f"substr({key}, 1, 10)" if self.text_keys(fmt) else self.day_number(key)

    def day_out(self, day: str, fmt: str = "timestamp") -> str:
        """The day number (days since 1970-01-01) of a :meth:`key_day` value (converted per output row)."""
        return f"CAST(julianday({day}) - 2440587.5 AS INTEGER)" if self.text_keys(fmt) else day

    def int_div(self, a: str, b: str) -> str:
        """Integer division of non-negative integers (``/`` on SQLite/Postgres ints, ``//`` DuckDB, ``div`` Spark)."""
        if self.name == "duckdb":
            return f"({a} // {b})"
        if self.name == "spark":
            return f"({a} div {b})"
        return f"({a} / {b})"

    def day_number(self, epoch_us_expr: str) -> str:
        """UTC day number (days since 1970-01-01) of an epoch-microsecond expression."""
        return self.int_div(epoch_us_expr, str(US_PER_DAY))

    def string(self, text: str) -> str:
        """A string literal that reads back as exactly ``text`` on this engine (the one place strings are quoted).

        SQLite, PostgreSQL (``standard_conforming_strings``, on since 9.1) and DuckDB take everything between
        the quotes literally but a doubled quote. Spark SQL reads backslash escapes inside a literal and
        substitutes ``${...}`` variables in the statement text, so there ``\\`` and ``'`` are escaped with a
        backslash and ``$`` is written ``\\u0024``: a name such as ``x\\' OR TRUE --`` stays one literal.
        """
        if self.name == "spark":
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("$", "\\u0024") + "'"
        return "'" + text.replace("'", "''") + "'"

    def json_text(self, column: str, key: str) -> str:
        """The JSON attribute ``key`` of the object in ``column`` as text (NULL when missing or null).

        Any key works (non-ASCII, quotes, backslashes, dots, newlines: it is matched as text, never parsed as a
        path), and every engine gives the same labels: strings as themselves, ``true``/``false`` for booleans
        (kept apart from the numbers ``1``/``0``), numbers and nested values as their JSON text.
        SQLite looks the key up among the object's decoded members (``json_each``; a path would compare the
        key with its escaped form as stored, and ``json_extract`` turns booleans into 1/0); DuckDB uses a JSON
        pointer (RFC 6901: ``~`` and ``/`` escaped); Spark reads the object as a map (``get_json_object``
        paths cannot hold every key).
        """
        if self.name == "sqlite":
            value = "CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(j.value AS TEXT) END"
            return f"(SELECT {value} FROM json_each({column}) j WHERE j.key = {self.string(key)} LIMIT 1)"
        if self.name == "postgresql":
            return f"(CAST({column} AS JSON) ->> {self.string(key)})"
        if self.name == "duckdb":
            pointer = "/" + key.replace("~", "~0").replace("/", "~1")
            return f"json_extract_string({column}, {self.string(pointer)})"
        if self.name == "spark":
            return f"from_json({column}, 'map<string,string>')[{self.string(key)}]"
        raise ValueError(f"unknown dialect {self.name!r}")

    def text(self, expr: str) -> str:
        """``expr`` cast to text."""
        kind = {"spark": "STRING", "duckdb": "VARCHAR"}.get(self.name, "TEXT")
        return f"CAST({expr} AS {kind})"

    def double(self, expr: str) -> str:
        """``expr`` cast to a double-precision float."""
        kind = {"postgresql": "DOUBLE PRECISION", "sqlite": "REAL"}.get(self.name, "DOUBLE")
        return f"CAST({expr} AS {kind})"

    def floor(self, expr: str) -> str:
        """Floor as an integer."""
        return f"CAST(FLOOR({expr}) AS BIGINT)" if self.name != "sqlite" else f"CAST(FLOOR({expr}) AS INTEGER)"

    def ceil(self, expr: str) -> str:
        """Ceiling as an integer."""
        return f"CAST(CEIL({expr}) AS BIGINT)" if self.name != "sqlite" else f"CAST(CEIL({expr}) AS INTEGER)"


DIALECTS: dict[str, Dialect] = {name: Dialect(name) for name in ("sqlite", "postgresql", "duckdb", "spark")}


def get_dialect(name: str) -> Dialect:
    """The :class:`Dialect` called ``name`` (``postgres`` is accepted for ``postgresql``); ``ValueError`` otherwise."""
    key = "postgresql" if name == "postgres" else name
    if key not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {name!r}; expected one of {sorted(DIALECTS)}")
    return DIALECTS[key]
