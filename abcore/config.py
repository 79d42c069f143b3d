"""Settings: every ``ABCORE_*`` environment variable abcore reads, in one table.

:data:`SETTINGS` describes each setting (its variable, type, default and meaning); :func:`load_settings`
reads them all into one frozen :class:`Settings`, refusing invalid values with a
:class:`SettingError` that names the variable. A module that needs one setting reads it with
:func:`setting` when it needs it (so a bad value of one variable only stops the feature that uses
it, and a test may change the environment between calls). :func:`settings_table` renders the table
for the documentation.

The database URL comes from ``ABCORE_DATABASE_URL``; without it abcore uses the
SQLite file ``data/abcore.db`` in the project root (the folder holding
``pyproject.toml``) of a source checkout, whatever the current working directory is; an installed
package (no checkout around it) uses ``data/abcore.db`` under the current working directory.
``ABCORE_ANALYSIS_ENGINE`` / ``ABCORE_DUCKDB_MIN_EVENTS``: see :func:`analysis_engine_setting`;
``ABCORE_DUCKDB_MEMORY_LIMIT``: see :func:`duckdb_memory_limit`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlsplit

from abcore.errors import Invalid

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: True when abcore runs from a source checkout (``pyproject.toml`` beside the package), not an installed wheel.
IS_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file()
DEFAULT_SQLITE_PATH = (PROJECT_ROOT if IS_CHECKOUT else Path.cwd()) / "data" / "abcore.db"
DATABASE_URL_ENV = "ABCORE_DATABASE_URL"
DUCKDB_MEMORY_LIMIT_ENV = "ABCORE_DUCKDB_MEMORY_LIMIT"
ANALYSIS_ENGINE_ENV = "ABCORE_ANALYSIS_ENGINE"
DUCKDB_MIN_EVENTS_ENV = "ABCORE_DUCKDB_MIN_EVENTS"
DASHBOARD_ENGINES: tuple[str, ...] = ("store", "duckdb", "auto")
DEFAULT_DUCKDB_MIN_EVENTS = 1_000_000


class SettingError(Invalid, ValueError):
    """An ``ABCORE_*`` variable holds a value abcore cannot use; the message names the variable."""


def default_database_url() -> str:
    """The embedded SQLite default: ``sqlite:///<project>/data/abcore.db`` (absolute path)."""
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


def is_http_url(url: str) -> bool:
    """True for an ``http://`` or ``https://`` URL with a host."""
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


# --------------------------------------------------------------------------- parsers (name, stripped text) -> value


def _text(_name: str, text: str) -> str:
    return text


def _lower(_name: str, text: str) -> str:
    return text.lower()


