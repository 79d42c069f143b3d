"""Access control for the dashboard: users, roles and salted password hashes.

Two roles exist: ``viewer`` (reads everything) and ``editor`` (may also create,
start, stop and ship experiments). Users come from two places, merged (the
environment wins for a name present in both):

* ``.streamlit/secrets.toml`` (or any mapping with the same shape, e.g. ``st.secrets``)::

      [abcore.users.alice]
      password_hash = "scrypt$16384$8$1$<salt>$<hash>"
      role = "editor"

* the environment variable ``ABCORE_USERS``, a JSON object::

      {"bob": {"password_hash": "scrypt$...", "role": "viewer"}}

Passwords are never stored: ``abcore hash-password`` prints a salted scrypt hash
(``scrypt$n$r$p$salt$hash``, salt and hash base64) to paste into the config.
With no user configured the dashboard runs in *open mode*: no login, everyone edits.

This module never imports streamlit; the dashboard passes ``st.secrets`` in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets as _secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abcore.config import PROJECT_ROOT

ROLES: tuple[str, ...] = ("viewer", "editor")
USERS_ENV = "ABCORE_USERS"
SECRETS_FILE = Path(".streamlit") / "secrets.toml"

# scrypt cost: N=2**14, r=8, p=1 (the RFC 7914 interactive-login parameters; ~16 MiB, ~50 ms).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_DKLEN = 32
SALT_BYTES = 16
PBKDF2_ITERATIONS = 600_000
_MAXMEM = 256 * 1024 * 1024


class AuthConfigError(ValueError):
    """The user configuration is malformed; the message says what to fix."""


@dataclass(frozen=True)
class User:
    """A configured dashboard user. ``role`` is one of :data:`ROLES`."""

    name: str
    role: str
    password_hash: str

    def __repr__(self) -> str:  # never print the hash in logs
        return f"User(name={self.name!r}, role={self.role!r})"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash of ``password``: ``scrypt$N$r$p$<salt b64>$<hash b64>``.

    A fresh random 16-byte salt is drawn per call (pass ``salt`` only in tests),
    so hashing the same password twice gives different strings that both verify.
    Raises ``ValueError`` for an empty password.
    """
    if not isinstance(password, str) or password == "":
        raise ValueError("the password must be a non-empty string")
    salt = salt if salt is not None else _secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_DKLEN, maxmem=_MAXMEM
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse_hash(encoded: str) -> tuple[str, tuple[int, ...], bytes, bytes]:
    """Split an encoded hash into (scheme, parameters, salt, digest); ValueError when malformed."""
    parts = encoded.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            if n < 2 or n & (n - 1) or r < 1 or p < 1:
                raise ValueError("bad scrypt parameters")
            return "scrypt", (n, r, p), _unb64(parts[4]), _unb64(parts[5])
        if parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            iterations = int(parts[1])
            if iterations < 1:
                raise ValueError("bad iteration count")
            return "pbkdf2_sha256", (iterations,), _unb64(parts[2]), _unb64(parts[3])
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"malformed password hash: {exc}") from None
    raise ValueError("malformed password hash: expected 'scrypt$N$r$p$salt$hash' or 'pbkdf2_sha256$iterations$salt$hash'")


