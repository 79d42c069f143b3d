"""The data plane's short path: ``POST /api/v1/assign`` answered without FastAPI's router.

A recommender calls ``assign`` once per request it serves, so its cost is the server's cost. FastAPI's
routing, dependency stack and exception middleware take about as long as the assignment itself
(tens of microseconds). :class:`DataPlane` sits in the middleware stack (inside the body size limit and
the server-error handler), recognises that one route by method and path, and calls its endpoint directly;
every other request goes on to FastAPI unchanged. The endpoint is the same function the FastAPI route
declares (so the OpenAPI document describes what answers), and an exception it raises is answered by the
app's own exception handlers, so every error has the same status and body as on any other route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class DataPlane:
    """ASGI middleware: ``method path`` (under the app's root path) goes straight to ``endpoint``."""

    def __init__(self, app: ASGIApp, *, fastapi: FastAPI, method: str, path: str, endpoint: Endpoint) -> None:
        self.app = app
        self.fastapi = fastapi
        self.method = method
        self.path = path
        self.endpoint = endpoint

    def _is_mine(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != self.method:
            return False
        path: str = scope["path"]
        if path == self.path:
            return True
        root: str = scope.get("root_path", "")
        return bool(root) and path.startswith(root) and path[len(root):] == self.path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._is_mine(scope):
            await self.app(scope, receive, send)
            return
        scope["app"] = self.fastapi
        request = Request(scope, receive)
        try:
            response = await self.endpoint(request)
        except Exception as exc:
            response = await self._answer(request, exc)
        await response(scope, receive, send)

    async def _answer(self, request: Request, exc: Exception) -> Response:
        """The app's handler for ``exc`` (the nearest class in its MRO), as FastAPI's exception middleware
        picks it; an exception no handler takes goes up to the server-error handler (500)."""
        handlers = self.fastapi.exception_handlers
        for kind in type(exc).__mro__:
            handler = handlers.get(kind)
            if handler is not None:
                return await handler(request, exc)  # type: ignore[misc,no-any-return]
        raise exc
