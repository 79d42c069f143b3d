"""API keys of the HTTP API: create (the key is shown once), list, revoke, verify.

A key is ``abk_`` followed by 43 URL-safe characters (32 random bytes from :mod:`secrets`).
Only its SHA-256 (hex) is stored in ``ab_api_keys``, with the first characters (``prefix``)
to recognise it in listings. Keys carry 256 random bits, so a fast hash cannot be brute-forced
and lets each request be checked with one indexed lookup (unlike passwords, which get scrypt
in :mod:`abcore.access.users`).

Roles (:data:`ROLES`):

* ``viewer``  reads experiments, metrics, results and exports;
* ``editor``  everything a viewer may, plus create / change status / ship, assign and track;
* ``service`` assigns users and records events only (what a recommender needs), reads nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from abcore.experiments.errors import ExperimentError
from abcore.store.db import commit_unique
from abcore.store.tables import ApiKey, utcnow

ROLES: tuple[str, ...] = ("viewer", "editor", "service")
KEY_PREFIX = "abk_"
PREFIX_LENGTH = 12
MAX_NAME_LENGTH = 200

__all__ = [
    "ROLES",
    "ApiKeyError",
    "ApiKeyInfo",
    "create_api_key",
    "hash_key",
    "list_api_keys",
    "revoke_api_key",
    "verify_api_key",
]


class ApiKeyError(ExperimentError):
    """A key request abcore refuses (unknown name, duplicate name, bad role); the message says why."""


@dataclass(frozen=True)
class ApiKeyInfo:
    """What is known about a key without the key itself (safe to print and to cache)."""

    id: int
    name: str
    role: str
    prefix: str
    rate_limit: float | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _info(row: ApiKey) -> ApiKeyInfo:
    assert row.id is not None
    return ApiKeyInfo(row.id, row.name, row.role, row.prefix, row.rate_limit, row.created_at, row.revoked_at)


def hash_key(key: str) -> str:
    """Hex SHA-256 of the UTF-8 key: what the store keeps instead of the key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ApiKeyError("An API key needs a name.")
    if len(name) > MAX_NAME_LENGTH or "\x00" in name:
        raise ApiKeyError(f"The key name must be at most {MAX_NAME_LENGTH} characters without NUL characters.")
    return name


def create_api_key(
    *, session: Session, name: str, role: str, rate_limit: float | None = None
) -> tuple[ApiKeyInfo, str]:
    """Create a key called ``name`` with ``role``; returns its info and **the key** (shown only this once).

    ``rate_limit`` is in requests per second for this key (None: the server's default, 0: unlimited).
    Raises :class:`ApiKeyError` for an empty or taken name, an unknown role or a negative limit.
    """
    name = _check_name(name)
    if role not in ROLES:
        raise ApiKeyError(f"Unknown role {role!r}: use one of {', '.join(ROLES)}.")
    if rate_limit is not None and (
        isinstance(rate_limit, bool) or not isinstance(rate_limit, int | float) or not math.isfinite(rate_limit)
        or rate_limit < 0
    ):
        raise ApiKeyError("The rate limit must be a number of requests per second >= 0 (0: unlimited).")
    if session.exec(select(ApiKey.id).where(ApiKey.name == name)).first() is not None:
        raise ApiKeyError(f"An API key named {name!r} already exists (revoke it or pick another name).")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        role=role,
        key_hash=hash_key(key),
        prefix=key[:PREFIX_LENGTH],
        rate_limit=None if rate_limit is None else float(rate_limit),
        created_at=utcnow(),
    )
    session.add(row)
    return _info(commit_unique(session, row, ApiKeyError(f"An API key named {name!r} already exists."))), key


def list_api_keys(*, session: Session, include_revoked: bool = True) -> list[ApiKeyInfo]:
    """Every key (oldest first), without the keys themselves; revoked ones too unless told otherwise."""
    query = select(ApiKey).order_by(col(ApiKey.id))
    if not include_revoked:
        query = query.where(col(ApiKey.revoked_at).is_(None))
    return [_info(row) for row in session.exec(query).all()]


def revoke_api_key(*, session: Session, name: str) -> ApiKeyInfo:
    """Revoke the key called ``name`` (kept for the record; requests with it get 401 from then on).

    Revoking an already revoked key is a no-op that returns it. Raises :class:`ApiKeyError` when
    no key has that name.
    """
    name = _check_name(name)
    row = session.exec(select(ApiKey).where(ApiKey.name == name)).first()
    if row is None:
        raise ApiKeyError(f"No API key named {name!r}.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        session.commit()
        session.refresh(row)
    return _info(row)


def verify_api_key(*, session: Session, key: str) -> ApiKeyInfo | None:
    """The active key matching ``key``, or None (unknown, malformed or revoked)."""
    if not isinstance(key, str) or not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = hash_key(key)
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == digest)).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return _info(row)
