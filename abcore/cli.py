"""Command-line interface: ``abcore`` / ``python -m abcore``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from abcore.config import database_url, redact_url
from abcore.db import init_db, make_engine


def _cmd_init(args: argparse.Namespace) -> int:
    init_db(make_engine(args.database_url))
    print(f"Database at {redact_url(args.database_url)} is at the newest schema.")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from abcore.demo import load_demo_data, store_is_empty

    engine = init_db(make_engine(args.database_url))
    if args.if_empty and not store_is_empty(engine):
        print("The store already holds experiments; demo data not loaded.")
        return 0
    summary = load_demo_data(engine, seed=args.seed, progress=not args.quiet)
    print(summary)
    return 0


def _cmd_hash_password(args: argparse.Namespace) -> int:
    from abcore.auth import hash_password

    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            print("error: the passwords do not match", file=sys.stderr)
            return 1
    if not password:
        print("error: the password must not be empty", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="abcore", description="abcore experimentation platform")
    parser.add_argument(
        "--database-url",
        default=None,
        help="database URL (default: $ABCORE_DATABASE_URL or <project>/data/abcore.db)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create or migrate the database to the newest schema")
    init.set_defaults(handler=_cmd_init)

    demo = commands.add_parser("demo", help="load the demo data set (models, experiments, simulated users)")
    demo.add_argument("--if-empty", action="store_true", help="only when the store holds no experiment yet")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulation (default 7)")
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.set_defaults(handler=_cmd_demo)

    hp = commands.add_parser(
        "hash-password",
        help="prompt for a password and print its salted hash (for secrets.toml / $ABCORE_USERS)",
    )
    hp.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin, no prompt")
    hp.set_defaults(handler=_cmd_hash_password)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.database_url = args.database_url or database_url()
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
