"""abcore.config: one Settings built from the table of ABCORE_* settings; every variable documented."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from abcore.api.deps import ApiSettings
from abcore.config import (
    SETTINGS,
    SettingError,
    Settings,
    default_database_url,
    load_settings,
    setting,
    settings_table,
)
from abcore.errors import Invalid
from abcore.watch.runner import WatchSettings

PACKAGE = Path(__file__).resolve().parents[1] / "abcore"


def test_settings_and_the_table_list_the_same_fields_each_described() -> None:
    assert [f.name for f in fields(Settings)] == list(SETTINGS)
    for name, spec in SETTINGS.items():
        assert spec.field == name
        assert spec.env.startswith("ABCORE_") and spec.type and spec.description


def test_every_abcore_variable_in_the_package_is_a_documented_setting() -> None:
    used = {m for path in PACKAGE.rglob("*.py") for m in re.findall(r"ABCORE_[A-Z_]*[A-Z](?![A-Z_])", path.read_text("utf-8"))}
    documented = {spec.env for spec in SETTINGS.values()}
    assert used - documented == set(), "document these in abcore.config.SETTINGS"
    table = settings_table()
    assert all(f"`{env}`" in table for env in documented)


def test_defaults() -> None:
    s = load_settings({})
    assert s.database_url == default_database_url()
    assert (s.analysis_engine, s.duckdb_min_events, s.duckdb_memory_limit) == ("store", 1_000_000, None)
    assert (s.api_rate_limit, s.api_max_body_bytes) == (100.0, 1_048_576)
    assert (s.users, s.session_secret, s.webhook_urls) == (None, None, ())


def test_the_consumers_defaults_are_the_tables() -> None:
    s = load_settings({})
    w = WatchSettings()
    assert (w.webhook_urls, w.dashboard_url, w.retries, w.backoff, w.timeout, w.retry_after) == (
        s.webhook_urls, s.dashboard_url, s.webhook_retries, s.webhook_backoff, s.webhook_timeout, s.webhook_retry_after)
    a = ApiSettings()
    assert (a.rate_limit, a.max_body_bytes) == (s.api_rate_limit, s.api_max_body_bytes)


def test_values_are_parsed() -> None:
    s = load_settings({
        "ABCORE_DATABASE_URL": " sqlite:///x.db ", "ABCORE_DUCKDB_MIN_EVENTS": "1_000",
        "ABCORE_API_MAX_BODY_BYTES": "2e3", "ABCORE_WEBHOOK_URLS": "http://a/x, https://b/y,",
        "ABCORE_DASHBOARD_URL": "http://dash/", "ABCORE_WEBHOOK_RETRIES": "5", "ABCORE_SESSION_SECRET": " s ",
    })
    assert s.database_url == "sqlite:///x.db"
    assert (s.analysis_engine, s.duckdb_min_events) == ("auto", 1000)
    assert s.api_max_body_bytes == 2000
    assert s.webhook_urls == ("http://a/x", "https://b/y")
    assert (s.dashboard_url, s.webhook_retries, s.session_secret) == ("http://dash", 5, " s ")


@pytest.mark.parametrize(("env", "value", "message"), [
    ("ABCORE_API_RATE_LIMIT", "fast", "$ABCORE_API_RATE_LIMIT must be a number, got 'fast'"),
    ("ABCORE_API_MAX_BODY_BYTES", "-1", "$ABCORE_API_MAX_BODY_BYTES must be a finite number >= 0, got '-1'"),
    ("ABCORE_WEBHOOK_RETRIES", "0", "ABCORE_WEBHOOK_RETRIES must be positive, got '0'"),
    ("ABCORE_WEBHOOK_TIMEOUT", "soon", "ABCORE_WEBHOOK_TIMEOUT must be a number, got 'soon'"),
    ("ABCORE_WEBHOOK_URLS", "ftp://x/y", "ABCORE_WEBHOOK_URLS holds invalid URL(s): ftp://x/y (need http:// or https://)"),
    ("ABCORE_ANALYSIS_ENGINE", "spark", "ABCORE_ANALYSIS_ENGINE must be one of store, duckdb, auto; got 'spark'"),
    ("ABCORE_DUCKDB_MIN_EVENTS", "many", "ABCORE_DUCKDB_MIN_EVENTS must be a whole number of events >= 0"),
])
def test_an_invalid_value_is_refused_naming_the_variable(env: str, value: str, message: str) -> None:
    with pytest.raises(SettingError) as raised:
        load_settings({env: value})
    assert message in str(raised.value)
    assert isinstance(raised.value, Invalid) and isinstance(raised.value, ValueError)


def test_every_problem_is_listed_and_one_bad_setting_does_not_stop_another() -> None:
    env = {"ABCORE_API_RATE_LIMIT": "x", "ABCORE_WEBHOOK_BACKOFF": "y"}
    with pytest.raises(SettingError, match="ABCORE_API_RATE_LIMIT.*ABCORE_WEBHOOK_BACKOFF"):
        load_settings(env)
    assert setting("database_url", env) == default_database_url()


def test_setting_reads_the_environment_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABCORE_API_RATE_LIMIT", "7")
    assert setting("api_rate_limit") == 7.0
    monkeypatch.setenv("ABCORE_API_RATE_LIMIT", " ")
    assert setting("api_rate_limit") == 100.0
