"""Webhook safety: internal addresses are refused (when added and when sent, after name lookup), a redirect to
another host is not followed, URLs are redacted wherever they are written, and the timeout bounds a whole POST.

Every connection goes to 127.0.0.1; other addresses appear only in checks that resolve (through a fake
resolver) and never connect.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlmodel import Session, col, select

from abcore.config import (
    SettingError,
    delivery_mark,
    delivery_marks,
    redact_url,
    redact_urls_in_text,
    setting,
)
from abcore.experiments.errors import ExperimentError
from abcore.store.tables import Alert, AuditLog, Webhook
from abcore.watch import urls
from abcore.watch.urls import UrlPolicy, check_webhook_url
from abcore.watch.webhooks import WatchSettings, add_webhook, deliver_pending, post_json, remove_webhook
from tests.factories import make_experiment

from .conftest import LOCAL, Receiver, free_port

PUBLIC = "93.184.216.34"  # only ever resolved to, never contacted
SLACK = "https://hooks.slack.com/services/T0001/B0002/xoxb-secret-token"
NAMES = {
    "hooks.slack.com": [PUBLIC],
    "public.example": [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"],
    "metadata.example": ["169.254.169.254"],
    "mixed.example": [PUBLIC, "10.0.0.7"],
    "rebind.example": ["127.0.0.1"],
    "other.example": ["127.0.0.1"],
}


@pytest.fixture(autouse=True)
def fake_resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Name lookups answer from ``NAMES``; any other name does not resolve (no DNS server is asked)."""
    def resolve(host: str, port: int, timeout: float) -> list[str]:
        if host not in NAMES:
            raise socket.gaierror(f"{host}: name not known")
        return list(NAMES[host])

    monkeypatch.setattr(urls, "resolve_host", resolve)
    return NAMES


