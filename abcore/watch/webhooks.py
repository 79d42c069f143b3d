"""Where the watcher's alerts go: webhook targets, the JSON payload, delivery with retries and leases.

Targets are ``$ABCORE_WEBHOOK_URLS`` (see :class:`WatchSettings`) followed by the active webhooks added
in the dashboard (``ab_webhooks``, managed by :func:`add_webhook` / :func:`remove_webhook`).
:func:`deliver_pending` posts every pending alert to every target it has not reached yet; a sender
leases an alert (``claimed_until``) before posting it, so two watchers never post it twice.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from abcore.config import delivery_mark, delivery_marks, redact_url, setting
from abcore.experiments.errors import ExperimentError
from abcore.store.db import commit_unique
from abcore.store.tables import Alert, AuditLog, Experiment, Webhook, utcnow
from abcore.watch.report import PassReport
from abcore.watch.snapshots import aware_utc
from abcore.watch.urls import UrlPolicy, check_webhook_url, checked_addresses, origin, parse_webhook_url

if TYPE_CHECKING:
    from abcore.watch.runner import Decision

__all__ = [
    "WatchSettings",
    "add_webhook",
    "deliver_pending",
    "delivery_mark",
    "list_webhooks",
    "post_json",
    "remove_webhook",
    "results_link",
    "webhook_payload",
    "webhook_targets",
]

log = logging.getLogger("abcore.watch.runner")  # the whole watcher logs under one name


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class WatchSettings:
    """How the watcher delivers alerts. :meth:`from_env` reads the ``ABCORE_*`` variables.

    ``retries`` attempts per URL within one pass, waiting ``backoff * 2**k`` seconds between them;
    an alert still undelivered is retried on a later pass, not before ``retry_after * 2**(passes-1)``
    seconds (capped at one hour), and marked ``failed`` after ``max_attempts`` attempts in all.
    """

    webhook_urls: tuple[str, ...] = ()
    dashboard_url: str = "http://localhost:8501"
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 5.0
    retry_after: float = 30.0
    max_attempts: int = 30
    lease_seconds: float = 120.0
    allow: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> WatchSettings:
        """Settings from ``ABCORE_WEBHOOK_URLS`` (comma-separated), ``ABCORE_DASHBOARD_URL``,
        ``ABCORE_WEBHOOK_RETRIES``, ``ABCORE_WEBHOOK_BACKOFF``, ``ABCORE_WEBHOOK_TIMEOUT`` (one POST in all),
        ``ABCORE_WEBHOOK_RETRY_AFTER`` and ``ABCORE_WEBHOOK_ALLOW`` (``allow``: internal receivers the address
        checks let through); bad values raise ValueError naming the variable."""
        values: dict[str, Any] = {key: setting(name, environ) for key, name in (
            ("retries", "webhook_retries"), ("backoff", "webhook_backoff"), ("timeout", "webhook_timeout"),
            ("retry_after", "webhook_retry_after"), ("webhook_urls", "webhook_urls"), ("dashboard_url", "dashboard_url"),
            ("allow", "webhook_allow"),
        )}
        values.update(overrides)
        return cls(**values)


# --------------------------------------------------------------------------- payload


def results_link(settings: WatchSettings, experiment_id: int) -> str:
    """The results page of an experiment on the dashboard."""
    return f"{settings.dashboard_url.rstrip('/')}/results?experiment={experiment_id}"


def webhook_payload(experiment: Experiment, decision: Decision, *, action_taken: bool, status: str,
                    settings: WatchSettings, note: str = "") -> dict[str, Any]:
    """The JSON posted for an alert: Slack-compatible (``text``) plus structured fields for generic receivers."""
    link = results_link(settings, int(experiment.id))  # type: ignore[arg-type]
    verb = {"pause": "paused", "stop": "stopped"}.get(decision.action)
    did = f"abcore {verb} the experiment." if verb and action_taken else (
        f"Action {decision.action} not applied{': ' + note if note else ''}." if verb else "Alert only, no action taken.")
    text = f":rotating_light: [{experiment.name}] {decision.reason} {did} <{link}|Results>"
    return {
        "text": text,
        "experiment": {"id": experiment.id, "name": experiment.name, "status": status},
        "rule": decision.kind,
        "rule_key": decision.rule,
        "action": decision.action,
        "action_taken": action_taken,
        "metric": decision.metric,
        "variant": decision.variant,
        "reason": decision.reason,
        "numbers": decision.numbers,
        "link": link,
        "sent_by": "abcore watch",
    }


# --------------------------------------------------------------------------- delivery


def webhook_targets(engine: Engine, settings: WatchSettings) -> tuple[str, ...]:
    """Every URL alerts go to: ``settings.webhook_urls`` then the active dashboard webhooks (no duplicates)."""
    with Session(engine) as session:
        stored = session.exec(select(Webhook.url).where(col(Webhook.is_active).is_(True)).order_by(Webhook.id)).all()
    return tuple(dict.fromkeys([*settings.webhook_urls, *stored]))


class _Delivery:
    """One POST attempt: its deadline, the address check of every connection it opens, and a watchdog that
    cuts the connection when the deadline passes, so a receiver answering one byte at a time cannot hold the
    watcher longer than the timeout."""

    def __init__(self, policy: UrlPolicy, timeout: float) -> None:
        self.policy = policy
        self.deadline = time.monotonic() + timeout
        self.expired = False
        self.connections: list[http.client.HTTPConnection] = []
        self._timer = threading.Timer(timeout, self.abort)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        """Seconds left (TimeoutError when none are)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.expired = True
            raise TimeoutError("the webhook timeout passed")
        return left

    def connection(self, base: type[http.client.HTTPConnection]) -> Callable[..., http.client.HTTPConnection]:
        """A factory of ``base`` connections that connect only to checked addresses (for urllib's ``do_open``)."""
        def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            conn = base(host, **kwargs)
            conn._create_connection = self.connect  # type: ignore[attr-defined]  # http.client's own hook
            self.connections.append(conn)
            return conn
        return make

    def connect(self, address: tuple[str, int], timeout: Any = None, source_address: Any = None) -> socket.socket:
        """Connect to one of the addresses :func:`checked_addresses` allows for the host, within the deadline."""
        host, port = address
        error: OSError = OSError(f"cannot connect to {host}")
        for ip in checked_addresses(host, port, self.policy, timeout=self.remaining()):
            try:
                sock = socket.create_connection((ip, port), timeout=self.remaining(), source_address=source_address)
            except OSError as exc:
                error = exc
                continue
            if self.expired:
                sock.close()
                raise TimeoutError("the webhook timeout passed")
            return sock
        raise error

    def abort(self) -> None:
        """The deadline passed: shut every connection down (a blocked read returns at once)."""
        self.expired = True
        for conn in self.connections:
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """The attempt is over: stop the watchdog."""
        self._timer.cancel()


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, delivery: _Delivery) -> None:
        super().__init__()
        self.delivery = delivery

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(self.delivery.connection(http.client.HTTPConnection), req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, delivery: _Delivery) -> None:
        super().__init__()
        self.delivery = delivery

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(self.delivery.connection(http.client.HTTPSConnection), req,
                            context=self._context)  # type: ignore[attr-defined]


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same scheme, host and port, posting the same body again; a redirect
    to another host is refused."""

    max_redirections = 3

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request:
        if origin(newurl) != origin(req.full_url):
            fp.close()
            raise ExperimentError(f"the receiver redirected (HTTP {code}) to another host, {redact_url(newurl)}; "
                                  "the watcher does not follow it.")
        parse_webhook_url(newurl)
        return urllib.request.Request(newurl, data=req.data, headers=dict(req.headers), method=req.get_method(),
                                      origin_req_host=req.origin_req_host, unverifiable=True)


def post_json(url: str, payload: Mapping[str, Any], *, timeout: float, allow: tuple[str, ...] = ()) -> tuple[bool, str]:
    """POST ``payload`` as JSON; (True, "") on a 2xx answer, else (False, what went wrong, without the URL).

    The URL must pass :mod:`abcore.watch.urls` (``allow``: the allow-list of internal receivers), at send time:
    the host is resolved and the connection goes only to addresses that pass; a redirect to another host is
    not followed; ``timeout`` bounds the whole POST (name lookup, connect, send, answer)."""
    ok, error, _retry = _post_once(url, payload, timeout=timeout, policy=UrlPolicy(allow))
    return ok, error


def _post_once(url: str, payload: Mapping[str, Any], *, timeout: float,
               policy: UrlPolicy) -> tuple[bool, str, bool]:
    """One POST (see :func:`post_json`): (delivered, what went wrong, whether another attempt may succeed)."""
    try:
        parse_webhook_url(url)
    except ExperimentError as exc:
        return False, f"refused: {exc}", False
    body = json.dumps(payload, default=str).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "abcore-watch"})
    delivery = _Delivery(policy, timeout)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _GuardedHTTPHandler(delivery),
                                         _GuardedHTTPSHandler(delivery), _SameOriginRedirects())
    try:
        with opener.open(request, timeout=timeout) as response:
            status = response.status
    except ExperimentError as exc:
        return False, f"refused: {exc}", False
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}", True
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if delivery.expired:
            return False, f"timed out after {timeout:g} s", True
        reason = getattr(exc, "reason", exc)
        return False, f"{type(exc).__name__}: {reason}", True
    finally:
        delivery.close()
    return (200 <= status < 300), ("" if 200 <= status < 300 else f"HTTP {status}"), True


def deliver_pending(engine: Engine, *, settings: WatchSettings, report: PassReport | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> PassReport:
    """Post every pending alert that is due to every target it has not reached yet.

    Each alert is leased first (compare-and-set on ``claimed_until``), so concurrent watchers never
    post it twice; each URL gets ``settings.retries`` attempts with exponential backoff. The counts
    ``delivered`` / ``undelivered`` are added to ``report`` (a new one when none is given), which is returned.
    """
    report = report if report is not None else PassReport()
    targets = webhook_targets(engine, settings)
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        pending = list(session.exec(
            select(Alert.id, Alert.next_attempt_at).where(Alert.delivery == "pending").order_by(Alert.id)).all())
    for alert_id, next_attempt_at in pending:
        if next_attempt_at is not None and aware_utc(next_attempt_at) > now:
            report.undelivered += 1
            continue
        if not targets:
            report.undelivered += 1
            continue
        _deliver_alert(engine, alert_id, targets, settings, report, sleep)
    return report


def _deliver_alert(engine: Engine, alert_id: int, targets: tuple[str, ...], settings: WatchSettings,
                   report: PassReport, sleep: Callable[[float], None]) -> None:
    """Lease one alert, post it to the targets it has not reached, and record the outcome (nothing when
    another watcher holds the lease). Undelivered: retried after ``retry_after * 2**(passes-1)`` seconds
    (at most one hour), ``failed`` after ``settings.max_attempts`` attempts."""
    lease = utcnow() + timedelta(seconds=settings.lease_seconds)
    with Session(engine, expire_on_commit=False) as session:
        claimed = session.execute(
            update(Alert)
            .where(col(Alert.id) == alert_id, col(Alert.delivery) == "pending",
                   col(Alert.claimed_until).is_(None) | (col(Alert.claimed_until) < utcnow()))
            .values(claimed_until=lease)
        )
        session.commit()
        if claimed.rowcount != 1:
            return  # another watcher is sending it
        fresh = session.get(Alert, alert_id)
        assert fresh is not None
        session.refresh(fresh)
        done = delivery_marks(fresh.delivered_to)
        attempts = int(fresh.attempts)
        error = ""
        for url in targets:
            if delivery_mark(url) in done:
                continue
            ok, tries, error_here = _post_with_retries(url, fresh.payload, settings, sleep)
            attempts += tries
            if ok:
                done.append(delivery_mark(url))
            error = error_here or error
        complete = all(delivery_mark(url) in done for url in targets)
        fresh.delivered_to = done
        fresh.attempts = attempts
        fresh.claimed_until = None
        if complete:
            fresh.delivery, fresh.delivered_at, fresh.last_error, fresh.next_attempt_at = "delivered", utcnow(), "", None
            report.delivered += 1
        else:
            fresh.last_error = error
            passes = max(1, attempts // max(settings.retries, 1))
            fresh.next_attempt_at = utcnow() + timedelta(seconds=min(settings.retry_after * 2 ** (passes - 1), 3600))
            if attempts >= settings.max_attempts:
                fresh.delivery = "failed"
            report.undelivered += 1
        session.add(fresh)
        session.commit()


def _post_with_retries(url: str, payload: Mapping[str, Any], settings: WatchSettings,
                       sleep: Callable[[float], None]) -> tuple[bool, int, str]:
    """Up to ``settings.retries`` POSTs of ``payload`` to ``url``, waiting ``backoff * 2**k`` between them.
    A URL refused by the address checks is not tried again. Returns (delivered, attempts made, the last failure
    as ``"<redacted url>: <what went wrong>"``, "" when none failed)."""
    error = ""
    shown = redact_url(url)
    policy = UrlPolicy(settings.allow)
    for k in range(settings.retries):
        ok, error_here, retry = _post_once(url, payload, timeout=settings.timeout, policy=policy)
        if ok:
            return True, k + 1, error
        error = f"{shown}: {error_here}"
        log.warning("watch: webhook %s failed (%s), attempt %d", shown, error_here, k + 1)
        if not retry:
            return False, k + 1, error
        if k + 1 < settings.retries:
            sleep(settings.backoff * 2**k)
    return False, settings.retries, error


# --------------------------------------------------------------------------- dashboard webhooks


def list_webhooks(*, session: Session) -> list[Webhook]:
    """The webhooks configured in the dashboard, oldest first."""
    return list(session.exec(select(Webhook).order_by(Webhook.id)).all())


def add_webhook(*, session: Session, url: str, name: str = "", actor: str = "",
                allow: tuple[str, ...] | None = None) -> Webhook:
    """Add a webhook URL; audited (the audit row shows the URL redacted).

    Raises ExperimentError, storing nothing, for a duplicate URL or one :func:`abcore.watch.urls.check_webhook_url`
    refuses: malformed, or pointing at an internal address not on ``allow`` (default ``$ABCORE_WEBHOOK_ALLOW``).
    """
    url = (url or "").strip()
    check_webhook_url(url, UrlPolicy(setting("webhook_allow") if allow is None else allow))
    shown = redact_url(url)
    if session.exec(select(Webhook.id).where(Webhook.url == url)).first() is not None:
        raise ExperimentError(f"The webhook {shown} is already configured.")
    hook = Webhook(url=url, name=(name or "").strip()[:200], created_by=actor)
    session.add(hook)
    session.add(AuditLog(experiment_id=None, action="add_webhook", actor=actor, details={"url": shown, "name": hook.name}))
    return commit_unique(session, hook, ExperimentError(f"The webhook {shown} is already configured."))


def remove_webhook(*, session: Session, webhook_id: int, actor: str = "") -> None:
    """Delete a dashboard webhook (unknown id: ExperimentError). Audited, the URL redacted."""
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise ExperimentError(f"No webhook with id {webhook_id}.")
    session.delete(hook)
    session.add(AuditLog(experiment_id=None, action="remove_webhook", actor=actor, details={"url": redact_url(hook.url)}))
    session.commit()
