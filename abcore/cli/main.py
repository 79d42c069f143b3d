"""Command-line interface: ``abcore`` / ``python -m abcore``.

Exit codes: 0 success; 1 an expected error (unknown experiment, transition not
allowed, bad file, unreachable database ...) reported as one line on stderr,
never a traceback; 2 a usage error (argparse); 130 interrupted.
Long work (export, import) shows a progress line on stderr when it is a terminal.

Each command group lives in its own module (:mod:`abcore.cli.experiments`, :mod:`abcore.cli.analysis`,
:mod:`abcore.cli.io`, :mod:`abcore.cli.layers`, :mod:`abcore.cli.metrics`, :mod:`abcore.cli.access`, :mod:`abcore.cli.servers`,
:mod:`abcore.cli.store`) and adds its own subcommands; this module assembles them and maps errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from abcore.cli import access, analysis, experiments, interleaving, io, layers, metrics, servers, store
from abcore.cli.analysis import CORRECTIONS, METHODS
from abcore.cli.common import CliError, Progress, first_line
from abcore.config import database_url
from abcore.errors import AbcoreError

__all__ = ["CORRECTIONS", "METHODS", "CliError", "Progress", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``abcore`` parser: the global ``--database-url`` and every command group's subcommands."""
    parser = argparse.ArgumentParser(
        prog="abcore",
        description="abcore experimentation platform",
        epilog="Exit codes: 0 ok, 1 error (one line on stderr), 2 usage error.",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="database URL (default: $ABCORE_DATABASE_URL or <project>/data/abcore.db)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    store.add_commands(commands)
    experiments.add_commands(commands)
    layers.add_commands(commands)
    analysis.add_commands(commands)
    interleaving.add_commands(commands)
    io.add_commands(commands)
    servers.add_watch_command(commands)
    metrics.add_commands(commands)
    access.add_password_command(commands)
    servers.add_server_commands(commands)
    access.add_key_commands(commands)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The errors that end a command with exit code 1 and one line: abcore's own (:mod:`abcore.errors`) and
    a store that refused a value or could not be reached."""
    from sqlalchemy.exc import DataError, OperationalError

    return (AbcoreError, OperationalError, DataError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    args.database_url = args.database_url or database_url()
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `abcore export ... -o - | head`
        sys.stderr.close()
        return 0
    except Exception as exc:
        if isinstance(exc, _expected_errors()):
            print(f"error: {first_line(exc)}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
