"""abcore.access.users: salted hashes, user configuration, roles, open mode."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest

from abcore.access import users as auth
from abcore.access.users import (
    AuthConfigError,
    User,
    authenticate,
    can_edit,
    hash_password,
    load_users,
    verify_password,
)
from abcore.cli.main import main


@pytest.fixture(scope="module")
def alice_hash() -> str:
    return hash_password("s3cret, with ünïcode")


def test_hash_is_salted_scrypt_and_verifies(alice_hash: str) -> None:
    scheme, n, r, p, salt, digest = alice_hash.split("$")
    assert (scheme, n, r, p) == ("scrypt", "131072", "8", "1")  # OWASP minimum: N=2**17, r=8, p=1
    assert len(base64.b64decode(salt)) == 16
    # Independent recomputation with hashlib directly (RFC 7914 scrypt).
    expected = hashlib.scrypt(
        "s3cret, with ünïcode".encode(), salt=base64.b64decode(salt), n=131072, r=8, p=1, dklen=32, maxmem=256 * 1024 * 1024
    )
    assert base64.b64decode(digest) == expected
    assert "s3cret" not in alice_hash
    assert verify_password("s3cret, with ünïcode", alice_hash)
    assert not verify_password("s3cret, with unicode", alice_hash)
    assert not verify_password("", alice_hash)
    # A fresh salt per call: same password, different strings, both valid.
    other = hash_password("s3cret, with ünïcode")
    assert other != alice_hash and verify_password("s3cret, with ünïcode", other)


def test_pbkdf2_hashes_verify() -> None:  # 600,000 iterations: the cost floor (OWASP)
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"pw", salt, 600_000)
    encoded = f"pbkdf2_sha256$600000${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password("pw", encoded)
    assert not verify_password("pW", encoded)


def test_empty_password_is_refused() -> None:
    with pytest.raises(ValueError):
        hash_password("")


@pytest.mark.parametrize("bad", ["", "plain", "scrypt$1$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!$AAAA", "md5$x$y"])
def test_malformed_hash_never_verifies(bad: str) -> None:
    assert not verify_password("plain", bad)
    assert not auth.is_valid_hash(bad)


def test_load_users_from_secrets_and_env(alice_hash: str) -> None:
    secrets = {"abcore": {"users": {"alice": {"password_hash": alice_hash, "role": "editor"}}}}
    env = {"ABCORE_USERS": json.dumps({"bob": {"password_hash": alice_hash, "role": "viewer"}})}
    users = load_users(secrets, env=env)
    assert set(users) == {"alice", "bob"}
    assert users["alice"] == User("alice", "editor", alice_hash)
    assert users["bob"].role == "viewer"
    assert alice_hash not in repr(users["alice"])
    # The environment wins for a name configured in both places.
    env = {"ABCORE_USERS": json.dumps({"alice": {"password_hash": alice_hash, "role": "viewer"}})}
    assert load_users(secrets, env=env)["alice"].role == "viewer"


def test_load_users_reads_secrets_toml(tmp_path, monkeypatch, alice_hash: str) -> None:
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(
        f'[abcore.users.carol]\npassword_hash = "{alice_hash}"\nrole = "viewer"\n', encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    users = load_users(env={})
    assert list(users) == ["carol"] and users["carol"].role == "viewer"


def test_no_users_is_open_mode() -> None:
    users = load_users({}, env={})
    assert users == {}
    assert not auth.auth_required(users)
    assert can_edit(None, users)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"password": "hunter2", "role": "editor"}, "plain-text 'password'"),
        ({"role": "editor"}, "no password_hash"),
        ({"password_hash": "hunter2", "role": "editor"}, "not a hash"),
        ({"password_hash": "HASH", "role": "admin"}, "role 'admin'"),
        ({"password_hash": "HASH"}, "role None"),
        ({"password_hash": "HASH", "role": "editor", "email": "x"}, "unknown key"),
        ("just-a-string", "must be a table"),
    ],
)
def test_malformed_user_config_is_refused(entry: object, message: str, alice_hash: str) -> None:
    if isinstance(entry, dict) and entry.get("password_hash") == "HASH":
        entry = {**entry, "password_hash": alice_hash}
    with pytest.raises(AuthConfigError, match=message):
        load_users({"abcore": {"users": {"dave": entry}}}, env={})
    with pytest.raises(AuthConfigError, match=message):
        load_users({}, env={"ABCORE_USERS": json.dumps({"dave": entry})})


def test_bad_env_json_is_refused() -> None:
    with pytest.raises(AuthConfigError, match="not valid JSON"):
        load_users({}, env={"ABCORE_USERS": "{nope"})


def test_authenticate_and_roles(alice_hash: str) -> None:
    users = {
        "alice": User("alice", "editor", alice_hash),
        "bob": User("bob", "viewer", alice_hash),
    }
    assert auth.auth_required(users)
    alice = authenticate(users, "alice", "s3cret, with ünïcode")
    assert alice is users["alice"]
    assert authenticate(users, "alice", "wrong") is None
    assert authenticate(users, "nobody", "s3cret, with ünïcode") is None
    bob = authenticate(users, "bob", "s3cret, with ünïcode")
    assert bob is not None
    assert can_edit(alice, users)
    assert not can_edit(bob, users)
    assert not can_edit(None, users)
    # A user removed from (or demoted in) the configuration loses edit rights at once.
    assert not can_edit(alice, {"bob": users["bob"]})
    assert not can_edit(alice, {"alice": User("alice", "viewer", alice_hash)})


def test_cli_hash_password_prompts(monkeypatch, capsys) -> None:
    answers = iter(["correct horse", "correct horse"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["hash-password"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("scrypt$") and verify_password("correct horse", printed)


def test_cli_hash_password_mismatch_and_stdin(monkeypatch, capsys) -> None:
    answers = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["hash-password"]) == 1
    assert "do not match" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin\n"))
    assert main(["hash-password", "--stdin"]) == 0
    assert verify_password("from-stdin", capsys.readouterr().out.strip())
