"""Migration 0013: webhook URLs that earlier versions stored whole (alerts' ``delivered_to`` and ``last_error``, the
audit rows of adding and removing a webhook) are rewritten with the product's one redaction rule, on SQLite and
PostgreSQL; already-redacted rows stay as they are, and the watcher still knows which webhooks an alert reached.

Each store is built at head, taken down to 0012 (0013's downgrade changes nothing), filled with rows as 0012
wrote them, and upgraded again. Every expected value is computed by :func:`abcore.config.redact_url`,
:func:`abcore.config.redact_urls_in_text` or :func:`abcore.config.delivery_mark`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.config import delivery_mark, redact_url
from abcore.store.db import alembic_config, current_revision, head_revision, make_engine
from abcore.store.tables import Alert, AuditLog, Webhook
from abcore.watch.webhooks import WatchSettings, deliver_pending
from tests.factories import make_experiment

from .conftest import LOCAL, Receiver

TOKEN = "xoxb-1234-5678-s3cr3tT0ken"  # the secret part of a Slack webhook URL: no rewritten row may hold it
SLACK = f"https://hooks.slack.com/services/T0001/B0002/{TOKEN}"
ERROR = "HTTP 500"  # what went wrong, after "<url>: " in ab_alerts.last_error


def _migration() -> ModuleType:
    """The module of migration 0013, as Alembic loads it."""
    script = ScriptDirectory.from_config(alembic_config()).get_revision("0013")
    assert script is not None and script.down_revision == "0012"
    return script.module


@pytest.fixture
def old_store(db_url: str) -> Iterator[Engine]:
    """A store of each backend at revision 0012 (built at head, then downgraded)."""
    engine = make_engine(db_url)
    command.downgrade(alembic_config(engine), "0012")
    assert current_revision(engine) == "0012"
    yield engine
    engine.dispose()


def _upgrade(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "head")
    assert current_revision(engine) == head_revision()


def _rows(engine: Engine, table: str) -> dict[int, dict[str, Any]]:
    """Every row of ``table`` by id, each column as read back (JSON columns as Python values)."""
    with engine.connect() as connection:
        model = {"ab_alerts": Alert, "ab_audit_log": AuditLog, "ab_webhooks": Webhook}[table]
        rows = connection.execute(sa.select(model.__table__)).mappings().all()  # type: ignore[attr-defined]
    return {int(row["id"]): dict(row) for row in rows}


def _add(engine: Engine, *rows: Any) -> list[int]:
    with Session(engine, expire_on_commit=False) as session:
        session.add_all(rows)
        session.commit()
        return [int(row.id) for row in rows]


def test_upgrade_rewrites_every_stored_webhook_url_and_nothing_else(old_store: Engine) -> None:
    exp = make_experiment(old_store, "watched")  # its own audit rows ("create", "start") must not change
    old_alert, new_alert = _add(
        old_store,
        # as versions before redaction wrote them: the whole URL
        Alert(experiment_id=int(exp.id), rule="srm", payload={"text": "srm"}, delivered_to=[SLACK],  # type: ignore[arg-type]
              attempts=3, last_error=f"{SLACK}: {ERROR}"),
        # as 0012 writes them: already redacted
        Alert(experiment_id=int(exp.id), rule="max_days", payload={"text": "days"},  # type: ignore[arg-type]
              delivered_to=[delivery_mark(SLACK)], attempts=1, last_error=f"{redact_url(SLACK)}: {ERROR}"),
    )
    added, removed = _add(
        old_store,
        AuditLog(experiment_id=None, action="add_webhook", actor="ops", details={"url": SLACK, "name": "alerts"}),
        AuditLog(experiment_id=None, action="remove_webhook", actor="ops", details={"url": SLACK}),
    )
    (hook,) = _add(old_store, Webhook(url=SLACK, name="alerts", created_by="ops"))  # the URL to post to: kept
    before = {table: _rows(old_store, table) for table in ("ab_alerts", "ab_audit_log", "ab_webhooks")}

    _upgrade(old_store)

    after = {table: _rows(old_store, table) for table in ("ab_alerts", "ab_audit_log", "ab_webhooks")}
    rewritten = {"ab_alerts": {old_alert}, "ab_audit_log": {added, removed}}
    for table, ids in rewritten.items():
        assert TOKEN not in json.dumps([after[table][i] for i in ids], default=str)
        assert TOKEN not in json.dumps(after[table], default=str)  # nor in any other row of the table
        unchanged = set(before[table]) - ids
        assert {i: after[table][i] for i in unchanged} == {i: before[table][i] for i in unchanged}
    assert after["ab_alerts"][old_alert] == {**before["ab_alerts"][old_alert], "delivered_to": [delivery_mark(SLACK)],
                                             "last_error": f"{redact_url(SLACK)}: {ERROR}"}
    assert after["ab_alerts"][new_alert] == before["ab_alerts"][new_alert]
    assert after["ab_audit_log"][added] == {**before["ab_audit_log"][added],
                                            "details": {"url": redact_url(SLACK), "name": "alerts"}}
    assert after["ab_audit_log"][removed] == {**before["ab_audit_log"][removed], "details": {"url": redact_url(SLACK)}}
    assert after["ab_webhooks"] == before["ab_webhooks"] and after["ab_webhooks"][hook]["url"] == SLACK

    # the rewrite again (one row per batch this time): nothing left to change
    with old_store.begin() as connection:
        assert _migration().redact_stored_urls(connection, batch=1) == {"ab_alerts": 0, "ab_audit_log": 0}
    assert {table: _rows(old_store, table) for table in after} == after


def test_the_rewrite_walks_every_batch(old_store: Engine) -> None:
    exp = make_experiment(old_store, "watched")
    urls = [f"https://hooks.slack.com/services/T0001/B000{n}/{TOKEN}{n}" for n in range(5)]
    alerts = _add(old_store, *[Alert(experiment_id=int(exp.id), rule=f"rule{n}", delivered_to=[url],  # type: ignore[arg-type]
                                     last_error=f"{url}: {ERROR}") for n, url in enumerate(urls)])
    audits = _add(old_store, *[AuditLog(experiment_id=None, action="add_webhook", details={"url": url, "name": ""})
                               for url in urls])
    with old_store.begin() as connection:  # 5 rows in batches of 2: three pages per table
        assert _migration().redact_stored_urls(connection, batch=2) == {"ab_alerts": 5, "ab_audit_log": 5}
    stored_alerts, stored_audits = _rows(old_store, "ab_alerts"), _rows(old_store, "ab_audit_log")
    assert [stored_alerts[i]["delivered_to"] for i in alerts] == [[delivery_mark(url)] for url in urls]
    assert [stored_alerts[i]["last_error"] for i in alerts] == [f"{redact_url(url)}: {ERROR}" for url in urls]
    assert [stored_audits[i]["details"]["url"] for i in audits] == [redact_url(url) for url in urls]
    assert TOKEN not in json.dumps([stored_alerts, stored_audits], default=str)


def test_the_watcher_still_knows_which_webhooks_an_upgraded_alert_reached(old_store: Engine) -> None:
    """Two Slack-like webhooks on a local receiver: 0012 stored the first as reached (whole URL) and the second's
    failure. After the upgrade a delivery pass posts only to the second."""
    receiver = Receiver()
    base = f"http://127.0.0.1:{receiver.port}/services/T0001"
    first, second = f"{base}/B0001/{TOKEN}", f"{base}/B0002/{TOKEN}-two"
    try:
        exp = make_experiment(old_store, "watched")
        (alert_id,) = _add(old_store, Alert(experiment_id=int(exp.id), rule="srm", payload={"text": "srm"},  # type: ignore[arg-type]
                                            delivered_to=[first], attempts=3, last_error=f"{second}: {ERROR}"))
        _upgrade(old_store)
        assert _rows(old_store, "ab_alerts")[alert_id]["delivered_to"] == [delivery_mark(first)]
        report = deliver_pending(old_store, settings=WatchSettings(webhook_urls=(first, second), retries=1,
                                                                   allow=(LOCAL,)))
        assert report.delivered == 1
        assert [r["path"] for r in receiver.requests] == [f"/services/T0001/B0002/{TOKEN}-two"]
        alert = _rows(old_store, "ab_alerts")[alert_id]
        assert (alert["delivery"], alert["delivered_to"]) == ("delivered", [delivery_mark(first), delivery_mark(second)])
        assert TOKEN not in json.dumps(alert, default=str)
    finally:
        receiver.close()
