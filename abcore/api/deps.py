"""Dependencies of the HTTP API: settings, the per-app state, the session, the caller's key and role.

``Authorization: Bearer KEY`` is checked against ``ab_api_keys`` (SHA-256 lookup, cached for
``key_cache_ttl`` seconds, so a revoked key stops working within that time); no or an unknown key
-> 401, a known key of the wrong role -> 403, too many requests for the key -> 429 with
``Retry-After``. Rate limiting is a token bucket per key, plane and worker process: the management
routes (:data:`MANAGE`) and the data plane (:data:`DATA`: assign, conversions, events) have their own
default limits (``$ABCORE_API_RATE_LIMIT``, ``$ABCORE_API_DATA_RATE_LIMIT``; the data plane is not
throttled by default); a key created with its own limit has that limit on each plane.
"""

from __future__ import annotations

import email.message
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.access.api_keys import ApiKeyInfo, hash_key, verify_api_key
from abcore.assign import Assigner
from abcore.config import SETTINGS, setting

DEFAULT_RATE_LIMIT: float = SETTINGS["api_rate_limit"].default
DEFAULT_DATA_RATE_LIMIT: float = SETTINGS["api_data_rate_limit"].default
DEFAULT_MAX_BODY_BYTES: int = SETTINGS["api_max_body_bytes"].default


@dataclass(frozen=True)
class ApiSettings:
    """Server settings.

    rate_limit:
        Requests per second per key (each worker process) on the management routes, for keys without their
        own limit; 0: unlimited. A key may burst up to ``burst_seconds`` worth of requests.
    data_rate_limit:
        The same on the data plane (assign, assign/batch, conversions, events); 0 (the default): unlimited.
    max_body_bytes:
        Larger request bodies get 413 before they are parsed.
    key_cache_ttl:
        Seconds a verified (or unknown) key is remembered; a revocation applies within this time.
    """

    rate_limit: float = DEFAULT_RATE_LIMIT
    data_rate_limit: float = DEFAULT_DATA_RATE_LIMIT
    burst_seconds: float = 2.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    key_cache_ttl: float = 5.0

    @classmethod
    def from_env(cls) -> ApiSettings:
        """Settings from ``$ABCORE_API_RATE_LIMIT``, ``$ABCORE_API_DATA_RATE_LIMIT`` and ``$ABCORE_API_MAX_BODY_BYTES``
        (defaults otherwise); :class:`~abcore.config.SettingError` naming the variable for a value that is not a
        finite number >= 0."""
        return cls(
            rate_limit=setting("api_rate_limit"),
            data_rate_limit=setting("api_data_rate_limit"),
            max_body_bytes=setting("api_max_body_bytes"),
        )


#: The two rate-limit planes: management routes and the data plane (assign, conversions, events).
MANAGE = "manage"
DATA = "data"


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


