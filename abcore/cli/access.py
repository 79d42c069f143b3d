"""``abcore hash-password`` and ``abcore api-key``: dashboard passwords and API keys."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from abcore.cli.common import CliError, new_session, open_store, parse_non_negative, text_table


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Print the salted hash of a password read from a prompt (twice) or from stdin's first line."""
    from abcore.access.users import hash_password

    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise CliError("the passwords do not match")
    if not password:
        raise CliError("the password must not be empty")
    print(hash_password(password))
    return 0


def cmd_api_key(args: argparse.Namespace) -> int:
    """Create (and print once), revoke or list API keys."""
    from abcore.access.api_keys import create_api_key, revoke_api_key

    engine = open_store(args)
    with new_session(engine) as session:
        if args.key_command == "create":
            info, key = create_api_key(session=session, name=args.name, role=args.role, rate_limit=args.rate_limit)
            print(key)
            print(f"Created API key {info.name!r} ({info.role}). It is shown only this once: store it now.", file=sys.stderr)
        elif args.key_command == "revoke":
            info = revoke_api_key(session=session, name=args.name)
            print(f"Revoked API key {info.name!r} ({info.prefix}...).")
        else:
            _print_keys(session, as_json=args.json)
    return 0


def _print_keys(session: Any, *, as_json: bool) -> None:
    from abcore.access.api_keys import list_api_keys

    keys = list_api_keys(session=session)
    if as_json:
        print(json.dumps([
            {"name": k.name, "role": k.role, "prefix": k.prefix, "rate_limit": k.rate_limit,
             "created_at": k.created_at.isoformat(), "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}
            for k in keys
        ], indent=2, ensure_ascii=False))
    elif not keys:
        print("No API keys.")
    else:
        rows = [(k.name, k.role, k.prefix + "...", "default" if k.rate_limit is None else f"{k.rate_limit:g}/s",
                 k.created_at.strftime("%Y-%m-%d %H:%M"), "revoked" if k.revoked_at else "active") for k in keys]
        print(text_table(("name", "role", "key", "rate limit", "created (UTC)", "status"), rows))


def add_password_command(commands: Any) -> None:
    """Add ``hash-password`` to the ``commands`` subparsers."""
    hp = commands.add_parser(
        "hash-password",
        help="prompt for a password and print its salted hash (for secrets.toml / $ABCORE_USERS)",
    )
    hp.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin, no prompt")
    hp.set_defaults(handler=cmd_hash_password)


def add_key_commands(commands: Any) -> None:
    """Add ``api-key create|list|revoke`` to the ``commands`` subparsers."""
    keys = commands.add_parser("api-key", help="create, list or revoke API keys of the HTTP API")
    key_commands = keys.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    kc = key_commands.add_parser("create", help="create a key and print it (shown only once; stored hashed)")
    kc.add_argument("name", metavar="NAME", help="the key's name (recorded as actor in the audit log)")
    kc.add_argument("--role", choices=("viewer", "editor", "service"), required=True,
                    help="viewer: read; editor: read, manage, assign and track; service: assign and track only")
    kc.add_argument("--rate-limit", type=parse_non_negative, default=None, metavar="PER_SECOND",
                    help="this key's requests per second (default: the server's; 0: unlimited)")
    kl = key_commands.add_parser("list", help="list keys (name, role, key prefix, status); never the keys")
    kl.add_argument("--json", action="store_true", help="print JSON instead of a table")
    kr = key_commands.add_parser("revoke", help="revoke a key (requests with it get 401 within 5 s)")
    kr.add_argument("name", metavar="NAME")
    keys.set_defaults(handler=cmd_api_key)
