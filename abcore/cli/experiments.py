"""Experiment commands: ``list``, the lifecycle (start ... cancel, ship), ``edit``, ``clone``, ``archive``,
approvals and per-store ``settings``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from abcore.cli.common import CliError, add_actor, new_session, open_store, parse_percent, text_table

LIFECYCLE_COMMANDS: dict[str, str] = {
    "start": "draft -> running: start assigning users",
    "pause": "running -> paused: assigned users keep their variant, no new users enter",
    "resume": "paused -> running",
    "stop": "running/paused -> completed: stop the experiment (then `ship` a winner)",
    "cancel": "draft/running/paused -> cancelled: abandon the experiment",
}


def cmd_list(args: argparse.Namespace) -> int:
    """List experiments with their split and participants (a table, or JSON with ``--json``); the table writes
    control and invisible characters of names stored before names refused them as escapes (``\\x1b``)."""
    from abcore.analysis.overview import experiment_overview, participants
    from abcore.experiments.records import get_variants, list_experiments
    from abcore.store.values import printable_name

    engine = open_store(args)
    with new_session(engine) as session:
        experiments = list_experiments(session=session, status=args.status, include_archived=args.archived)
        overview = experiment_overview(session=session)
        rows = []
        records = []
        for exp in sorted(experiments, key=lambda e: e.id):
            variants = get_variants(session=session, experiment_id=exp.id)
            counts = participants(session=session, experiment_id=exp.id)
            split = " / ".join(f"{printable_name(v.name)} {v.allocation_pct:g}%" for v in variants)
            total = overview[exp.id].participants if exp.id in overview else sum(counts.values())
            rows.append((exp.id, printable_name(exp.name), exp.status, split, f"{total:,}"))
            records.append(
                {
                    "id": exp.id,
                    "name": exp.name,
                    "status": exp.status,
                    "variants": [
                        {"name": v.name, "allocation_pct": v.allocation_pct, "participants": counts.get(v.id, 0)}
                        for v in variants
                    ],
                    "participants": total,
                }
            )
    if args.json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
    elif not rows:
        print("No experiments." if args.status is None else f"No {args.status} experiments.")
    else:
        print(text_table(("id", "name", "status", "variants (split)", "participants"), rows))
    return 0


def lifecycle_handler(action: str) -> Callable[[argparse.Namespace], int]:
    """The handler of a lifecycle command: calls ``<action>_experiment`` and prints the new status."""
    def handler(args: argparse.Namespace) -> int:
        from abcore import experiments

        function = getattr(experiments, f"{action}_experiment")
        engine = open_store(args)
        with new_session(engine) as session:
            exp = function(session=session, ref=args.experiment, actor=args.actor)
            print(f"{exp.name}: {exp.status}")
        return 0

    return handler


def cmd_ship(args: argparse.Namespace) -> int:
    """Ship the winner of a completed experiment to ``--rollout`` % of users (``--stop``: stop a running one
    first, in the same transaction; nothing changes when the ship is refused)."""
    from abcore.experiments.lifecycle import ship_winner
    from abcore.experiments.records import get_variants

    engine = open_store(args)
    with new_session(engine) as session:
        exp = ship_winner(
            session=session, ref=args.experiment, variant=args.variant, rollout_pct=args.rollout, actor=args.actor,
            stop=args.stop,
        )
        winner = next((v.name for v in get_variants(session=session, experiment_id=exp.id) if v.id == exp.winner_variant_id), "?")
        print(f"{exp.name}: shipped {winner} to {exp.rollout_pct:g} % of users")
    return 0


def _edit_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The changes of ``abcore edit``: the --json object, then the single-field options on top."""
    changes: dict[str, Any] = {}
    if args.json is not None:
        try:
            loaded = json.loads(args.json)
        except json.JSONDecodeError as exc:
            raise CliError(f"--json is not valid JSON ({exc.msg} at position {exc.pos})") from None
        if not isinstance(loaded, dict):
            raise CliError("--json must be a JSON object of field -> new value")
        changes.update(loaded)
    for field in ("description", "hypothesis", "primary_metric"):
        if getattr(args, field) is not None:
            changes[field] = getattr(args, field)
    for field, option in (("secondary_metrics", "secondary"), ("guardrail_metrics", "guardrails")):
        if getattr(args, option) is not None:
            changes[field] = [m.strip() for m in getattr(args, option).split(",") if m.strip()]
    if args.traffic is not None:
        changes["traffic_allocation"] = args.traffic / 100.0
    if not changes:
        raise CliError("nothing to change: give --json or a field option (see `abcore edit --help`)")
    return changes


