"""Layer and holdout commands: ``layers list|show|create`` and ``holdout create|overlap``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from abcore.cli.common import add_actor, new_session, open_store, text_table


def _usage_rows(usage: Any) -> list[tuple[Any, ...]]:
    return [(h.experiment_id, h.name, h.status, f"{h.layer_share:g}%", " ".join(f"[{s},{e})" for s, e in h.ranges))
            for h in usage.holders]


def cmd_layers(args: argparse.Namespace) -> int:
    """List, show or create layers; ``--json`` prints the usage objects of the HTTP API."""
    from abcore import experiments as ex

    engine = open_store(args)
    with new_session(engine) as session:
        if args.layers_command == "create":
            layer = ex.create_layer(args.name, session=session, description=args.description, actor=args.actor)
            print(f"Created layer {layer.name!r}.")
            return 0
        layers = ex.list_layers(session=session) if args.layers_command == "list" else [ex.get_layer(session=session, ref=args.name)]
        usages = [ex.layer_usage(session=session, ref=layer) for layer in layers]
    if getattr(args, "json", False):
        data = [u.to_dict() for u in usages]
        print(json.dumps(data if args.layers_command == "list" else data[0], indent=2, ensure_ascii=False))
    elif args.layers_command == "list":
        rows = [(u.layer.name, f"{u.free_pct:g}%", ", ".join(h.name for h in u.holders) or "-") for u in usages]
        print(text_table(("layer", "free", "running experiments"), rows) if rows else "No layers.")
    else:
        print(f"{usages[0].layer.name}: {usages[0].free_pct:g}% free")
        rows = _usage_rows(usages[0])
        if rows:
            print(text_table(("id", "experiment", "status", "share", "ranges (units of 1/10000)"), rows))
    return 0


def cmd_holdout(args: argparse.Namespace) -> int:
    """Create a draft holdout, or report the users a running holdout could not keep out."""
    from abcore import experiments as ex

    engine = open_store(args)
    with new_session(engine) as session:
        if args.holdout_command == "create":
            exp = ex.create_holdout(args.name, args.percent, session=session, layers=args.layer or None,
                                    primary_metric=args.primary_metric, actor=args.actor)
            covers = ", ".join(args.layer) if args.layer else "every experiment"
            print(f"Created holdout {exp.name!r} (draft): {args.percent:g}% of users kept out of {covers} once started.")
            return 0
        overlap = ex.holdout_overlap(session=session, ref=args.name)
    print(json.dumps({"assigned_before": overlap.assigned_before, "held_before": overlap.held_before}))
    return 0


def add_commands(commands: Any) -> None:
    """Add ``layers list|show|create`` and ``holdout create|overlap`` to the ``commands`` subparsers."""
    layers = commands.add_parser(
        "layers", help="layers: surfaces whose experiments are mutually exclusive (list, show, create)",
        description="Experiments join a layer with \"layer\" and \"layer_share\" in their JSON config (`abcore config import`).",
    )
    sub = layers.add_subparsers(dest="layers_command", required=True, metavar="ACTION")
    llist = sub.add_parser("list", help="every layer with its free share and running experiments")
    llist.add_argument("--json", action="store_true", help="print JSON")
    show = sub.add_parser("show", help="one layer: who holds which ranges, the free share")
    show.add_argument("name", metavar="LAYER")
    show.add_argument("--json", action="store_true", help="print JSON")
    create = sub.add_parser("create", help="create a layer (its salt is fixed now)")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--description", default="", help="what the surface is")
    add_actor(create)
    for p in (llist, show, create):
        p.set_defaults(handler=cmd_layers)
    holdout = commands.add_parser("holdout", help="holdouts: a percent of users kept out of experiments (create, overlap)")
    hsub = holdout.add_subparsers(dest="holdout_command", required=True, metavar="ACTION")
    hcreate = hsub.add_parser("create", help="create a draft holdout (start it with `abcore start NAME`)")
    hcreate.add_argument("name", metavar="NAME")
    hcreate.add_argument("--percent", type=float, required=True, help="percent of users held out")
    hcreate.add_argument("--layer", action="append", help="a layer it covers (repeat; default: every experiment)")
    hcreate.add_argument("--primary-metric", default="conversion", help="the metric its analysis compares")
    add_actor(hcreate)
    hover = hsub.add_parser("overlap", help="users assigned to covered experiments before the holdout started (JSON)")
    hover.add_argument("name", metavar="NAME")
    for p in (hcreate, hover):
        p.set_defaults(handler=cmd_holdout)
