"""``abcore init`` and ``abcore demo``: create or migrate the store, load the demo data set."""

from __future__ import annotations

import argparse
from typing import Any

from abcore.config import redact_url
from abcore.store.db import init_db, make_engine


def cmd_init(args: argparse.Namespace) -> int:
    """Create the database, or migrate it to the newest schema."""
    init_db(make_engine(args.database_url))
    print(f"Database at {redact_url(args.database_url)} is at the newest schema.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Load the demo data set (with ``--if-empty``: only into a store without experiments)."""
    from abcore.demo import load_demo_data, store_is_empty

    engine = init_db(make_engine(args.database_url))
    if args.if_empty and not store_is_empty(engine):
        print("The store already holds experiments; demo data not loaded.")
        return 0
    summary = load_demo_data(engine, seed=args.seed, progress=not args.quiet)
    print(summary)
    return 0


def add_commands(commands: Any) -> None:
    """Add ``init`` and ``demo`` to the ``commands`` subparsers."""
    init = commands.add_parser("init", help="create or migrate the database to the newest schema")
    init.set_defaults(handler=cmd_init)

    demo = commands.add_parser("demo", help="load the demo data set (models, experiments, simulated users)")
    demo.add_argument("--if-empty", action="store_true", help="only when the store holds no experiment yet")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulation (default 7)")
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.set_defaults(handler=cmd_demo)