def cmd_edit(args: argparse.Namespace) -> int:
    """Apply (or with ``--dry-run`` only show) changes to an experiment, one line per changed field."""
    from abcore.experiments.editing import planned_changes, update_experiment

    changes = _edit_changes(args)
    engine = open_store(args)
    with new_session(engine) as session:
        diff = planned_changes(session=session, ref=args.experiment, changes=changes)
        if not args.dry_run:
            update_experiment(session=session, ref=args.experiment, changes=changes, actor=args.actor)
    if not diff:
        print("Nothing changed: every value given is the current one.")
    for field, change in diff.items():
        before = json.dumps(change["before"], ensure_ascii=False)
        after = json.dumps(change["after"], ensure_ascii=False)
        print(f"{field}: {before} -> {after}")
    if args.dry_run and diff:
        print("(dry run: nothing saved)")
    return 0


def cmd_clone(args: argparse.Namespace) -> int:
    """Copy an experiment's configuration into a new draft."""
    from abcore.experiments.editing import clone_experiment

    engine = open_store(args)
    with new_session(engine) as session:
        exp = clone_experiment(session=session, ref=args.experiment, name=args.name, keep_salt=args.keep_salt,
                               actor=args.actor)
        print(f"{exp.name}: draft (id {exp.id}), cloned from {args.experiment}"
              f"{' with the same salt' if args.keep_salt else ' with a new salt'}")
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    """Archive (or with ``--restore`` un-archive) an experiment."""
    from abcore.experiments.editing import archive_experiment

    engine = open_store(args)
    with new_session(engine) as session:
        exp = archive_experiment(session=session, ref=args.experiment, actor=args.actor, archived=not args.restore)
        print(f"{exp.name}: {'archived' if exp.archived_at is not None else 'restored'} ({exp.status})")
    return 0


