"""Settings: where the database lives, and which engine the dashboard analyses with.

The database URL comes from ``ABCORE_DATABASE_URL``; without it abcore uses the
SQLite file ``data/abcore.db`` in the project root (the folder holding
``pyproject.toml``), whatever the current working directory is.
``ABCORE_ANALYSIS_ENGINE`` / ``ABCORE_DUCKDB_MIN_EVENTS``: see :func:`analysis_engine_setting`;
``ABCORE_DUCKDB_MEMORY_LIMIT``: see :func:`duckdb_memory_limit`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

DATABASE_URL_ENV = "ABCORE_DATABASE_URL"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE_PATH = PROJECT_ROOT / "data" / "abcore.db"


def default_database_url() -> str:
    """The embedded SQLite default: ``sqlite:///<project>/data/abcore.db`` (absolute path)."""
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


def database_url() -> str:
    """The database URL in force: ``$ABCORE_DATABASE_URL`` if set and non-empty, else the default."""
    return os.environ.get(DATABASE_URL_ENV, "").strip() or default_database_url()


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to show in the UI or logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given, it has no password part we know of
        return url


# --------------------------------------------------------------------------- analysis engine of the dashboard

DUCKDB_MEMORY_LIMIT_ENV = "ABCORE_DUCKDB_MEMORY_LIMIT"


def duckdb_memory_limit() -> str | None:
    """The DuckDB memory limit of engines built without one: ``$ABCORE_DUCKDB_MEMORY_LIMIT`` (DuckDB's syntax,
    e.g. ``1GB``, ``1500MB``) if set and non-empty, else ``None`` (DuckDB's default, 80 % of the RAM)."""
    return os.environ.get(DUCKDB_MEMORY_LIMIT_ENV, "").strip() or None


ANALYSIS_ENGINE_ENV = "ABCORE_ANALYSIS_ENGINE"
DUCKDB_MIN_EVENTS_ENV = "ABCORE_DUCKDB_MIN_EVENTS"
DASHBOARD_ENGINES: tuple[str, ...] = ("store", "duckdb", "auto")
DEFAULT_DUCKDB_MIN_EVENTS = 1_000_000


def analysis_engine_setting() -> tuple[str, int]:
    """The dashboard's analysis engine setting ``(engine, min_events)`` from the environment.

    ``ABCORE_ANALYSIS_ENGINE`` is ``store`` (the default: the aggregation SQL runs on the store),
    ``duckdb`` (always embedded DuckDB over the store) or ``auto`` (DuckDB when the experiment has
    more than ``ABCORE_DUCKDB_MIN_EVENTS`` events, default 1,000,000). Setting only
    ``ABCORE_DUCKDB_MIN_EVENTS`` means ``auto``. Raises ``ValueError`` listing every problem
    (an unknown engine, a threshold that is not a whole number >= 0, a threshold with a fixed engine).
    """
    raw_engine = os.environ.get(ANALYSIS_ENGINE_ENV, "").strip().lower()
    raw_min = os.environ.get(DUCKDB_MIN_EVENTS_ENV, "").strip().replace("_", "")
    problems: list[str] = []
    engine = raw_engine or ("auto" if raw_min else "store")
    if engine not in DASHBOARD_ENGINES:
        hint = " (Spark is for batch analyses: abcore analyze --engine spark)" if engine == "spark" else ""
        problems.append(f"{ANALYSIS_ENGINE_ENV} must be one of {', '.join(DASHBOARD_ENGINES)}; got {raw_engine!r}{hint}")
    min_events = DEFAULT_DUCKDB_MIN_EVENTS
    if raw_min:
        if raw_min.isdigit():
            min_events = int(raw_min)
        else:
            problems.append(f"{DUCKDB_MIN_EVENTS_ENV} must be a whole number of events >= 0; got {raw_min!r}")
        if engine in ("store", "duckdb"):
            problems.append(f"{DUCKDB_MIN_EVENTS_ENV} applies only with {ANALYSIS_ENGINE_ENV}=auto (or unset); "
                            f"it is {engine!r}")
    if problems:
        raise ValueError("invalid analysis engine setting: " + "; ".join(problems))
    return engine, min_events


def choose_analysis_engine(count_events: Callable[[], int]) -> str:
    """``"store"`` or ``"duckdb"`` for one analysis, by :func:`analysis_engine_setting`.

    ``count_events`` is called only in ``auto`` mode (it returns the experiment's event count).
    ``auto`` stays on the store when DuckDB is not installed (the ``duckdb`` extra); an explicit
    ``duckdb`` without it fails in the analysis with an ``ImportError`` naming the extra.
    """
    engine, min_events = analysis_engine_setting()
    if engine != "auto":
        return engine
    if importlib.util.find_spec("duckdb") is None:
        return "store"
    return "duckdb" if count_events() > min_events else "store"
