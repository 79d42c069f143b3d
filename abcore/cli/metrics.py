"""``abcore metrics list|define|update``: the metric definitions of the store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from abcore.cli.common import CliError, new_session, open_store


def _metric_json(text: str) -> Any:
    """JSON from a command-line argument: literal JSON, ``@FILE`` or ``-`` (stdin)."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"{text[1:]}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"not valid JSON ({exc})") from None


def _describe(row: Any) -> str:
    """One metric definition as a line: ``name: kind (what it computes), direction, window, cap ...``."""
    from abcore.metrics import kind_label

    extra = []
    if row.kind == "ratio":
        extra.append(f"{row.numerator} / {row.denominator}")
    if row.kind == "quantile":
        extra.append(f"q={row.quantile:g}")
    if row.window_hours:
        extra.append(f"window {row.window_hours:g} h")
    if row.delay_hours:
        extra.append(f"delay {row.delay_hours:g} h")
    if row.cap:
        extra.append(f"cap {row.cap} {row.cap_upper:g}")
    better = "higher is better" if row.direction == "increase" else "lower is better"
    archived = " [archived]" if row.archived else ""
    return (f"{row.name}: {row.kind} ({kind_label(row.kind)}), {better}{', ' if extra else ''}{', '.join(extra)}"
            f"{archived}")


def _list(session: Any, args: argparse.Namespace) -> None:
    from abcore.metrics import list_metrics, metric_to_dict

    rows = list_metrics(session=session, include_archived=args.all)
    if args.json:
        print(json.dumps([metric_to_dict(r) for r in rows], indent=2, ensure_ascii=False))
        return
    if not rows:
        print("No metric definitions.")
    for r in rows:
        print(_describe(r))


def cmd_metrics(args: argparse.Namespace) -> int:
    """List, define or update metric definitions; a refused definition is one ``error:`` line."""
    from abcore.metrics import define_metric, update_metric

    engine = open_store(args)
    with new_session(engine) as session:
        if args.metrics_command == "list":
            _list(session, args)
            return 0
        data = _metric_json(args.json_data)
        if not isinstance(data, dict):
            raise CliError("the metric definition must be a JSON object")
        try:
            if args.metrics_command == "define":
                row = define_metric(session=session, data=data)
                print(f"Defined metric {row.name!r} ({row.kind}, {row.direction}).")
            else:
                row = update_metric(session=session, name=args.name, changes=data)
                print(f"Updated metric {row.name!r} ({row.kind}, {row.direction}).")
        except ValueError as exc:  # a definition refused by validation
            raise CliError(str(exc)) from None
    return 0


def add_commands(commands: Any) -> None:
    """Add ``metrics list|define|update`` to the ``commands`` subparsers."""
    metrics = commands.add_parser(
        "metrics",
        help="list, define or update metric definitions (kind, direction, window, capping)",
        description='Metric definitions as JSON objects, e.g. \'{"name": "latency_ms", "kind": "mean", '
                    '"direction": "decrease"}\'. JSON arguments may be literal JSON, @FILE or - (stdin).',
    )
    metrics_commands = metrics.add_subparsers(dest="metrics_command", required=True, metavar="ACTION")
    mlist = metrics_commands.add_parser("list", help="list the metric definitions")
    mlist.add_argument("--json", action="store_true", help="print them as a JSON list")
    mlist.add_argument("--all", action="store_true", help="include archived metrics")
    mlist.set_defaults(handler=cmd_metrics)
    mdef = metrics_commands.add_parser("define", help="define a new metric from a JSON object")
    mdef.add_argument("json_data", metavar="JSON")
    mdef.set_defaults(handler=cmd_metrics)
    mupd = metrics_commands.add_parser("update", help="change fields of a metric (JSON object of the fields)")
    mupd.add_argument("name", metavar="NAME")
    mupd.add_argument("json_data", metavar="JSON")
    mupd.set_defaults(handler=cmd_metrics)