def cmd_approval(args: argparse.Namespace) -> int:
    """Approve, reject or request approval of a draft."""
    from abcore import experiments

    function = {
        "approve": experiments.approve_experiment,
        "reject": experiments.reject_experiment,
        "request-approval": experiments.request_approval,
    }[args.command]
    engine = open_store(args)
    with new_session(engine) as session:
        exp = function(session=session, ref=args.experiment, actor=args.actor, comment=args.comment)
        print(f"{exp.name}: {exp.approval_status or 'no approval'}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    """Show, or set, the store's require-approval setting."""
    from abcore.experiments.approvals import require_approval, set_require_approval

    engine = open_store(args)
    with new_session(engine) as session:
        if args.value is not None:
            set_require_approval(session=session, required=args.value == "on", actor=args.actor)
        on = require_approval(session=session)
    print(f"require-approval: {'on' if on else 'off'}"
          + (" (drafts need an approver's approval before they start)" if on else ""))
    return 0


def add_commands(commands: Any) -> None:
    """Add the experiment commands to the ``commands`` subparsers (in the order ``--help`` lists them)."""
    _add_listing(commands)
    _add_editing(commands)
    _add_approvals(commands)
    _add_ship(commands)


def _add_listing(commands: Any) -> None:
    """``list`` and the lifecycle commands start, pause, resume, stop, cancel."""
    listing = commands.add_parser("list", help="list experiments: id, name, status, variants with split, participants")
    listing.add_argument(
        "--status", choices=("draft", "running", "paused", "completed", "cancelled"), help="only this status"
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.add_argument("--archived", action="store_true", help="include archived experiments")
    listing.set_defaults(handler=cmd_list)

    for action, description in LIFECYCLE_COMMANDS.items():
        sub = commands.add_parser(action, help=description, description=description)
        sub.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
        add_actor(sub)
        sub.set_defaults(handler=lifecycle_handler(action))


def _add_editing(commands: Any) -> None:
    """``edit``, ``clone`` and ``archive``."""
    edit = commands.add_parser(
        "edit",
        help="change an experiment (drafts: everything; running/paused: description, hypothesis, secondary metrics, "
        "traffic up)",
        description="Change an experiment. A draft accepts every field; a running or paused one only the safe ones "
        "(description, hypothesis, secondary metrics, a higher traffic share); every refused change is listed.",
    )
    edit.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
    edit.add_argument("--json", metavar="OBJECT",
                      help='fields to change as JSON, e.g. \'{"allocations": {"control": 40, "treatment": 60}}\'')
    edit.add_argument("--description")
    edit.add_argument("--hypothesis")
    edit.add_argument("--primary-metric", dest="primary_metric")
    edit.add_argument("--secondary", metavar="M1,M2", help="secondary metrics, comma-separated (replaces the list)")
    edit.add_argument("--guardrails", metavar="M1,M2", help="guardrail metrics, comma-separated (replaces the list)")
    edit.add_argument("--traffic", type=parse_percent, metavar="PCT", help="share of eligible traffic that enters, in %%")
    edit.add_argument("--dry-run", action="store_true", help="show the changes without saving them")
    add_actor(edit)
    edit.set_defaults(handler=cmd_edit)

    clone = commands.add_parser("clone", help="copy an experiment's configuration into a new draft")
    clone.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id to copy")
    clone.add_argument("name", metavar="NAME", help="name of the new draft")
    clone.add_argument("--keep-salt", action="store_true",
                       help="keep the salt: every user lands in the same variant as in the original")
    add_actor(clone)
    clone.set_defaults(handler=cmd_clone)

    archive = commands.add_parser("archive", help="hide a completed or cancelled experiment from listings")
    archive.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
    archive.add_argument("--restore", action="store_true", help="un-archive it instead")
    add_actor(archive)
    archive.set_defaults(handler=cmd_archive)


def _add_approvals(commands: Any) -> None:
    """``approve``, ``reject``, ``request-approval`` and ``settings require-approval``."""
    for name, text, comment_help in (
        ("approve", "approve a draft's current configuration (when approvals are required)", "optional comment"),
        ("reject", "reject a draft, saying what must change", "what must change (required)"),
        ("request-approval", "ask approvers to look at a draft", "optional comment"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
        sub.add_argument("--comment", default="", required=name == "reject", help=comment_help)
        add_actor(sub)
        sub.set_defaults(handler=cmd_approval)

    settings = commands.add_parser("settings", help="show or change per-store settings")
    setting_commands = settings.add_subparsers(dest="setting", required=True, metavar="SETTING")
    ra = setting_commands.add_parser("require-approval", help="drafts need an approval before they start: on | off")
    ra.add_argument("value", nargs="?", choices=("on", "off"), help="omit to show the current value")
    add_actor(ra)
    ra.set_defaults(handler=cmd_settings)


def _add_ship(commands: Any) -> None:
    """``ship``."""
    ship = commands.add_parser(
        "ship", help="serve the winning variant of a completed experiment", description="completed: ship a winner"
    )
    ship.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
    ship.add_argument("variant", metavar="VARIANT", help="winning variant name or id")
    ship.add_argument("--rollout", type=parse_percent, default=100.0, help="percent of users served the winner (default 100)")
    ship.add_argument("--stop", action="store_true",
                      help="stop a running or paused experiment first (stop and ship are one change: both or neither)")
    add_actor(ship)
    ship.set_defaults(handler=cmd_ship)
