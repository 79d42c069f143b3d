"""Errors of the HTTP API: every one is JSON ``{"detail": "<words>", "problems": [...]}``.

abcore's own exceptions (:mod:`abcore.errors`) map to status codes here, in one table
(:data:`STATUS_BY_ERROR`), so endpoints just call the library: :class:`~abcore.errors.NotFound` -> 404,
:class:`~abcore.errors.Conflict` -> 409, :class:`~abcore.errors.Invalid` -> 422 (listing every problem),
:class:`~abcore.errors.Unavailable` -> 503; request validation -> 422 in words, a store that cannot be
reached -> 503.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount, compile_path
from starlette.staticfiles import StaticFiles

from abcore.api.schemas import ErrorBody
from abcore.errors import AbcoreError, Conflict, Invalid, NotFound, Unavailable

logger = logging.getLogger("abcore.api")

#: The HTTP status of each kind of :class:`~abcore.errors.AbcoreError`, most specific first: an error
#: that is both (e.g. an unknown experiment is an ``Invalid`` request and a ``NotFound``) gets the first.
STATUS_BY_ERROR: tuple[tuple[type[AbcoreError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (Unavailable, 503),
    (Invalid, 422),
)

_DESCRIPTIONS = {
    401: "No API key, or an unknown or revoked one",
    403: "The key's role may not do this",
    404: "No experiment with that id or name",
    409: "Not allowed in the experiment's current status (the detail says why)",
    413: "The request body is larger than the server's limit",
    422: "Invalid input; `problems` lists every finding",
    429: "The key's rate limit is exhausted; see Retry-After",
    503: "The store is unavailable",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error codes an endpoint can answer (plus 503)."""
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in (*codes, 503)}


def error(status: int, detail: str, problems: list[str] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "problems": problems or []}, status_code=status, headers=headers)


def status_of(exc: AbcoreError) -> int:
    """The HTTP status of ``exc`` by :data:`STATUS_BY_ERROR` (422 for an AbcoreError of no listed kind)."""
    return next((status for kind, status in STATUS_BY_ERROR if isinstance(exc, kind)), 422)


def abcore_error_response(exc: AbcoreError) -> JSONResponse:
    """The JSON answer to ``exc``: its message as ``detail``; for 422 every problem (its ``problems``, else the
    message); for 503 a ``Retry-After`` of one second."""
    status = status_of(exc)
    if status == 422:
        return error(422, str(exc), list(getattr(exc, "problems", None) or [str(exc)]))
    if status == 503:
        return error(503, str(exc), headers={"Retry-After": "1"})
    return error(status, str(exc))


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    text = ""
    for p in parts:
        text += f"[{p}]" if p.isdigit() else (f".{p}" if text else p)
    return text or "body"


def describe_validation(exc: RequestValidationError) -> list[str]:
    """Each pydantic finding as one sentence: ``variants[1].weight: Input should be a valid number``."""
    problems = []
    for e in exc.errors():
        kind = e.get("type", "")
        if kind == "json_invalid":
            reason = (e.get("ctx") or {}).get("error", "")
            problems.append(f"The request body is not valid JSON ({reason}).")
            continue
        loc = tuple(e.get("loc", ()))
        where = _location(loc)
        if loc and loc[0] == "query":
            where = f"query parameter {_location(loc[1:])}"
        elif loc and loc[0] == "path":
            where = f"path parameter {_location(loc[1:])}"
        problems.append(f"{where}: {e.get('msg', 'invalid')}")
    return problems


def _route_table(app: Any) -> list[tuple[str, set[str]]]:
    """(path, methods) of every route of ``app``, those of included routers too."""
    try:  # FastAPI >= 0.16x keeps included routers as one entry each
        from fastapi.routing import iter_route_contexts

        routes: list[Any] = list(iter_route_contexts(app.router.routes))
    except ImportError:
        routes = list(app.router.routes)
    return [(route.path, set(route.methods)) for route in routes if getattr(route, "methods", None) and route.path]


def allowed_methods(app: Any, scope: dict[str, Any]) -> list[str]:
    """Every method some route of ``app`` answers on the request's path (sorted): the ``Allow`` of a 405.

    Starlette names only the methods of the first route whose path matched; a path served by several routes
    (``GET`` and ``POST /api/v1/experiments``) needs them all.
    """
    root = scope.get("app_root_path", scope.get("root_path", ""))  # a Mount moved root_path: the app's own
    path = scope["path"][len(root):] if scope["path"].startswith(root) else scope["path"]
    probe = {**scope, "type": "http", "path": path, "root_path": ""}
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles) and route.matches(probe)[0] != Match.NONE:
            methods.update(("GET", "HEAD"))
    for template, route_methods in _route_table(app):
        if compile_path(template)[0].match(path):
            methods.update(route_methods)
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = describe_validation(exc)
        return error(422, "Invalid request: " + " ".join(problems), problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):  # FastAPI: body not decodable
            problem = "The request body is not valid JSON (it could not be decoded as UTF-8 JSON text)."
            return error(422, "Invalid request: " + problem, [problem])
        if exc.status_code == 405:
            allowed = allowed_methods(request.app, request.scope)
            return error(405, f"{request.method} is not allowed on {request.url.path}; it answers {', '.join(allowed)}.",
                         headers={"Allow": ", ".join(allowed)})
        return error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(AbcoreError)
    async def _abcore(_request: Request, exc: AbcoreError) -> JSONResponse:
        return abcore_error_response(exc)

    @app.exception_handler(DataError)
    async def _data(_request: Request, exc: DataError) -> JSONResponse:
        return error(422, f"The store refused a value: {str(exc.orig).splitlines()[0] if exc.orig else exc}")

    @app.exception_handler(SQLAlchemyError)
    async def _store(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        if isinstance(exc, OperationalError):
            logger.warning("abcore.api: store unavailable: %s", exc)
            return error(503, "The store is unavailable; retry later.", headers={"Retry-After": "1"})
        logger.exception("abcore.api: store error")
        return error(503, "The store could not complete the request; retry later.", headers={"Retry-After": "1"})
