"""Gateway helper: assign the request's user and answer with experiment headers.

A recommendation gateway routes every ``/recommend/<user_id>`` through an experiment and sets the
response headers ``X-Experiment-Id`` (the experiment's name) and ``X-Experiment-Variant`` (the
variant's name). Two ways to get that from abcore in any ASGI / FastAPI service:

As ASGI middleware (every matching request; the assignment is in ``request.state.abcore_assignment``)::

    from fastapi import FastAPI, Request
    from abcore.api.gateway import ExperimentHeaders, user_from_path

    app = FastAPI()
    app.add_middleware(ExperimentHeaders, experiment="als_vs_popgen", user_id=user_from_path("/recommend/"))

    @app.get("/recommend/{user_id}")
    def recommend(user_id: str, request: Request) -> dict:
        a = request.state.abcore_assignment          # abcore.assign.Assignment | None
        model = a.variant_name if a else "als_model"  # None: serve the default
        return {"user_id": user_id, "model": model}

As a FastAPI dependency (only the routes that ask for it)::

    from typing import Annotated
    from fastapi import Depends
    from abcore.api.gateway import experiment_assignment
    from abcore.assign import Assignment

    als_vs_popgen = experiment_assignment("als_vs_popgen")  # user id: path parameter user_id, else X-User-Id

    @app.get("/v2/recommend/{user_id}")
    def recommend_v2(user_id: str, a: Annotated[Assignment | None, Depends(als_vs_popgen)]) -> dict:
        ...

Both call :meth:`abcore.assign.Assigner.assign` (sticky, exposure recorded, bounded time, None on
any store trouble) on the process-wide default assigner unless given one. When the user is not
assigned (no user id, experiment not running, excluded by targeting or traffic share) no header is set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from abcore.assign import Assigner, Assignment, default_assigner
from abcore.assign.definitions import answers_at_once

EXPERIMENT_HEADER = "X-Experiment-Id"
VARIANT_HEADER = "X-Experiment-Variant"
USER_HEADER = "X-User-Id"
STATE_KEY = "abcore_assignment"

UserIdFrom = Callable[[Request], str | None]
AttributesFrom = Callable[[Request], Mapping[str, Any] | None]


def experiment_headers(assignment: Assignment | None) -> dict[str, str]:
    """``{"X-Experiment-Id": name, "X-Experiment-Variant": variant}`` for an assignment, ``{}`` for None.

    Names that are not printable ASCII are percent-encoded (UTF-8), as header values must be ASCII.
    """
    if assignment is None:
        return {}
    return {EXPERIMENT_HEADER: _header_value(assignment.experiment_name), VARIANT_HEADER: _header_value(assignment.variant_name)}


def _header_value(text: str) -> str:
    if text.isascii() and text.isprintable():
        return text
    return quote(text, safe="")


def user_from_header(name: str = USER_HEADER) -> UserIdFrom:
    """Read the user id from the request header ``name`` (default ``X-User-Id``)."""

    def read(request: Request) -> str | None:
        return request.headers.get(name) or None

    return read


def user_from_path(prefix: str) -> UserIdFrom:
    """Read the user id from the path segment after ``prefix`` (``user_from_path("/recommend/")``).

    Middleware runs before routing, so path parameters are not known yet; this reads the raw path.
    """

    def read(request: Request) -> str | None:
        path = request.url.path
        if not path.startswith(prefix):
            return None
        rest = path[len(prefix):].split("/", 1)[0]
        return rest or None

    return read


def _default_user(request: Request) -> str | None:
    return request.path_params.get("user_id") or request.headers.get(USER_HEADER) or None


class ExperimentHeaders:
    """ASGI middleware: assign each request's user to ``experiment`` and add the experiment headers.

    ``user_id`` extracts the user id from the request (default: the ``X-User-Id`` header); requests
    without one pass through untouched. The assignment (or None) is put in ``scope["state"]`` as
    ``abcore_assignment`` (``request.state.abcore_assignment`` in the app).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        experiment: str | int | None,
        user_id: UserIdFrom | None = None,
        attributes: AttributesFrom | None = None,
        assigner: Assigner | None = None,
        expose: bool = True,
    ) -> None:
        self.app = app
        self.experiment = experiment
        self.user_id = user_id or user_from_header()
        self.attributes = attributes
        self.assigner = assigner
        self.expose = expose

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        user = self.user_id(request)
        answer: Assignment | None = None
        if user:
            attributes = self.attributes(request) if self.attributes else None
            assigner = self.assigner or default_assigner()
            if answers_at_once(assigner, user, self.experiment, attributes):  # from memory: no thread needed
                answer = assigner.assign(user, self.experiment, attributes=attributes, expose=self.expose)
            else:
                answer = await anyio.to_thread.run_sync(
                    lambda: assigner.assign(user, self.experiment, attributes=attributes, expose=self.expose)
                )
        scope.setdefault("state", {})[STATE_KEY] = answer
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in experiment_headers(answer).items()]
        if not headers:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def experiment_assignment(
    experiment: str | int | None,
    *,
    user_id: UserIdFrom | None = None,
    attributes: AttributesFrom | None = None,
    assigner: Assigner | None = None,
    expose: bool = True,
) -> Callable[[Request, Response], Assignment | None]:
    """A FastAPI dependency returning the request user's :class:`~abcore.assign.Assignment` (or None)
    and setting ``X-Experiment-Id`` / ``X-Experiment-Variant`` on the response.

    ``user_id`` defaults to the path parameter ``user_id``, else the ``X-User-Id`` header.
    """
    read_user = user_id or _default_user

    def dependency(request: Request, response: Response) -> Assignment | None:
        user = read_user(request)
        if not user:
            return None
        client = assigner or default_assigner()
        answer = client.assign(
            user, experiment, attributes=attributes(request) if attributes else None, expose=expose
        )
        for name, value in experiment_headers(answer).items():
            response.headers[name] = value
        return answer

    return dependency
