"""Signed, expiring session tokens: a dashboard sign-in that survives a page reload.

A token is ``<name>.<expiry unix seconds>.<HMAC-SHA256>`` (URL-safe base64 for the name and the
MAC). The MAC covers the name, the expiry and a fingerprint of the user's current password hash,
so a token stops working when it expires, when the secret changes, or when the user's password
(hash) changes or the user is removed. Nothing is stored on the server.

The secret comes from ``$ABCORE_SESSION_SECRET`` or ``session_secret`` in ``.streamlit/secrets.toml``;
without one, :func:`session_secret` returns a random secret per process (tokens then last until
the dashboard restarts). Where an OIDC provider is available, Streamlit's ``st.login`` is the
alternative (see the dashboard guide of the docs site, "Access control for the dashboard").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets as _secrets
import time
from collections.abc import Mapping
from typing import Any

from abcore.config import setting

DEFAULT_TTL_SECONDS = 12 * 3600
COOKIE_NAME = "abcore_session"
_PROCESS_SECRET = _secrets.token_bytes(32)


def session_secret(configured: Mapping[str, Any] | None = None, env: Mapping[str, str] = os.environ) -> bytes:
    """The HMAC key: ``$ABCORE_SESSION_SECRET``, else ``session_secret`` in ``configured``, else per process."""
    text = setting("session_secret", env) or (configured or {}).get("session_secret")
    return str(text).encode("utf-8") if text else _PROCESS_SECRET


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, name: str, expires: int, password_hash: str) -> str:
    fingerprint = hashlib.sha256(password_hash.encode("utf-8")).hexdigest()
    message = f"{name}\n{expires}\n{fingerprint}".encode()
    return _b64(hmac.new(secret, message, hashlib.sha256).digest())


def issue_session_token(name: str, password_hash: str, *, secret: bytes, ttl_seconds: int = DEFAULT_TTL_SECONDS,
                        now: float | None = None) -> str:
    """A token for ``name`` valid for ``ttl_seconds`` from ``now`` (default: the current time)."""
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    expires = int((time.time() if now is None else now) + ttl_seconds)
    return f"{_b64(name.encode('utf-8'))}.{expires}.{_mac(secret, name, expires, password_hash)}"


def verify_session_token(token: str | None, users: Mapping[str, Any], *, secret: bytes,
                         now: float | None = None) -> Any | None:
    """The user (from ``users``, keyed by name, each with ``password_hash``) a valid token names, else ``None``.

    ``None`` for anything malformed, expired, signed with another secret, for a removed user or a
    changed password hash; the MAC is compared in constant time.
    """
    if not token or token.count(".") != 2:
        return None
    encoded_name, expires_text, mac = token.split(".")
    try:
        name = _unb64(encoded_name).decode("utf-8")
        expires = int(expires_text)
    except (ValueError, UnicodeDecodeError):
        return None
    user = users.get(name)
    if user is None or expires <= (time.time() if now is None else now):
        return None
    expected = _mac(secret, name, expires, str(getattr(user, "password_hash", "")))
    return user if hmac.compare_digest(expected, mac) else None
