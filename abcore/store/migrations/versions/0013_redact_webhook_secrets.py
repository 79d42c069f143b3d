"""Webhook URLs stored in clear by earlier versions: rewritten in place the way abcore writes them now.

A webhook URL carries its secret (Slack's token is in the path). Versions before redaction stored it whole in
three places, and nothing rewrites a row nobody touches again, so this migration does:

* ``ab_alerts.delivered_to``: an entry that is a whole URL becomes its mark, :func:`abcore.config.delivery_mark`
  (:func:`abcore.config.delivery_marks`), so the watcher still knows the alert reached that webhook;
* ``ab_alerts.last_error`` (``"<url>: <what went wrong>"``): every http(s) URL in the text is redacted
  (:func:`abcore.config.redact_urls_in_text`);
* ``ab_audit_log`` rows of ``add_webhook`` / ``remove_webhook`` (the only audit actions holding a webhook URL):
  ``details["url"]`` becomes :func:`abcore.config.redact_url` of it.

Values already written the new way are left as they are, so running :func:`redact_stored_urls` again changes
nothing. Rows are read and written in batches of :data:`BATCH` (keyset on ``id``). Nothing changes the schema;
the downgrade leaves the rows redacted (a secret cannot be restored from its redacted form).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 08:00:00
"""

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from abcore.config import delivery_marks, redact_url, redact_urls_in_text

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Rows read (and at most written) per query.
BATCH = 500
#: The audit actions whose ``details["url"]`` is a webhook URL.
WEBHOOK_AUDIT_ACTIONS = ("add_webhook", "remove_webhook")

_alerts = sa.table("ab_alerts", sa.column("id", sa.Integer), sa.column("delivered_to", sa.JSON),
                   sa.column("last_error", sa.String))
_audit = sa.table("ab_audit_log", sa.column("id", sa.Integer), sa.column("action", sa.String),
                  sa.column("details", sa.JSON))


def _batches(connection: sa.Connection, query: sa.Select[Any], key: sa.ColumnElement[int],
             batch: int) -> Iterator[Sequence[sa.Row[Any]]]:
    """The rows of ``query`` (its first column is ``key``) in batches of ``batch``, in ``key`` order."""
    last: int | None = None
    while True:
        page = query.order_by(key).limit(batch)
        if last is not None:
            page = page.where(key > last)
        rows = connection.execute(page).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _alert_changes(delivered_to: Any, last_error: Any) -> dict[str, Any] | None:
    """The new ``delivered_to`` and ``last_error`` of an alert, or None when both are already redacted."""
    marks = delivery_marks(delivered_to) if isinstance(delivered_to, list) else delivered_to
    error = redact_urls_in_text(last_error) if isinstance(last_error, str) else last_error
    if marks == delivered_to and error == last_error:
        return None
    return {"b_delivered_to": marks, "b_last_error": error}


def _audit_details(details: Any) -> dict[str, Any] | None:
    """The new ``details`` of a webhook audit row, or None when its URL is already redacted."""
    if not isinstance(details, dict) or not isinstance(details.get("url"), str):
        return None
    shown = redact_url(details["url"])
    return None if shown == details["url"] else {**details, "url": shown}


def redact_stored_urls(connection: sa.Connection, *, batch: int = BATCH) -> dict[str, int]:
    """Rewrite the stored webhook URLs (see the module) on ``connection``; returns the rows changed per table."""
    changed = {"ab_alerts": 0, "ab_audit_log": 0}
    set_alert = (sa.update(_alerts).where(_alerts.c.id == sa.bindparam("b_id"))
                 .values(delivered_to=sa.bindparam("b_delivered_to", type_=sa.JSON),
                         last_error=sa.bindparam("b_last_error", type_=sa.String)))
    query = sa.select(_alerts.c.id, _alerts.c.delivered_to, _alerts.c.last_error)
    for rows in _batches(connection, query, _alerts.c.id, batch):
        updates = [{"b_id": row_id, **change} for row_id, delivered_to, last_error in rows
                   if (change := _alert_changes(delivered_to, last_error)) is not None]
        if updates:
            connection.execute(set_alert, updates)
            changed["ab_alerts"] += len(updates)

    set_details = (sa.update(_audit).where(_audit.c.id == sa.bindparam("b_id"))
                   .values(details=sa.bindparam("b_details", type_=sa.JSON)))
    query = sa.select(_audit.c.id, _audit.c.details).where(_audit.c.action.in_(WEBHOOK_AUDIT_ACTIONS))
    for rows in _batches(connection, query, _audit.c.id, batch):
        updates = [{"b_id": row_id, "b_details": new} for row_id, details in rows
                   if (new := _audit_details(details)) is not None]
        if updates:
            connection.execute(set_details, updates)
            changed["ab_audit_log"] += len(updates)
    return changed


def upgrade() -> None:
    redact_stored_urls(op.get_bind())


def downgrade() -> None:
    # Nothing to undo in the schema, and the rows stay redacted: a secret cannot be restored from its redacted
    # form (the URLs to post to are still in $ABCORE_WEBHOOK_URLS and ab_webhooks).
    pass
