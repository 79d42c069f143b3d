"""abcore's HTTP API (FastAPI): for services that are not written in Python.

``abcore api`` serves it (uvicorn); ``create_app(engine)`` builds it for tests or for mounting in
another ASGI app. The endpoints call the same functions as the dashboard (``abcore.experiments.lifecycle``,
``abcore.assign``, ``abcore.analysis.pipeline``, ``abcore.analysis.overview``, ``abcore.io.csv_export``); see the
docs site's "Services over HTTP" guide. ``abcore.api.gateway`` holds the gateway helper (experiment response headers).
"""

from __future__ import annotations

from abcore.api.app import BodySizeLimit, create_app
from abcore.api.deps import ApiSettings

__all__ = ["ApiSettings", "BodySizeLimit", "create_app"]
