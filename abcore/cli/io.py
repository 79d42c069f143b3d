"""``abcore export``, ``abcore import-events`` and ``abcore config import|export``: files in and out."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from abcore.cli.analysis import add_analysis_options, analyze_options
from abcore.cli.common import (
    CliError,
    Progress,
    add_actor,
    new_session,
    open_store,
    parse_positive_int,
    show_progress,
    write_file,
)


def cmd_export(args: argparse.Namespace) -> int:
    """Stream one experiment's results, assignments or events to a CSV file or stdout."""
    from abcore.io.csv_export import write_csv

    engine = open_store(args)
    progress = Progress(f"exporting {args.what}", enabled=show_progress(args) and args.output != "-")
    analyze_kwargs = analyze_options(args) if args.what == "results" else None
    try:
        if args.output == "-":
            rows = write_csv(
                engine=engine, experiment=args.experiment, what=args.what, path=sys.stdout,
                chunk_size=args.chunk_size, analyze_kwargs=analyze_kwargs, mode=args.csv_mode,
            )
        else:
            try:
                rows = write_csv(
                    engine=engine, experiment=args.experiment, what=args.what, path=args.output,
                    chunk_size=args.chunk_size, progress=progress.update, analyze_kwargs=analyze_kwargs,
                    mode=args.csv_mode,
                )
            except OSError as exc:
                raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    finally:
        progress.close()
    if args.output != "-":
        print(f"Wrote {rows:,} {args.what} rows to {args.output}")
    return 0


def cmd_import_events(args: argparse.Namespace) -> int:
    """Import an event log; bad lines go to stderr, the summary to stdout (exit 1 with --strict and bad lines)."""
    from abcore.io.event_import import import_events

    engine = open_store(args)
    progress = Progress("importing", enabled=show_progress(args))

    def report(records: int, done: int, total: int) -> None:
        progress.update(records, done / total if total else 1.0)

    try:
        summary = import_events(
            engine=engine, path=args.file, format=args.format, batch_size=args.batch_size, progress=report
        )
    finally:
        progress.close()
    for bad in summary.bad_lines[: args.show_bad]:
        print(f"{args.file}:{bad.line}: {bad.reason}", file=sys.stderr)
    hidden = summary.bad - min(len(summary.bad_lines), args.show_bad)
    if hidden > 0:
        print(f"... and {hidden:,} more bad lines", file=sys.stderr)
    print(summary)
    if summary.before_start:
        print(
            f"note: {summary.before_start:,} records are dated before their experiment started (or it never "
            "started); `abcore analyze` counts events from the start on, pass --start to include them.",
            file=sys.stderr,
        )
    if args.strict and summary.bad:
        return 1
    return 0


def cmd_config_import(args: argparse.Namespace) -> int:
    """Create one draft experiment per definition in a JSON file."""
    from abcore.io.configs import import_config, load_config_file

    items = load_config_file(args.file)
    engine = open_store(args)
    with new_session(engine) as session:
        created = import_config(session=session, data=items, actor=args.actor)
        for exp in created:
            print(f"Created draft experiment {exp.name!r} (id {exp.id})")
    return 0


def cmd_config_export(args: argparse.Namespace) -> int:
    """Write the definitions of the given experiments (default: all) to a JSON file or stdout."""
    from abcore.experiments.records import list_experiments
    from abcore.io.configs import dump_configs, export_config

    engine = open_store(args)
    with new_session(engine) as session:
        everything = list_experiments(session=session, include_archived=True)
        refs: list[Any] = args.experiments or [e.id for e in sorted(everything, key=lambda e: e.id)]
        if not refs:
            raise CliError("there are no experiments to export")
        configs = [export_config(session=session, experiment=ref) for ref in refs]
    text = dump_configs(configs)
    if args.file == "-":
        sys.stdout.write(text)
    else:
        write_file(args.file, text)
        print(f"Wrote {len(configs)} experiment config(s) to {args.file}")
    return 0


def add_commands(commands: Any) -> None:
    """Add ``export``, ``import-events`` and ``config import|export`` to the ``commands`` subparsers."""
    _add_export(commands)
    imp = commands.add_parser(
        "import-events",
        help="import events from a CSV or JSON-lines log (idempotent)",
        description=(
            "Import events from a CSV file (with header) or JSON lines. Bad lines are reported and skipped; "
            "importing the same file twice does not double-count."
        ),
    )
    imp.add_argument("file", metavar="FILE", help="the log file")
    imp.add_argument("--format", choices=("auto", "csv", "jsonl"), default="auto", help="input format (default: by extension / content)")
    imp.add_argument("--batch-size", type=parse_positive_int, default=2000, help="records per transaction (default 2000)")
    imp.add_argument("--show-bad", type=int, default=20, metavar="N", help="print at most N bad lines (default 20)")
    imp.add_argument("--strict", action="store_true", help="exit with code 1 when any line was bad")
    imp.add_argument("--quiet", action="store_true", help="no progress output")
    imp.set_defaults(handler=cmd_import_events)
    _add_config(commands)


def _add_export(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="export results, assignments or events of an experiment as CSV",
        description="Stream one experiment's results, assignments or events to a CSV file (header row, ISO-8601 UTC times).",
    )
    export.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
    export.add_argument("--what", choices=("results", "assignments", "events"), required=True, help="what to export")
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="CSV file to write ('-' = stdout)")
    export.add_argument("--chunk-size", type=parse_positive_int, default=5000, help="rows fetched per query (default 5000)")
    add_analysis_options(export, prefix="for --what results: ")
    export.add_argument("--quiet", action="store_true", help="no progress output")
    export.add_argument(
        "--exact", dest="csv_mode", action="store_const", const="exact", default="safe",
        help="write cells exactly as stored, for machine consumers (default: safe for spreadsheets, a "
             "leading ' before cells starting with = + - @ tab or CR)",
    )
    export.set_defaults(handler=cmd_export)


def _add_config(commands: Any) -> None:
    config = commands.add_parser(
        "config",
        help="import or export experiment definitions as JSON",
        description='Experiment definitions in JSON: {"experiment_id", "salt", "variants": [{"name", "weight"}]}.',
    )
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    cimp = config_commands.add_parser("import", help="create draft experiments from a JSON file (one object or a list)")
    cimp.add_argument("file", metavar="FILE.json")
    add_actor(cimp)
    cimp.set_defaults(handler=cmd_config_import)
    cexp = config_commands.add_parser("export", help="write experiment definitions to a JSON file")
    cexp.add_argument("file", metavar="FILE.json", help="file to write ('-' = stdout)")
    cexp.add_argument(
        "experiments", nargs="*", metavar="EXPERIMENT",
        help="experiments to export (default: all). One experiment is written as an object, several as a list.",
    )
    cexp.set_defaults(handler=cmd_config_export)