def is_valid_hash(encoded: str) -> bool:
    """True when ``encoded`` looks like a hash this module can verify (it is never a plain password)."""
    try:
        _parse_hash(encoded)
    except ValueError:
        return False
    return True


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches the encoded hash (constant-time comparison); False when malformed."""
    try:
        scheme, params, salt, expected = _parse_hash(encoded)
    except ValueError:
        return False
    secret = password.encode("utf-8")
    if scheme == "scrypt":
        n, r, p = params
        try:
            actual = hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=_MAXMEM)
        except ValueError:  # parameters beyond what this machine can compute
            return False
    else:
        actual = hashlib.pbkdf2_hmac("sha256", secret, salt, params[0], dklen=len(expected))
    return hmac.compare_digest(actual, expected)


# A real hash of a random password: authenticate() verifies unknown names against it so that
# "no such user" and "wrong password" take the same time.
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(_secrets.token_urlsafe(16))
    return _DUMMY_HASH


def _as_plain(value: Any) -> Any:
    """Mappings (including streamlit's AttrDict) as plain dicts, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _as_plain(v) for k, v in value.items()}
    return value


def _parse_users(table: Any, source: str) -> dict[str, User]:
    if not isinstance(table, Mapping):
        raise AuthConfigError(f"{source}: users must be a table of name -> {{password_hash, role}}")
    users: dict[str, User] = {}
    for name, entry in table.items():
        where = f"{source}: user {name!r}"
        if not isinstance(name, str) or not name.strip():
            raise AuthConfigError(f"{source}: a user name must be a non-empty string")
        if not isinstance(entry, Mapping):
            raise AuthConfigError(f"{where} must be a table with password_hash and role")
        if "password" in entry:
            raise AuthConfigError(
                f"{where} has a plain-text 'password': store only a hash. "
                "Run `abcore hash-password` and put its output in 'password_hash' instead."
            )
        unknown = sorted(set(entry) - {"password_hash", "role"})
        if unknown:
            raise AuthConfigError(f"{where} has unknown key(s) {', '.join(unknown)} (allowed: password_hash, role)")
        role = entry.get("role")
        if role not in ROLES:
            raise AuthConfigError(f"{where} has role {role!r}; the role must be one of {', '.join(ROLES)}")
        password_hash = entry.get("password_hash")
        if not isinstance(password_hash, str) or not password_hash:
            raise AuthConfigError(f"{where} has no password_hash; create one with `abcore hash-password`")
        if not is_valid_hash(password_hash):
            raise AuthConfigError(
                f"{where}: password_hash is not a hash abcore understands (it must look like "
                "'scrypt$16384$8$1$...'); create one with `abcore hash-password`"
            )
        users[name] = User(name=name, role=role, password_hash=password_hash)
    return users


def _read_secrets_file() -> Mapping[str, Any]:
    """``.streamlit/secrets.toml`` from the working directory, else from the project root; {} when absent."""
    for folder in (Path.cwd(), PROJECT_ROOT):
        path = folder / SECRETS_FILE
        if path.is_file():
            try:
                with path.open("rb") as handle:
                    return tomllib.load(handle)
            except tomllib.TOMLDecodeError as exc:
                raise AuthConfigError(f"{path}: not valid TOML ({exc})") from None
    return {}


def load_users(secrets: Mapping[str, Any] | None = None, env: Mapping[str, str] = os.environ) -> dict[str, User]:
    """The configured users by name, from ``secrets`` (``[abcore.users.<name>]``) and ``$ABCORE_USERS``.

    ``secrets`` is a mapping shaped like ``.streamlit/secrets.toml`` (``st.secrets`` works);
    when None, that file is read from the working directory or the project root if present.
    Raises :class:`AuthConfigError` with a one-line reason for a malformed configuration
    (unknown role, missing or unparsable hash, a plain-text ``password`` key, bad JSON).
    Returns {} when nobody is configured (open mode).
    """
    if secrets is None:
        secrets = _read_secrets_file()
    users: dict[str, User] = {}
    section = _as_plain(secrets).get("abcore", {}) if secrets else {}
    if not isinstance(section, Mapping):
        raise AuthConfigError("secrets: [abcore] must be a table")
    if "users" in section:
        users.update(_parse_users(section["users"], "secrets [abcore.users]"))
    raw = (env.get(USERS_ENV) or "").strip()
    if raw:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise AuthConfigError(f"${USERS_ENV} is not valid JSON ({exc.msg} at position {exc.pos})") from None
        users.update(_parse_users(data, f"${USERS_ENV}"))
    return users


def authenticate(users: Mapping[str, User], name: str, password: str) -> User | None:
    """The user when ``name`` exists and ``password`` matches its hash, else None.

    An unknown name is checked against a dummy hash, so both failures take the same time.
    """
    user = users.get(name) if isinstance(name, str) else None
    if user is None:
        verify_password(password or "", _dummy_hash())
        return None
    if not isinstance(password, str) or not verify_password(password, user.password_hash):
        return None
    return user


def auth_required(users: Mapping[str, User]) -> bool:
    """True when at least one user is configured (the dashboard asks for a login)."""
    return bool(users)


def can_edit(user: User | None, users: Mapping[str, User]) -> bool:
    """Whether ``user`` may change experiments.

    Open mode (no users configured): everyone edits. Otherwise only a logged-in
    user who is still configured with role ``editor``.
    """
    if not users:
        return True
    if user is None:
        return False
    current = users.get(user.name)
    return current is not None and current.role == "editor"
