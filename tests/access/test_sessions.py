"""abcore.access.sessions: signed, expiring session tokens (the sign-in that survives a reload)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from abcore.access.sessions import issue_session_token, session_secret, verify_session_token

SECRET = b"k" * 32
USERS = {"ada": SimpleNamespace(name="ada", password_hash="scrypt$abc"), "bob": SimpleNamespace(name="bob", password_hash="x")}


def test_a_token_names_its_user_until_it_expires() -> None:
    token = issue_session_token("ada", "scrypt$abc", secret=SECRET, ttl_seconds=60, now=1000.0)
    assert verify_session_token(token, USERS, secret=SECRET, now=1059.0) is USERS["ada"]
    assert verify_session_token(token, USERS, secret=SECRET, now=1060.0) is None  # expired at 1000 + 60


def test_tampered_foreign_or_stale_tokens_are_refused() -> None:
    token = issue_session_token("ada", "scrypt$abc", secret=SECRET, ttl_seconds=60, now=1000.0)
    name, expires, mac = token.split(".")
    assert verify_session_token(f"{name}.{int(expires) + 999}.{mac}", USERS, secret=SECRET, now=1000.0) is None
    bob = issue_session_token("bob", "x", secret=SECRET, now=1000.0).split(".")[0]
    assert verify_session_token(f"{bob}.{expires}.{mac}", USERS, secret=SECRET, now=1000.0) is None
    assert verify_session_token(token, USERS, secret=b"other", now=1000.0) is None
    changed = {"ada": SimpleNamespace(name="ada", password_hash="scrypt$new")}  # password changed
    assert verify_session_token(token, changed, secret=SECRET, now=1000.0) is None
    assert verify_session_token(token, {}, secret=SECRET, now=1000.0) is None  # user removed
    for junk in (None, "", "a.b", "a.b.c.d", "!!!.x.y", "YWRh.notanumber.x"):
        assert verify_session_token(junk, USERS, secret=SECRET, now=1000.0) is None
    with pytest.raises(ValueError):
        issue_session_token("ada", "h", secret=SECRET, ttl_seconds=0)


def test_the_secret_comes_from_the_environment_or_the_secrets_file() -> None:
    assert session_secret({}, env={"ABCORE_SESSION_SECRET": "s1"}) == b"s1"
    assert session_secret({"session_secret": "s2"}, env={}) == b"s2"
    assert session_secret({}, env={}) == session_secret(None, env={})  # one random secret per process