@pytest.mark.parametrize(("url", "says"), [
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://127.0.0.1:5432/", "loopback"),
    ("http://[::1]:22/", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://172.16.0.1/hook", "private"),
    ("http://192.168.1.1/hook", "private"),
    ("http://[fc00::1]/hook", "private"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://100.64.0.1/hook", "not public"),
    ("http://0x7f000001/hook", "non-canonical"),
    ("http://2130706433/hook", "non-canonical"),
    ("http://0177.0.0.1/hook", "non-canonical"),
    ("http://127.1/hook", "non-canonical"),
    ("http://127.0.0.1./hook", "non-canonical"),
    ("http://metadata.example/latest", "metadata.example (169.254.169.254) is a link-local address"),
    ("http://mixed.example/hook", "mixed.example (10.0.0.7) is a private address"),
    ("http://public.example/a\r\nX-Injected: 1", "line breaks"),
    ("http://public.example/a b", "spaces"),
    ("http://user:pw@public.example/hook", "user name or password"),
    ("http://public.example:0/hook", "port 0"),
    ("http://public.example:65536/hook", "ports are 1 to 65535"),
    ("http://public.example:99999/hook", "ports are 1 to 65535"),
    ("ftp://public.example/hook", "http:// or https://"),
    ("http://pub%6cic.example/hook", "not a valid host name"),
])
def test_internal_and_malformed_urls_are_refused(url: str, says: str) -> None:
    with pytest.raises(ExperimentError, match=says.replace("(", r"\(").replace(")", r"\)")):
        check_webhook_url(url, UrlPolicy())


def test_public_receivers_pass_and_an_unresolvable_name_waits_for_the_send_time_check() -> None:
    for url in (SLACK, "https://public.example:8443/hook?x=1", f"http://{PUBLIC}/hook", "http://unknown.example/"):
        assert check_webhook_url(url, UrlPolicy()) == url


def test_the_allow_list_lets_named_internal_receivers_through() -> None:
    policy = UrlPolicy(("127.0.0.1/32", "10.0.0.0/8", "metadata.example"))
    for url in ("http://127.0.0.1:8080/hook", "http://10.9.8.7/hook", "http://mixed.example/hook",
                "http://metadata.example/"):
        assert check_webhook_url(url, policy) == url
    for url, says in (("http://127.0.0.2/hook", "loopback"), ("http://0x7f000001/hook", "non-canonical"),
                      ("http://[::1]/hook", "loopback")):
        with pytest.raises(ExperimentError, match=says):
            check_webhook_url(url, policy)


def test_the_allow_list_setting() -> None:
    assert setting("webhook_allow", {}) == ()
    env = {"ABCORE_WEBHOOK_ALLOW": " 10.0.0.0/8, Hooks.Internal ,127.0.0.1, ::1 ,"}
    assert setting("webhook_allow", env) == ("10.0.0.0/8", "hooks.internal", "127.0.0.1/32", "::1/128")
    assert WatchSettings.from_env(env).allow == setting("webhook_allow", env)
    with pytest.raises(SettingError, match="ABCORE_WEBHOOK_ALLOW holds entries .*: 127.1, a b"):
        setting("webhook_allow", {"ABCORE_WEBHOOK_ALLOW": "127.1, a b"})


def test_add_webhook_refuses_an_internal_address_and_stores_nothing(session: Session) -> None:
    for url in ("http://169.254.169.254/latest/meta-data/", "http://2130706433/", "http://rebind.example:5432/"):
        with pytest.raises(ExperimentError, match="address"):
            add_webhook(session=session, url=url, actor="eve", allow=())
    assert session.exec(select(Webhook)).all() == []
    assert session.exec(select(AuditLog).where(col(AuditLog.action) == "add_webhook")).all() == []
    hook = add_webhook(session=session, url="http://127.0.0.1:9000/hook", actor="ops", allow=(LOCAL,))
    assert hook.url == "http://127.0.0.1:9000/hook"


def test_add_webhook_reads_the_allow_list_setting(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ABCORE_WEBHOOK_ALLOW", raising=False)
    with pytest.raises(ExperimentError, match="ABCORE_WEBHOOK_ALLOW"):
        add_webhook(session=session, url="http://10.0.0.5/hook")
    monkeypatch.setenv("ABCORE_WEBHOOK_ALLOW", "10.0.0.0/24")
    assert add_webhook(session=session, url="http://10.0.0.5/hook").id is not None


def test_a_loopback_receiver_is_refused_at_send_time_without_the_allow_list(receiver: Receiver) -> None:
    ok, error = post_json(receiver.url, {"text": "hi"}, timeout=2)
    assert not ok and error.startswith("refused:") and "loopback" in error
    assert receiver.requests == []
    assert post_json(receiver.url, {"text": "hi"}, timeout=2, allow=(LOCAL,)) == (True, "")
    assert [r["body"] for r in receiver.requests] == [{"text": "hi"}]


def test_a_name_is_checked_after_lookup_at_send_time_and_the_checked_address_is_used(receiver: Receiver) -> None:
    url = f"http://rebind.example:{receiver.port}/hook"  # accepted when it was public, now it resolves to loopback
    ok, error = post_json(url, {"n": 1}, timeout=2)
    assert not ok and "rebind.example (127.0.0.1) is a loopback address" in error
    assert receiver.requests == []
    assert post_json(url, {"n": 2}, timeout=2, allow=(LOCAL,)) == (True, "")
    assert [r["body"] for r in receiver.requests] == [{"n": 2}]


class Redirector:
    """A server on 127.0.0.1: POST /old answers ``status`` with ``Location: location``; POST /hook records the body."""

    def __init__(self, status: int, location: str) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/old":
                    self.send_response(status)
                    self.send_header("Location", location.format(port=outer.port))
                else:
                    outer.received.append({"method": self.command, "body": json.loads(body)})
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("location", ["http://other.example:{port}/hook", "http://localhost:{port}/hook",
                                      "https://127.0.0.1:{port}/hook"])
def test_a_redirect_to_another_host_is_not_followed(location: str) -> None:
    server = Redirector(302, location)
    try:
        ok, error = post_json(f"http://127.0.0.1:{server.port}/old", {"n": 1}, timeout=2,
                              allow=(LOCAL, "other.example", "localhost"))
        assert not ok and "redirected (HTTP 302) to another host" in error and "/hook" not in error
        assert server.received == []
    finally:
        server.close()


def test_a_redirect_on_the_same_host_posts_the_alert_again() -> None:
    server = Redirector(307, "http://127.0.0.1:{port}/hook")
    try:
        assert post_json(f"http://127.0.0.1:{server.port}/old", {"n": 1}, timeout=2, allow=(LOCAL,)) == (True, "")
        assert server.received == [{"method": "POST", "body": {"n": 1}}]
    finally:
        server.close()


def test_redact_url_keeps_scheme_and_host_only() -> None:
    assert redact_url(SLACK) == "https://hooks.slack.com/…"
    assert redact_url("http://bot:s3cret@10.0.0.1:8080/x?token=abc") == "http://10.0.0.1:8080/…"
    assert redact_url("https://hooks.example.com") == "https://hooks.example.com"
    assert redact_url("https://[::1]:8443/") == "https://[::1]:8443"
    assert redact_url("postgresql+psycopg://app:pw@db:5432/abcore") == "postgresql+psycopg://app:***@db:5432/abcore"


@pytest.mark.parametrize(("text", "shown"), [
    # "<url>: <what went wrong>", the last error of an alert: the ':' after the URL is the text's, not the URL's
    (f"{SLACK}: HTTP 500", "https://hooks.slack.com/…: HTTP 500"),
    ("http://127.0.0.1:8080: HTTP 500", "http://127.0.0.1:8080: HTTP 500"),  # no path: nothing to hide
    ("refused: got 'http://bot:pw@10.0.0.1/x?token=abc'.", "refused: got 'http://10.0.0.1/…'."),
    ("see (https://a.example/b/c) and HTTPS://B.example/T0k, then", "see (https://a.example/…) and https://B.example/…, then"),
    ("https://[::1]:8443/x] and https://[::1]", "https://[::1]:8443/…] and https://[::1]"),
    ("no URL here: postgresql://app:pw@db/abcore", "no URL here: postgresql://app:pw@db/abcore"),  # only http(s)
])
def test_redact_urls_in_text_redacts_each_url_as_redact_url_does(text: str, shown: str) -> None:
    assert redact_urls_in_text(text) == shown
    assert redact_urls_in_text(shown) == shown  # already redacted: unchanged


def test_delivery_marks_turn_whole_urls_into_marks_and_keep_marks() -> None:
    mark = delivery_mark(SLACK)
    assert mark.startswith("https://hooks.slack.com/… #") and len(mark) == len("https://hooks.slack.com/… #") + 12
    assert delivery_marks([SLACK, mark]) == [mark, mark]
    assert delivery_marks(delivery_marks([SLACK])) == [mark] and delivery_marks(None) == []


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
    report = deliver_pending(engine, settings=WatchSettings(webhook_urls=(url,), backoff=0, allow=(LOCAL,)),  # type: ignore[arg-type]
                             sleep=lambda _s: None)
    assert report.undelivered == 1
    session.expire_all()
    alert = session.get(Alert, alert_id)
    assert alert is not None and alert.attempts == 3
    assert alert.last_error.startswith(f"http://127.0.0.1:{port}/…: ") and "Connection refused" in alert.last_error
    assert "xoxb" not in alert.last_error and "xoxb" not in caplog.text
    assert f"webhook http://127.0.0.1:{port}/… failed" in caplog.text


def test_a_refused_target_is_not_retried_within_the_pass(session: Session, receiver: Receiver) -> None:
    alert_id = _pending_alert(session)
    engine = session.get_bind()
    deliver_pending(engine, settings=WatchSettings(webhook_urls=(receiver.url + "/xoxb-secret",)),  # type: ignore[arg-type]
                    sleep=lambda _s: pytest.fail("a refused URL is not retried"))
    session.expire_all()
    alert = session.get(Alert, alert_id)
    assert alert is not None and alert.delivery == "pending" and alert.attempts == 1
    assert "refused:" in alert.last_error and "loopback" in alert.last_error and "xoxb" not in alert.last_error
    assert receiver.requests == []


@pytest.fixture
def trickler() -> Iterator[str]:
    """A receiver on 127.0.0.1 that answers one byte every 0.2 s for 8 s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Slow: " + b"x" * 30 + b"\r\n\r\n"
                for byte in answer:
                    if stop.wait(0.2):
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    stop.set()
    listener.close()
    thread.join(timeout=5)


def test_the_timeout_bounds_the_whole_post_not_each_read(trickler: str) -> None:
    began = time.monotonic()
    ok, error = post_json(trickler, {"text": "slow"}, timeout=2.0, allow=(LOCAL,))
    took = time.monotonic() - began
    assert not ok and error == "timed out after 2 s"
    assert took < 2.6, f"the POST took {took:.1f} s with a 2 s timeout"
