"""Sign-in hardening: strong hashes, a cost floor, throttled failures, fail-closed config.

Sources: OWASP Password Storage Cheat Sheet (scrypt minimum N=2^17, r=8, p=1; PBKDF2-HMAC-SHA256 at
least 600,000 iterations); RFC 7914 (scrypt; its memory is 128 * N * r bytes).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from abcore.access.users import (
    AuthConfigError,
    LoginThrottle,
    access_mode,
    hash_password,
    hash_strength_problem,
    load_users,
    sign_in,
    verify_password,
)
from abcore.dashboard import APP_PATH
from tests.dashboard.markdown_view import text


@pytest.fixture
def store(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The dashboard's database (a fresh SQLite file) and empty Streamlit caches (the throttle is one)."""
    monkeypatch.setenv("ABCORE_DATABASE_URL", sqlite_url)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield sqlite_url
    st.cache_resource.clear()
    st.cache_data.clear()


def _scrypt(password: str, n: int, r: int, p: int) -> str:
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=256 * 1024 * 1024)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _pbkdf2(password: str, iterations: int) -> str:
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def test_new_hashes_meet_the_owasp_minimum() -> None:
    encoded = hash_password("correct horse")
    scheme, n, r, p, _, _ = encoded.split("$")
    assert scheme == "scrypt" and int(n) >= 2**17 and int(r) >= 8 and int(p) >= 1  # OWASP minimum
    assert verify_password("correct horse", encoded)
    # Independent check: hashlib with the parameters from the string gives the stored digest.
    salt, digest = (base64.b64decode(x) for x in encoded.split("$")[4:])
    assert hashlib.scrypt(b"correct horse", salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(digest),
                          maxmem=256 * 1024 * 1024) == digest


@pytest.mark.parametrize(("encoded", "word"), [
    (_pbkdf2("pw", 1), "iterations"),
    (_pbkdf2("pw", 100_000), "iterations"),
    (_scrypt("pw", 2**4, 8, 1), "memory"),
    (_scrypt("pw", 2**10, 8, 16), "memory"),  # N*r*p large enough, memory (1 MiB) far too small
    (_scrypt("pw", 2**14, 1, 1), "memory"),
])
def test_weak_hashes_are_refused_clearly(encoded: str, word: str) -> None:
    problem = hash_strength_problem(encoded)
    assert problem is not None and word in problem
    assert not verify_password("pw", encoded)  # fails closed even when called directly
    with pytest.raises(AuthConfigError, match="too weak") as info:
        load_users({"abcore": {"users": {"alice": {"password_hash": encoded, "role": "editor"}}}}, env={})
    assert "hash-password" in str(info.value)


def test_hashes_at_the_floor_are_accepted() -> None:
    for encoded in (_pbkdf2("pw", 600_000), _scrypt("pw", 2**14, 8, 1)):
        assert hash_strength_problem(encoded) is None
        assert verify_password("pw", encoded)


def test_absurd_cost_is_refused_not_hung() -> None:
    problem = hash_strength_problem("scrypt$1048576$64$1$MDEyMzQ1Njc4OWFiY2RlZg==$" + "A" * 44)
    assert problem is not None and "memory" in problem
    assert "iterations" in (hash_strength_problem(_pbkdf2("pw", 1).replace("$1$", "$1000000000$")) or "")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_delays_exponentially_after_five_failures_per_user() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    delays = [throttle.record_failure("alice", f"client-{i}") for i in range(9)]
    # Five free failures, then 1, 2, 4, 8 s (base 1 s, doubling): by hand.
    assert delays == [0, 0, 0, 0, 0, 1, 2, 4, 8]
    assert throttle.retry_after("alice", "new-client") == 8
    assert throttle.retry_after("bob", "new-client") == 0
    clock.now += 8
    assert throttle.retry_after("alice", "new-client") == 0
    throttle.record_success("alice", "new-client")
    assert throttle.record_failure("alice", "x") == 0


def test_throttle_per_client_and_cap_and_forgetting() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock, max_delay=60.0, forget_after=3600.0)
    for i in range(20):  # one client tries 20 different names: the client's 20 free failures
        assert throttle.record_failure(f"user-{i}", "10.0.0.1") == 0
    assert throttle.record_failure("user-20", "10.0.0.1") == 1  # the 21st: 1 s
    for i in range(21, 30):
        throttle.record_failure(f"user-{i}", "10.0.0.1")
    assert throttle.retry_after("anyone", "10.0.0.1") == 60.0  # 2**9 s, capped at max_delay
    assert throttle.retry_after("anyone", "10.0.0.2") == 0.0
    clock.now += 3600 + 60
    assert throttle.retry_after("anyone", "10.0.0.1") == 0.0
    assert throttle.record_failure("user-0", "10.0.0.1") == 0  # an hour without failures forgets them


def test_sign_in_refuses_while_throttled_without_checking_the_password() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    users = load_users({"abcore": {"users": {"alice": {"password_hash": _scrypt("right", 2**14, 8, 1),
                                                       "role": "editor"}}}}, env={})
    for _ in range(6):
        result = sign_in(users, "alice", "wrong", client="c", throttle=throttle)
        assert result.user is None
    assert result.retry_after == 1 and "1 s" in result.message
    locked = sign_in(users, "alice", "right", client="c", throttle=throttle)
    assert locked.user is None and "Too many failed sign-ins" in locked.message
    clock.now += 1
    ok = sign_in(users, "alice", "right", client="c", throttle=throttle)
    assert ok.user is not None and ok.user.name == "alice" and ok.retry_after == 0


@pytest.mark.parametrize(("users", "error", "mode"), [
    ({}, None, "open"), ({"a": object()}, None, "sign_in"), ({}, "bad config", "locked"), ({"a": object()}, "x", "locked"),
])
def test_access_mode_fails_closed(users: dict, error: str | None, mode: str) -> None:
    assert access_mode(users, error) == mode


def test_broken_user_config_locks_the_dashboard(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A plain-text password in the configuration: before the fix every page was readable without a sign-in.
    monkeypatch.setenv("ABCORE_USERS", json.dumps({"alice": {"password": "hunter2", "role": "editor"}}))
    at = AppTest.from_file(str(APP_PATH), default_timeout=60)
    at.run()
    assert not at.exception
    assert any("plain-text" in text(e.value) for e in at.error)
    assert not at.dataframe and not [b for b in at.button if b.key and b.key.startswith("act_")]
    assert "login_username" not in [t.key for t in at.text_input]  # no sign-in form either: nobody gets in
    for page in ("pages/results.py", "pages/create.py", "pages/models.py"):
        at.switch_page(page).run()
        assert not at.exception
        assert not at.dataframe and not at.get("plotly_chart")
        assert any("locked" in text(e.value) for e in at.error)


def test_dashboard_sign_in_is_throttled(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABCORE_USERS", json.dumps({"vera": {"password_hash": _scrypt("right", 2**14, 8, 1),
                                                            "role": "viewer"}}))
    at = AppTest.from_file(str(APP_PATH), default_timeout=60)
    at.run()
    for _ in range(6):
        at.text_input(key="login_username").set_value("vera")
        at.text_input(key="login_password").set_value("wrong")
        next(b for b in at.button if b.proto.is_form_submitter).click().run()
    at.text_input(key="login_username").set_value("vera")
    at.text_input(key="login_password").set_value("right")
    next(b for b in at.button if b.proto.is_form_submitter).click().run()
    assert any("Too many failed sign-ins" in text(e.value) for e in at.error)
    assert "sign_out" not in [b.key for b in at.button]