def _api_number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SettingError(f"${name} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise SettingError(f"${name} must be a finite number >= 0, got {text!r}")
    return value


def _api_bytes(name: str, text: str) -> int:
    return int(_api_number(name, text))


def _whole_number(name: str, text: str) -> int:
    text = text.replace("_", "")
    if not text.isdigit():
        raise SettingError(f"{name} must be a whole number of events >= 0; got {text!r}")
    return int(text)


def _webhook_number(kind: type, minimum: float) -> Callable[[str, str], Any]:
    def parse(name: str, text: str) -> Any:
        try:
            number = kind(text)
        except ValueError:
            raise SettingError(f"{name} must be a number, got {text!r}") from None
        if number < minimum:
            raise SettingError(f"{name} must be positive, got {text!r}")
        return number

    return parse


def _positive_seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SettingError(f"{name} must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise SettingError(f"{name} must be a finite number of seconds > 0, got {text!r}")
    return value


def _url_list(name: str, text: str) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in text.split(",") if u.strip())
    bad = [u for u in urls if not is_http_url(u)]
    if bad:
        raise SettingError(f"{name} holds invalid URL(s): {', '.join(bad)} (need http:// or https://)")
    return urls


def _base_url(_name: str, text: str) -> str:
    return text.rstrip("/")


#: A host name as abcore accepts it (lowercase ASCII labels; an international name in its xn-- form).
HOST_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$")


def _allow_list(name: str, text: str) -> tuple[str, ...]:
    """Host names (lowercased) and IP networks (an address is a network of one, ``10.0.0.0/8``) as text."""
    entries: list[str] = []
    bad: list[str] = []
    for raw in (part.strip().lower() for part in text.split(",")):
        if not raw:
            continue
        try:
            entries.append(str(ipaddress.ip_network(raw, strict=False)))
        except ValueError:
            if HOST_NAME.match(raw) and not raw.replace(".", "").isdigit():
                entries.append(raw.rstrip("."))
            else:
                bad.append(raw)
    if bad:
        raise SettingError(f"{name} holds entries that are neither a host name, an IP address nor a network "
                           f"(10.0.0.0/8): {', '.join(bad)}")
    return tuple(dict.fromkeys(entries))


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Setting:
    """One ``ABCORE_*`` variable: its :class:`Settings` field, type (in words), default and meaning.

    ``parse(env, text)`` turns the variable's text into the value or raises :class:`SettingError`;
    an unset or blank variable means the default. ``keep_whitespace``: the text is used unstripped.
    """

    env: str
    field: str
    type: str
    default: Any
    description: str
    parse: Callable[[str, str], Any] = _text
    keep_whitespace: bool = False

    def read(self, environ: Mapping[str, str] | None = None) -> Any:
        """The value in ``environ`` (default ``os.environ``), the default when unset or blank."""
        raw = (os.environ if environ is None else environ).get(self.env)
        text = (raw or "") if self.keep_whitespace else (raw or "").strip()
        return self.parse(self.env, text) if text else self.default


SETTINGS: dict[str, Setting] = {s.field: s for s in (
    Setting(DATABASE_URL_ENV, "database_url", "SQLAlchemy URL", default_database_url(),
            "The store: SQLite (default: data/abcore.db in the project root) or PostgreSQL."),
    Setting(ANALYSIS_ENGINE_ENV, "analysis_engine", "store, duckdb or auto", "store",
            "Where the dashboard's analysis query runs; 'auto' when only ABCORE_DUCKDB_MIN_EVENTS is set.", _lower),
    Setting(DUCKDB_MIN_EVENTS_ENV, "duckdb_min_events", "whole number >= 0", DEFAULT_DUCKDB_MIN_EVENTS,
            "With the 'auto' engine: experiments with more events than this are analysed on DuckDB.",
            _whole_number),
    Setting(DUCKDB_MEMORY_LIMIT_ENV, "duckdb_memory_limit", "DuckDB size (e.g. 1GB)", None,
            "Memory limit of DuckDB engines built without one (default DuckDB's: 80 % of the RAM)."),
    Setting("ABCORE_API_RATE_LIMIT", "api_rate_limit", "number >= 0", 100.0,
            "HTTP API, management routes (experiments, metrics, results, export): requests per second per key and "
            "worker for keys without their own limit; 0: unlimited.",
            _api_number),
    Setting("ABCORE_API_DATA_RATE_LIMIT", "api_data_rate_limit", "number >= 0", 0.0,
            "HTTP API, data plane (assign, assign/batch, conversions, events): requests per second per key and "
            "worker for keys without their own limit; 0 (the default): not throttled.",
            _api_number),
    Setting("ABCORE_API_MAX_BODY_BYTES", "api_max_body_bytes", "number >= 0", 1_048_576,
            "HTTP API: larger request bodies get 413 before they are parsed.", _api_bytes),
    Setting("ABCORE_USERS", "users", "JSON object", None,
            'Dashboard users, {"name": {"password_hash": ..., "role": ...}} (with .streamlit/secrets.toml).'),
    Setting("ABCORE_SESSION_SECRET", "session_secret", "text", None,
            "Key that signs dashboard sign-in cookies (default: secrets.toml's session_secret, else per process).",
            keep_whitespace=True),
    Setting("ABCORE_WEBHOOK_URLS", "webhook_urls", "comma-separated http(s) URLs", (),
            "Watcher: alert webhooks, in addition to those configured in the dashboard.", _url_list),
    Setting("ABCORE_DASHBOARD_URL", "dashboard_url", "URL", "http://localhost:8501",
            "Watcher: the dashboard's address, for links in alerts.", _base_url),
    Setting("ABCORE_WEBHOOK_RETRIES", "webhook_retries", "whole number >= 1", 3,
            "Watcher: attempts per webhook URL within one pass.", _webhook_number(int, 1)),
    Setting("ABCORE_WEBHOOK_BACKOFF", "webhook_backoff", "seconds >= 0", 0.5,
            "Watcher: wait backoff * 2**k seconds between attempts within a pass.", _webhook_number(float, 0)),
    Setting("ABCORE_WEBHOOK_TIMEOUT", "webhook_timeout", "seconds >= 0", 5.0,
            "Watcher: the time one webhook POST may take in all (name lookup, connect, send, answer).",
            _webhook_number(float, 0)),
    Setting("ABCORE_WEBHOOK_RETRY_AFTER", "webhook_retry_after", "seconds >= 0", 30.0,
            "Watcher: an undelivered alert is retried on a later pass, not before this (doubling, at most 1 h).",
            _webhook_number(float, 0)),
    Setting("ABCORE_WATCH_EVERY", "watch_every", "seconds > 0", 300.0,
            "Watcher: seconds between the passes of the watcher `abcore dashboard` runs; the dashboard shows a "
            "watcher in red when its last pass is older than twice its interval (twice this for `abcore watch --once`).",
            _positive_seconds),
    Setting("ABCORE_WEBHOOK_ALLOW", "webhook_allow", "comma-separated host names, IP addresses, networks", (),
            "Watcher: internal receivers a webhook may reach although their address is loopback, private or "
            "link-local (e.g. 10.0.0.0/8, hooks.internal).", _allow_list),
)}


@dataclass(frozen=True)
class Settings:
    """Every ``ABCORE_*`` setting (see :data:`SETTINGS` for each one's variable, default and meaning)."""

    database_url: str
    analysis_engine: str
    duckdb_min_events: int
    duckdb_memory_limit: str | None
    api_rate_limit: float
    api_data_rate_limit: float
    api_max_body_bytes: int
    users: str | None
    session_secret: str | None
    webhook_urls: tuple[str, ...]
    dashboard_url: str
    webhook_retries: int
    webhook_backoff: float
    webhook_timeout: float
    webhook_retry_after: float
    watch_every: float
    webhook_allow: tuple[str, ...]


def setting(field: str, environ: Mapping[str, str] | None = None) -> Any:
    """The value of one setting (a :class:`Settings` field name) read now from ``environ`` (default
    ``os.environ``); :class:`SettingError` naming the variable when its value is invalid."""
    return SETTINGS[field].read(environ)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Every setting read from ``environ`` (default ``os.environ``).

    Raises :class:`SettingError` listing every invalid variable (each message names its variable).
    """
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, spec in SETTINGS.items():
        if name in ("analysis_engine", "duckdb_min_events"):
            continue
        try:
            values[name] = spec.read(environ)
        except SettingError as exc:
            problems.append(str(exc))
    try:
        values["analysis_engine"], values["duckdb_min_events"] = analysis_engine_setting(environ)
    except SettingError as exc:
        problems.append(str(exc))
    if problems:
        raise SettingError("; ".join(problems))
    return Settings(**values)


def settings_table() -> str:
    """The settings as a Markdown table (variable, type, default, meaning), for the documentation."""
    lines = ["| variable | type | default | meaning |", "| --- | --- | --- | --- |"]
    for spec in SETTINGS.values():
        default = "—" if spec.default in (None, ()) else f"`{spec.default}`"
        if spec.field == "database_url":
            default = "`sqlite:///<project>/data/abcore.db`"
        lines.append(f"| `{spec.env}` | {spec.type} | {default} | {spec.description} |")
    return "\n".join(lines)


def database_url() -> str:
    """The database URL in force: ``$ABCORE_DATABASE_URL`` if set and non-empty, else the default."""
    return str(setting("database_url"))


def redact_url(url: str) -> str:
    """The URL as it may be shown in the UI, logs and audit rows: nothing secret in it.

    An http(s) URL (a webhook: Slack's carry a token in the path) keeps only ``scheme://host[:port]``,
    with ``/…`` in place of any path, query or fragment and without user info; any other URL (a
    database URL) keeps everything but its password, shown as ``***``.
    """
    from sqlalchemy.engine import make_url

    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is not None and parts.scheme in ("http", "https"):
        host = parts.netloc.rpartition("@")[2]
        tail = "/…" if parts.path.strip("/") or parts.query or parts.fragment else ""
        return f"{parts.scheme}://{host}{tail}"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given, it has no password part we know of
        return url


#: An http(s) URL inside free text: up to a blank, a quote or an angle bracket (trailing punctuation is trimmed).
_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_CLOSING = {")": "(", "]": "[", "}": "{"}


def _url_end(found: str) -> int:
    """Where the URL of a :data:`_URL_IN_TEXT` match ends: punctuation after it (``:`` in ``"<url>: HTTP 500"``,
    a full stop, a closing bracket that has no opening one inside the URL) belongs to the text around it."""
    end = len(found)
    while end:
        last = found[end - 1]
        unopened = last in _CLOSING and found.count(last, 0, end) > found.count(_CLOSING[last], 0, end)
        if last not in ".,;:!?" and not unopened:
            break
        end -= 1
    return end


def redact_urls_in_text(text: str) -> str:
    """``text`` (an error message, a log line) with every http(s) URL in it replaced by :func:`redact_url`; the
    rest of the text is kept. Text whose URLs are already redacted is returned as it is."""
    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        end = _url_end(found)
        return redact_url(found[:end]) + found[end:] if end else found

    return _URL_IN_TEXT.sub(replace, text)


_DELIVERY_MARK = re.compile(r".* #[0-9a-f]{12}")


def delivery_mark(url: str) -> str:
    """How ``ab_alerts.delivered_to`` records that the alert reached ``url``, without the URL's secret: the URL
    redacted as everywhere else (:func:`redact_url`, ``https://hooks.slack.com/…``) and the first 12 hex digits
    of the SHA-256 of the whole URL, so that two webhooks on one host stay apart. A mark cannot be turned back
    into the URL (the token's random bits are not in it); the URLs to post to stay in ``$ABCORE_WEBHOOK_URLS``
    and ``ab_webhooks``. (Here rather than in :mod:`abcore.watch.webhooks`, which uses it, so that the store's
    migrations can use it too.)"""
    return f"{redact_url(url)} #{hashlib.sha256(url.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def delivery_marks(entries: Any) -> list[str]:
    """The delivery marks of a stored ``delivered_to`` list: a mark stays as it is, an entry that is still a whole
    URL (written by a version before marks) becomes :func:`delivery_mark` of it."""
    return [str(e) if _DELIVERY_MARK.fullmatch(str(e)) else delivery_mark(str(e)) for e in entries or []]


# --------------------------------------------------------------------------- analysis engine of the dashboard


def duckdb_memory_limit() -> str | None:
    """The DuckDB memory limit of engines built without one: ``$ABCORE_DUCKDB_MEMORY_LIMIT`` (DuckDB's syntax,
    e.g. ``1GB``, ``1500MB``) if set and non-empty, else ``None`` (DuckDB's default, 80 % of the RAM)."""
    value: str | None = setting("duckdb_memory_limit")
    return value


def analysis_engine_setting(environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    """The dashboard's analysis engine setting ``(engine, min_events)`` from the environment.

    ``ABCORE_ANALYSIS_ENGINE`` is ``store`` (the default: the aggregation SQL runs on the store),
    ``duckdb`` (always embedded DuckDB over the store) or ``auto`` (DuckDB when the experiment has
    more than ``ABCORE_DUCKDB_MIN_EVENTS`` events, default 1,000,000). Setting only
    ``ABCORE_DUCKDB_MIN_EVENTS`` means ``auto``. Raises :class:`SettingError` (a ``ValueError``) listing
    every problem (an unknown engine, a threshold that is not a whole number >= 0, a threshold with a
    fixed engine).
    """
    env = os.environ if environ is None else environ
    raw_engine = setting("analysis_engine", environ) if env.get(ANALYSIS_ENGINE_ENV, "").strip() else ""
    raw_min = env.get(DUCKDB_MIN_EVENTS_ENV, "").strip()
    problems: list[str] = []
    engine = raw_engine or ("auto" if raw_min else "store")
    if engine not in DASHBOARD_ENGINES:
        hint = " (Spark is for batch analyses: abcore analyze --engine spark)" if engine == "spark" else ""
        problems.append(f"{ANALYSIS_ENGINE_ENV} must be one of {', '.join(DASHBOARD_ENGINES)}; got {raw_engine!r}{hint}")
    min_events = DEFAULT_DUCKDB_MIN_EVENTS
    if raw_min:
        try:
            min_events = setting("duckdb_min_events", environ)
        except SettingError as exc:
            problems.append(str(exc))
        if engine in ("store", "duckdb"):
            problems.append(f"{DUCKDB_MIN_EVENTS_ENV} applies only with {ANALYSIS_ENGINE_ENV}=auto (or unset); "
                            f"it is {engine!r}")
    if problems:
        raise SettingError("invalid analysis engine setting: " + "; ".join(problems))
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
