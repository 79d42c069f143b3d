"""The store the docs examples run against: a migrated SQLite file with the demo data, built once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite store with the demo data, built once; each page gets a copy."""
    path = tmp_path_factory.mktemp("docs-store") / "abcore.db"
    env = {**os.environ, "ABCORE_DATABASE_URL": f"sqlite:///{path}", "PYTHONPATH": str(ROOT)}
    for args in (["init"], ["demo", "--quiet"]):
        subprocess.run([sys.executable, "-m", "abcore", *args], env=env, check=True, capture_output=True, timeout=300)
    return path
