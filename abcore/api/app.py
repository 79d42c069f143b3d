"""The FastAPI application: :func:`create_app`, the body size limit, health.

``abcore api`` serves :func:`serve_app` (``create_app()`` tuned for a server process) with uvicorn, as a
factory, so every worker builds its own engine and assigner after the fork. Tests build it with their own engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from abcore import __version__
from abcore.api import docs_ui, errors
from abcore.api.data_plane import DataPlane
from abcore.api.deps import ApiSettings, ApiState, no_unknown_query
from abcore.api.experiments import router as experiments_router
from abcore.api.interleaving import router as interleaving_router
from abcore.api.layers import router as layers_router
from abcore.api.schemas import ErrorBody, Health
from abcore.api.tracking import assign as assign_endpoint
from abcore.api.tracking import router as tracking_router
from abcore.assign import Assigner

DESCRIPTION = """\
HTTP API of abcore for services that are not written in Python: manage experiments, assign users,
record conversions, read metrics and results. Send an API key as `Authorization: Bearer <key>`
(`abcore api-key create NAME --role viewer|editor|service`). Errors are JSON
`{"detail": "...", "problems": [...]}`.
"""


class BodySizeLimit:
    """ASGI middleware: a request body larger than ``max_bytes`` gets 413 before the app parses it.

    Checks ``Content-Length`` first (the server delivers no more than a declared length), and counts the bytes
    of bodies sent without one (chunked).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {"detail": f"The request body is larger than the limit of {self.max_bytes:,} bytes.", "problems": []}
        ).encode()
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        })
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                if declared is not None and declared > self.max_bytes:
                    await self._reject(send)
                    return
        # A declared length within the limit is enforced by the HTTP server's framing: no need to count.
        if declared is not None or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._reject(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _lifespan(state: ApiState, *, freeze_gc: bool) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: definitions reloaded in the background while it serves, the GC frozen at start when
    ``freeze_gc``; at shutdown the assigner closed (or flushed, when the caller owns it) and the engine disposed
    (when the app owns it)."""
    assigner = state.assigner

    async def keep_definitions_fresh() -> None:
        # Reload ahead of expiry so that no request waits for a reload: the data plane answers from memory.
        while True:
            await asyncio.sleep(max(assigner.cache_ttl / 2, 0.1))
            with contextlib.suppress(Exception):  # store trouble: requests fall back to the assigner's own rules
                await anyio.to_thread.run_sync(assigner.refresh)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        refresher = asyncio.get_running_loop().create_task(keep_definitions_fresh())
        if freeze_gc:
            # The imported stack (FastAPI, pydantic, SQLAlchemy, numpy, scipy) is ~130,000 objects that live as
            # long as the process: scanning them made each full collection a 60-90 ms pause of every request.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            refresher.cancel()
            if state.owns_assigner:
                state.assigner.close()
            else:
                state.assigner.flush()
            if state.owns_engine:
                state.engine.dispose()

    return lifespan


def create_app(
    engine: Engine | str | None = None,
    *,
    settings: ApiSettings | None = None,
    assigner: Assigner | None = None,
    freeze_gc: bool = False,
) -> FastAPI:
    """The HTTP API over the store at ``engine`` (an engine, a URL, or None: ``$ABCORE_DATABASE_URL``).

    The app owns (and disposes at shutdown) an engine it built from a URL, and the
    :class:`~abcore.assign.Assigner` it built (flushed at shutdown). ``settings`` default to
    :meth:`ApiSettings.from_env`. ``freeze_gc``: at startup, move every object alive then out of the
    garbage collector's reach (:func:`gc.freeze`), as :func:`serve_app` does for the server process.
    """
    from abcore.store.db import make_engine

    settings = settings or ApiSettings.from_env()
    owns_engine = not isinstance(engine, Engine)
    bound = make_engine(engine) if owns_engine else engine  # type: ignore[arg-type]
    owns_assigner = assigner is None
    # cache_ttl 1 s: a status change made through any worker reaches every worker's assigner within a second.
    assigner = assigner or Assigner(bound, cache_ttl=1.0)
    state = ApiState(engine=bound, assigner=assigner, settings=settings, owns_engine=owns_engine, owns_assigner=owns_assigner)

    app = FastAPI(
        title="abcore HTTP API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(state, freeze_gc=freeze_gc),
        dependencies=[Depends(no_unknown_query)],
        docs_url=None,
        redoc_url=None,
    )
    app.state.abcore = state
    errors.install(app)
    # Routes are matched in order: the data plane (assign, events) first, so its requests are routed soonest.
    app.include_router(tracking_router)
    docs_ui.install(app)
    app.include_router(interleaving_router)
    app.include_router(experiments_router)
    app.include_router(layers_router)

    @app.get(
        "/api/v1/health",
        response_model=Health,
        responses={code: {"model": ErrorBody, "description": text} for code, text in
                   ((422, "Unknown query parameter"), (503, "The store is unavailable"))},
        tags=["health"],
        summary="Liveness and store reachability (no key needed)",
    )
    def health() -> Any:
        try:
            with bound.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure means: not healthy
            return JSONResponse({"detail": "The store is unavailable.", "problems": []}, status_code=503)
        return {"status": "ok", "version": __version__}

    # The data plane's hottest route skips FastAPI's router (same endpoint, same error handlers); inside the body limit.
    app.add_middleware(DataPlane, fastapi=app, method="POST", path="/api/v1/assign", endpoint=assign_endpoint)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app


#: How long (seconds) a thread may hold the interpreter lock while another waits for it, in the server process:
#: 1 ms instead of Python's 5 ms, so that the event loop answering requests waits at most ~1 ms whenever the
#: assigner's writer thread holds the lock (p99 of assign at 64 connections: 17-24 ms instead of 17-54 ms).
SERVER_SWITCH_INTERVAL = 0.001


def serve_app() -> FastAPI:
    """The app ``abcore api`` serves in each worker process: :func:`create_app` over ``$ABCORE_DATABASE_URL``,
    tuned for a process that does nothing else: the objects of its startup frozen out of the garbage
    collector (``freeze_gc``: a full collection takes microseconds instead of pausing every open request for
    60-90 ms), and the interpreter lock handed over every :data:`SERVER_SWITCH_INTERVAL` seconds."""
    sys.setswitchinterval(SERVER_SWITCH_INTERVAL)
    return create_app(freeze_gc=True)
