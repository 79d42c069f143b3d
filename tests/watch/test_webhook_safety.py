"""Webhook safety: URLs are redacted wherever they are written."""

from __future__ import annotations

import json
import logging

import pytest
from sqlmodel import Session, col, select

from abcore.config import redact_url
from abcore.store.tables import Alert, AuditLog
from abcore.watch.webhooks import WatchSettings, add_webhook, deliver_pending, remove_webhook
from tests.factories import make_experiment

from .conftest import free_port

SLACK = "https://hooks.slack.com/services/T0001/B0002/xoxb-secret-token"


def test_redact_url_keeps_scheme_and_host_only() -> None:
    assert redact_url(SLACK) == "https://hooks.slack.com/…"
    assert redact_url("http://bot:s3cret@10.0.0.1:8080/x?token=abc") == "http://10.0.0.1:8080/…"
    assert redact_url("https://hooks.example.com") == "https://hooks.example.com"
    assert redact_url("https://[::1]:8443/") == "https://[::1]:8443"
    assert redact_url("postgresql+psycopg://app:pw@db:5432/abcore") == "postgresql+psycopg://app:***@db:5432/abcore"


def test_audit_rows_show_webhook_urls_redacted(session: Session) -> None:
    hook = add_webhook(session=session, url=SLACK, name="alerts", actor="ops")
    remove_webhook(session=session, webhook_id=int(hook.id), actor="ops")  # type: ignore[arg-type]
    rows = session.exec(select(AuditLog).where(col(AuditLog.experiment_id).is_(None)).order_by(AuditLog.id)).all()
    assert [(r.action, r.details["url"]) for r in rows] == [("add_webhook", "https://hooks.slack.com/…"),
                                                            ("remove_webhook", "https://hooks.slack.com/…")]
    assert "xoxb" not in json.dumps([r.details for r in rows])


def _pending_alert(session: Session) -> int:
    exp = make_experiment(session, "watched")
    alert = Alert(experiment_id=int(exp.id), rule="srm", action="alert", payload={"text": "srm"})  # type: ignore[arg-type]
    session.add(alert)
    session.commit()
    return int(alert.id)  # type: ignore[arg-type]


def test_delivery_errors_and_the_log_show_webhook_urls_redacted(session: Session, caplog: pytest.LogCaptureFixture) -> None:
    alert_id = _pending_alert(session)
    port = free_port()  # nobody listens: connection refused
    url = f"http://127.0.0.1:{port}/services/T0001/B0002/xoxb-secret-token"
    caplog.set_level(logging.WARNING, logger="abcore.watch.runner")
    engine = session.get_bind()
    report = deliver_pending(engine, settings=WatchSettings(webhook_urls=(url,), backoff=0),  # type: ignore[arg-type]
                             sleep=lambda _s: None)
    assert report.undelivered == 1
    session.expire_all()
    alert = session.get(Alert, alert_id)
    assert alert is not None and alert.attempts == 3
    assert alert.last_error.startswith(f"http://127.0.0.1:{port}/…: ") and "Connection refused" in alert.last_error
    assert "xoxb" not in alert.last_error and "xoxb" not in caplog.text
    assert f"webhook http://127.0.0.1:{port}/… failed" in caplog.text
