"""Access control for the dashboard: users, roles and salted password hashes.

Three roles exist: ``viewer`` (reads everything), ``editor`` (may also create,
edit, start, stop and ship experiments) and ``approver`` (everything an editor may,
plus approving or rejecting drafts when the store requires approvals). Users come from two places, merged (the
environment wins for a name present in both):

* ``.streamlit/secrets.toml`` (or any mapping with the same shape, e.g. ``st.secrets``)::

      [abcore.users.alice]
      password_hash = "scrypt$131072$8$1$<salt>$<hash>"
      role = "editor"

* the environment variable ``ABCORE_USERS``, a JSON object::

      {"bob": {"password_hash": "scrypt$...", "role": "viewer"}}

Passwords are never stored: ``abcore hash-password`` prints a salted scrypt hash
(``scrypt$n$r$p$salt$hash``, salt and hash base64) to paste into the config.
With no user configured the dashboard runs in *open mode*: no login, everyone edits.
A configuration that cannot be read (a plain-text password, a hash below the cost floor,
bad JSON) *locks* the dashboard: nobody reads anything until it is fixed (fail closed).

New hashes use scrypt with N=2^17, r=8, p=1 (OWASP's minimum). Configured hashes below
the cost floor (:func:`hash_strength_problem`) are refused with a message saying so.
Failed sign-ins are throttled per user name and per client (:class:`LoginThrottle`):
five per user name (twenty per client address) are free, then each further failure doubles the wait (1 s, 2 s, 4 s ... 15 min).

This module never imports streamlit; the dashboard passes ``st.secrets`` in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import secrets as _secrets
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from abcore.config import PROJECT_ROOT, SETTINGS, setting
from abcore.errors import Invalid

ROLES: tuple[str, ...] = ("viewer", "editor", "approver")
EDIT_ROLES: frozenset[str] = frozenset({"editor", "approver"})
APPROVE_ROLES: frozenset[str] = frozenset({"approver"})
USERS_ENV = SETTINGS["users"].env
SECRETS_FILE = Path(".streamlit") / "secrets.toml"

# scrypt cost for new hashes: N=2**17, r=8, p=1, OWASP's minimum (Password Storage Cheat Sheet);
# 128 * N * r = 128 MiB of memory, so hashlib needs maxmem above that.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_DKLEN = 32
SALT_BYTES = 16
PBKDF2_ITERATIONS = 600_000
_MAXMEM = 256 * 1024 * 1024
# Cost floor for configured hashes. scrypt: at least 16 MiB of memory (128 * N * r, i.e. RFC 7914's
# interactive N=2**14, r=8, so hashes made by earlier abcore versions still work); PBKDF2-HMAC-SHA256:
# OWASP's 600,000 iterations. Ceilings keep a typo from hanging every sign-in.
MIN_SCRYPT_MEMORY = 16 * 1024 * 1024
MAX_SCRYPT_P = 16
MIN_PBKDF2_ITERATIONS = 600_000
MAX_PBKDF2_ITERATIONS = 10_000_000
MIN_SALT_BYTES = 8
MIN_DIGEST_BYTES = 16


class AuthConfigError(Invalid, ValueError):
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


def hash_strength_problem(encoded: str) -> str | None:
    """Why ``encoded`` is too weak (or too costly) to accept, or None when it meets the cost floor.

    Malformed hashes are reported too. See :data:`MIN_SCRYPT_MEMORY`, :data:`MIN_PBKDF2_ITERATIONS`
    and their ceilings.
    """
    try:
        scheme, params, salt, digest = _parse_hash(encoded)
    except ValueError as exc:
        return str(exc)
    if len(salt) < MIN_SALT_BYTES:
        return f"the salt has {len(salt)} bytes (at least {MIN_SALT_BYTES})"
    if len(digest) < MIN_DIGEST_BYTES:
        return f"the hash has {len(digest)} bytes (at least {MIN_DIGEST_BYTES})"
    if scheme == "scrypt":
        n, r, p = params
        memory = 128 * n * r
        if memory + 128 * r * p > _MAXMEM:
            return f"scrypt N={n}, r={r} needs {memory // 2**20:,} MiB of memory (abcore allows {_MAXMEM // 2**20} MiB)"
        if p > MAX_SCRYPT_P:
            return f"scrypt p={p} is above {MAX_SCRYPT_P}"
        if memory < MIN_SCRYPT_MEMORY:
            return (f"scrypt N={n}, r={r} uses {memory / 2**20:g} MiB of memory "
                    f"(at least {MIN_SCRYPT_MEMORY // 2**20} MiB, e.g. N=131072, r=8)")
        return None
    iterations = params[0]
    if iterations < MIN_PBKDF2_ITERATIONS:
        return f"pbkdf2_sha256 with {iterations:,} iterations (at least {MIN_PBKDF2_ITERATIONS:,})"
    if iterations > MAX_PBKDF2_ITERATIONS:
        return f"pbkdf2_sha256 with {iterations:,} iterations (at most {MAX_PBKDF2_ITERATIONS:,})"
    return None


def is_valid_hash(encoded: str) -> bool:
    """True when ``encoded`` looks like a hash this module can verify (it is never a plain password)."""
    try:
        _parse_hash(encoded)
    except ValueError:
        return False
    return True


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches the encoded hash (constant-time comparison).

    False when the hash is malformed or below the cost floor (:func:`hash_strength_problem`): fails closed.
    """
    if not isinstance(encoded, str) or hash_strength_problem(encoded) is not None:
        return False
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
                "'scrypt$131072$8$1$...'); create one with `abcore hash-password`"
            )
        weakness = hash_strength_problem(password_hash)
        if weakness is not None:
            raise AuthConfigError(
                f"{where}: password_hash is too weak ({weakness}); create a new one with `abcore hash-password`"
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
            except (OSError, UnicodeDecodeError) as exc:
                raise AuthConfigError(f"{path}: cannot be read ({exc})") from None
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
    raw = setting("users", env) or ""
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
    user who is still configured with role ``editor`` or ``approver``.
    """
    if not users:
        return True
    if user is None:
        return False
    current = users.get(user.name)
    return current is not None and current.role in EDIT_ROLES


def can_approve(user: User | None, users: Mapping[str, User]) -> bool:
    """Whether ``user`` may approve or reject drafts.

    Open mode (no users configured): everyone. Otherwise only a logged-in user who is still
    configured with role ``approver`` (the role is read afresh, so a demotion takes effect at once).
    """
    if not users:
        return True
    if user is None:
        return False
    current = users.get(user.name)
    return current is not None and current.role in APPROVE_ROLES


# --------------------------------------------------------------------------- fail-closed access and throttling

AccessMode = Literal["open", "sign_in", "locked"]


def access_mode(users: Mapping[str, Any], error: str | None) -> AccessMode:
    """How the dashboard admits visitors, failing closed.

    ``"locked"`` when the user configuration could not be loaded (``error``; nobody reads anything
    until it is fixed), ``"sign_in"`` when users are configured, ``"open"`` only when the configuration
    was read fine and names nobody.
    """
    if error is not None:
        return "locked"
    return "sign_in" if users else "open"


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Failed sign-ins per user name and per client, with an exponential delay.

    The first ``free_failures`` failures of a user name (``client_free_failures`` of a client: many
    people may share one address behind a proxy) cost nothing; failure number ``free + k`` (k >= 1)
    blocks the key for ``min(base_delay * 2**(k - 1), max_delay)`` seconds. A sign-in is refused
    while its user name *or* its client is blocked. A success clears the user name's record; a key
    without failures for ``forget_after`` seconds starts afresh. ``clock`` (monotonic seconds) is
    injectable so tests never sleep. Thread-safe; at most ``max_keys`` keys are remembered.
    """

    def __init__(
        self,
        *,
        free_failures: int = 5,
        client_free_failures: int = 20,
        base_delay: float = 1.0,
        max_delay: float = 900.0,
        forget_after: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.free_failures = free_failures
        self.client_free_failures = client_free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.clock = clock
        self.max_keys = max_keys
        self._records: dict[tuple[str, str], _Failures] = {}
        self._lock = threading.Lock()

    def _record(self, key: tuple[str, str], now: float) -> _Failures | None:
        record = self._records.get(key)
        if record is not None and now - record.last >= self.forget_after and now >= record.locked_until:
            del self._records[key]
            return None
        return record

    def retry_after(self, user: str, client: str) -> float:
        """Seconds until a sign-in as ``user`` from ``client`` is accepted again (0: now)."""
        now = self.clock()
        with self._lock:
            waits = [r.locked_until - now for k in (("user", user), ("client", client))
                     if (r := self._record(k, now)) is not None]
        return max([0.0, *waits])

    def record_failure(self, user: str, client: str) -> float:
        """Count a failed sign-in; returns the seconds the user name or client is now blocked for."""
        now = self.clock()
        with self._lock:
            if len(self._records) >= self.max_keys:
                self._prune(now)
            for key in (("user", user), ("client", client)):
                record = self._record(key, now) or self._records.setdefault(key, _Failures())
                record.count += 1
                record.last = now
                over = record.count - (self.free_failures if key[0] == "user" else self.client_free_failures)
                if over > 0:
                    delay = min(self.base_delay * 2.0 ** min(over - 1, 60), self.max_delay)
                    record.locked_until = max(record.locked_until, now + delay)
        return self.retry_after(user, client)

    def record_success(self, user: str, client: str) -> None:
        """A successful sign-in: the user name's failures are forgotten (the client's stay)."""
        with self._lock:
            self._records.pop(("user", user), None)

    def _prune(self, now: float) -> None:
        for key in [k for k, r in self._records.items() if now - r.last >= self.forget_after and now >= r.locked_until]:
            del self._records[key]
        while len(self._records) >= self.max_keys:  # still full: forget the oldest
            del self._records[min(self._records, key=lambda k: self._records[k].last)]


@dataclass(frozen=True)
class SignInResult:
    """The outcome of :func:`sign_in`: the user (None when refused), the wait, a message for the visitor."""

    user: User | None
    retry_after: float
    message: str


def sign_in(
    users: Mapping[str, User], name: str, password: str, *, client: str, throttle: LoginThrottle
) -> SignInResult:
    """:func:`authenticate` behind ``throttle``: while the user name or the client is blocked, the
    password is not even checked and the result says how long to wait."""
    name = name if isinstance(name, str) else ""
    wait = throttle.retry_after(name, client)
    if wait > 0:
        return SignInResult(None, wait, f"Too many failed sign-ins. Try again in {math.ceil(wait)} s.")
    user = authenticate(users, name, password)
    if user is None:
        wait = throttle.record_failure(name, client)
        message = "Unknown user name or wrong password."
        if wait > 0:
            message += f" Too many failed sign-ins: the next attempt is possible in {math.ceil(wait)} s."
        return SignInResult(None, wait, message)
    throttle.record_success(name, client)
    return SignInResult(user, 0.0, "")
