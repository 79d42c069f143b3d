"""Errors of the HTTP API: every one is JSON ``{"detail": "<words>", "problems": [...]}``.

abcore's own exceptions map to status codes here, once, so endpoints just call the library:
:class:`~abcore.experiments.errors.ExperimentNotFound` -> 404, :class:`~abcore.experiments.errors.InvalidTransition`
-> 409, any other :class:`~abcore.experiments.errors.ExperimentError` / :class:`~abcore.io.csv_export.ExportError`
-> 422 (listing every problem), request validation -> 422 in words, a store that cannot be
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

from abcore.api.schemas import ErrorBody
from abcore.experiments.errors import ExperimentError, ExperimentNotFound, InvalidTransition
from abcore.io.csv_export import ExportError

logger = logging.getLogger("abcore.api")

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


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = describe_validation(exc)
        return error(422, "Invalid request: " + " ".join(problems), problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):  # FastAPI: body not decodable
            problem = "The request body is not valid JSON (it could not be decoded as UTF-8 JSON text)."
            return error(422, "Invalid request: " + problem, [problem])
        return error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(ExperimentError)
    async def _experiment(_request: Request, exc: ExperimentError) -> JSONResponse:
        if isinstance(exc, ExperimentNotFound):
            return error(404, str(exc))
        if isinstance(exc, InvalidTransition):
            return error(409, str(exc))
        return error(422, str(exc), exc.problems)

    @app.exception_handler(ExportError)
    async def _export(_request: Request, exc: ExportError) -> JSONResponse:
        return error(422, str(exc), [str(exc)])

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
