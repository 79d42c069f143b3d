"""``abcore api-key create|list|revoke`` and ``abcore api`` refusing a store it cannot serve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select

from abcore.access.api_keys import hash_key, verify_api_key
from abcore.cli.main import main
from abcore.store.db import make_engine
from abcore.store.tables import ApiKey


def test_create_prints_the_key_once_and_stores_only_its_hash(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database-url", sqlite_url, "api-key", "create", "recommender", "--role", "service",
                 "--rate-limit", "250"]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("abk_") and len(key) == 47 and "shown only this once" in out.err
    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        row = session.exec(select(ApiKey)).one()
        assert row.key_hash == hash_key(key) and key not in (row.key_hash, row.prefix) and key.startswith(row.prefix)
        assert (row.role, row.rate_limit) == ("service", 250.0)
        assert verify_api_key(session=session, key=key).name == "recommender"  # type: ignore[union-attr]

    assert main(["--database-url", sqlite_url, "api-key", "create", "recommender", "--role", "viewer"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["--database-url", sqlite_url, "api-key", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["name"], k["role"], k["revoked_at"]) for k in listed] == [("recommender", "service", None)]
    assert key not in json.dumps(listed)

    assert main(["--database-url", sqlite_url, "api-key", "revoke", "recommender"]) == 0
    assert "Revoked" in capsys.readouterr().out
    with Session(engine) as session:
        assert verify_api_key(session=session, key=key) is None
    assert main(["--database-url", sqlite_url, "api-key", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["--database-url", sqlite_url, "api-key", "revoke", "nobody"]) == 1
    assert "No API key named 'nobody'" in capsys.readouterr().err
    engine.dispose()


def test_bad_arguments_are_usage_errors(sqlite_url: str) -> None:
    for argv in (["api-key", "create", "x", "--role", "admin"], ["api-key", "create", "x"],
                 ["api-key", "create", "x", "--role", "viewer", "--rate-limit", "-1"], ["api", "--port", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["--database-url", sqlite_url, *argv])
        assert exit_info.value.code == 2


def test_api_refuses_a_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database-url", f"sqlite:///{tmp_path / 'missing.db'}", "api"]) == 1
    assert "run `abcore init`" in capsys.readouterr().err