@dataclass
class ApiState:
    """What one app instance shares between requests: the engine, the assigner, key cache, rate buckets."""

    engine: Engine
    assigner: Assigner
    settings: ApiSettings
    owns_engine: bool = False
    owns_assigner: bool = False
    _keys: dict[str, tuple[ApiKeyInfo | None, float]] = field(default_factory=dict)
    _buckets: dict[tuple[int, str], _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cached_key(self, key: str) -> tuple[bool, ApiKeyInfo | None]:
        """(found in the cache, the key info) without touching the store."""
        cached = self._keys.get(hash_key(key))
        if cached is not None and cached[1] > time.monotonic():
            return True, cached[0]
        return False, None

    def key_for(self, key: str) -> ApiKeyInfo | None:
        """The active key ``key`` (cached for ``key_cache_ttl`` s), None when unknown or revoked."""
        hit, info = self.cached_key(key)
        if hit:
            return info
        digest = hash_key(key)
        now = time.monotonic()
        with Session(self.engine, expire_on_commit=False) as session:
            info = verify_api_key(session=session, key=key)
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[digest] = (info, now + self.settings.key_cache_ttl)
        return info

    def forget_keys(self) -> None:
        """Drop the key cache (a revocation applies at once in this process)."""
        self._keys.clear()

    def take(self, key: ApiKeyInfo, plane: str = MANAGE) -> float | None:
        """Spend one request of ``key``'s budget on ``plane`` (:data:`MANAGE` or :data:`DATA`); None when allowed,
        else the seconds until the next is. No lock is taken when the plane is unlimited for the key."""
        if key.rate_limit is not None:
            rate = key.rate_limit
        else:
            rate = self.settings.data_rate_limit if plane == DATA else self.settings.rate_limit
        if rate <= 0:
            return None
        capacity = max(1.0, rate * self.settings.burst_seconds)
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get((key.id, plane))
            if bucket is None:
                bucket = self._buckets[(key.id, plane)] = _Bucket(capacity, now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / rate


def _query_names(route: Any) -> frozenset[str]:
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        found: set[str] = set()
        pending = [getattr(route, "dependant", None)]
        while pending:  # the route's own query parameters and those of its dependencies
            dependant = pending.pop()
            if dependant is not None:
                found.update(p.alias for p in dependant.query_params)
                pending.extend(dependant.dependencies)
        names = _QUERY_NAMES[id(route)] = frozenset(found)
    return names


_QUERY_NAMES: dict[int, frozenset[str]] = {}


async def no_unknown_query(request: Request) -> None:
    """422 for a query parameter the endpoint does not take (a typo such as ``?stauts=`` is not ignored)."""
    if not request.scope.get("query_string"):
        return
    known = _query_names(request.scope.get("route"))
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
        raise HTTPException(422, f"Unknown query parameter(s) {', '.join(map(repr, unknown))}: {takes}.")


async def api_state(request: Request) -> ApiState:
    return request.app.state.abcore  # type: ignore[no-any-return]


def get_session(state: Annotated[ApiState, Depends(api_state)]) -> Iterator[Session]:
    """One session per request on the app's engine."""
    with Session(state.engine, expire_on_commit=False) as session:
        yield session


_bearer = HTTPBearer(auto_error=False, description="an API key from `abcore api-key create NAME --role ROLE`")


async def authorize(state: ApiState, token: str | None, roles: tuple[str, ...], plane: str) -> ApiKeyInfo:
    """The key ``token`` if it is active, of one of ``roles`` and within its rate limit on ``plane``.

    401 without a valid key, 403 for another role, 429 (``Retry-After``) when the limit is exhausted. A cached
    key costs a hash and a dict lookup; an uncached one is looked up in the store off the event loop.
    """
    if not token:
        raise HTTPException(
            401, "Missing API key: send 'Authorization: Bearer <key>' (create one with `abcore api-key create`).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    hit, key = state.cached_key(token)
    if not hit:  # a store lookup: off the event loop
        key = await anyio.to_thread.run_sync(state.key_for, token)
    if key is None:
        raise HTTPException(401, "Unknown or revoked API key.", headers={"WWW-Authenticate": "Bearer"})
    wait = state.take(key, plane)
    if wait is not None:
        raise HTTPException(
            429,
            f"Rate limit of API key {key.name!r} exceeded; retry in {wait:.2f} s.",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    if key.role not in roles:
        raise HTTPException(403, f"API key {key.name!r} has the role {key.role!r}; this needs {' or '.join(roles)}.")
    return key


def bearer_token(request: Request) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header (scheme case-insensitive), else None."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def require(*roles: str, plane: str = MANAGE) -> Callable[..., Awaitable[ApiKeyInfo]]:
    """A dependency admitting keys whose role is one of ``roles`` (403 for any other role), counted on ``plane``."""

    async def check(
        state: Annotated[ApiState, Depends(api_state)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKeyInfo:
        return await authorize(state, credentials.credentials if credentials else None, roles, plane)

    return check


class PlainRoute(APIRoute):
    """A route whose endpoint takes the :class:`~fastapi.Request` and returns a :class:`~fastapi.Response`
    itself: FastAPI solves no dependencies, parses no body and validates no answer (tens of microseconds a
    request). The endpoint does what they would: :func:`no_unknown_query`, :func:`authorize`, :func:`parse_body`;
    the route's declarations (``response_model``, ``openapi_extra``) document it in the OpenAPI schema."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        return self.endpoint  # type: ignore[return-value]


Model = TypeVar("Model", bound=BaseModel)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    if content_type.startswith("application/json"):
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def parse_body(model: type[Model], raw: bytes, content_type: str | None) -> Model:
    """``raw`` validated as ``model``, read as FastAPI reads a body parameter (JSON only with a JSON
    ``Content-Type``), for routes that read the body themselves. Invalid input raises the
    :class:`RequestValidationError` FastAPI would raise (locations under ``body``), so the answer is the same 422;
    bytes that are not UTF-8 JSON text raise FastAPI's 400, which the error handlers answer as 422."""
    data: Any = raw
    if raw and _is_json(content_type):
        try:  # one pass in pydantic-core; any refusal is re-read below for FastAPI's words
            return model.model_validate_json(raw)
        except ValidationError:
            pass
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    if _is_json(content_type):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RequestValidationError([{
                "type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {},
                "ctx": {"error": exc.msg},
            }]) from None
        except ValueError:
            raise HTTPException(400, "There was an error parsing the body") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None


def store_session(state: ApiState) -> Session:
    """A session on the app's engine, for endpoints that only sometimes need one (use it in ``with``)."""
    return Session(state.engine, expire_on_commit=False)


SessionDep = Annotated[Session, Depends(get_session)]
StateDep = Annotated[ApiState, Depends(api_state)]
Reader = Annotated[ApiKeyInfo, Depends(require("viewer", "editor"))]
Editor = Annotated[ApiKeyInfo, Depends(require("editor"))]
#: The roles of the data plane (assign, conversions, events).
TRACKER_ROLES = ("service", "editor")
Tracker = Annotated[ApiKeyInfo, Depends(require(*TRACKER_ROLES, plane=DATA))]
