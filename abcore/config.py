"""Settings: where the database lives.

The database URL comes from ``ABCORE_DATABASE_URL``; without it abcore uses the
SQLite file ``data/abcore.db`` in the project root (the folder holding
``pyproject.toml``), whatever the current working directory is.
"""

from __future__ import annotations

import os
from pathlib import Path

DATABASE_URL_ENV = "ABCORE_DATABASE_URL"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE_PATH = PROJECT_ROOT / "data" / "abcore.db"


def default_database_url() -> str:
    """The embedded SQLite default: ``sqlite:///<project>/data/abcore.db`` (absolute path)."""
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


def database_url() -> str:
    """The database URL in force: ``$ABCORE_DATABASE_URL`` if set and non-empty, else the default."""
    return os.environ.get(DATABASE_URL_ENV, "").strip() or default_database_url()


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to show in the UI or logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given, it has no password part we know of
        return url
