"""``abcore interleaving`` (the preference between an interleaving experiment's rankers) and
``abcore interleaving-size`` (users an interleaving comparison needs, beside the A/B test's number)."""

from __future__ import annotations

import argparse
import csv
import io
from typing import Any

from abcore.cli.common import (
    CliError,
    new_session,
    open_store,
    parse_alpha,
    parse_timestamp,
    text_table,
    write_file,
)


def cmd_interleaving(args: argparse.Namespace) -> int:
    """Print the pair table and the verdict; ``--csv FILE`` writes the rows as CSV instead."""
    from abcore import formatting as fmt
    from abcore.analysis.interleaving import CSV_COLUMNS, analyze_interleaving, csv_rows

    engine = open_store(args)
    try:
        with new_session(engine) as session:
            res = analyze_interleaving(args.experiment, session=session, alpha=args.alpha or 0.05,
                                       correction=args.correction, engine=args.engine, end=args.end,
                                       sequential=args.sequential)
    finally:
        engine.dispose()
    if args.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_rows(res))
        if args.csv == "-":
            print(buffer.getvalue(), end="")
        else:
            write_file(args.csv, buffer.getvalue())
        return 0
    rows = [
        (p.ranker_a, p.ranker_b, f"{p.counts.users:,}", f"{p.counts.wins:,}", f"{p.counts.losses:,}",
         f"{p.counts.ties:,}", fmt.format_pct(p.preference.share, 1),
         f"[{fmt.format_pct(p.preference.ci_low, 1)}, {fmt.format_pct(p.preference.ci_high, 1)}]",
         fmt.format_pvalue(p.preference.p_value), fmt.format_pvalue(p.p_adjusted),
         fmt.format_fixed(p.credit.estimate, 4), p.outcome)
        for p in res.pairs
    ]
    print(f"Experiment {res.experiment_name} (interleaving, {res.method}); credited metric {res.metric}, "
          f"alpha {res.alpha:g}, correction {res.correction}, test {res.test}, engine {res.engine}\n")
    print(text_table(("ranker A", "ranker B", "users", "A wins", "B wins", "ties", "A preferred",
                      f"{(1 - res.alpha) * 100:g} % CI", "p-value", "adj. p", "credit A-B / impression", "outcome"),
                     rows))
    print(f"\nVerdict: {res.verdict.decision} -- {res.verdict.reason}")
    return 0


def cmd_interleaving_size(args: argparse.Namespace) -> int:
    """Users for the interleaving sign test, and with ``--baseline``/``--mde`` the A/B test's users (both arms)."""
    from abcore.stats.interleaving import interleaving_sample_size
    from abcore.stats.power import sample_size_proportion

    try:
        users = interleaving_sample_size(args.share, alpha=args.alpha or 0.05, power=args.power,
                                         decisive_share=args.decisive)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(f"interleaving: {users:,} users (preference share {args.share:g}, {args.decisive:g} of users with a "
          f"preference, alpha {args.alpha or 0.05:g}, power {args.power:g})")
    if args.baseline is not None and args.mde is not None:
        try:
            per_arm = sample_size_proportion(args.baseline, args.mde, alpha=args.alpha or 0.05, power=args.power)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        print(f"A/B test on the click-through rate: {2 * per_arm:,} users ({per_arm:,} per arm; baseline "
              f"{args.baseline:g}, absolute change {args.mde:g}) -- {2 * per_arm / users:.1f}x interleaving's")
    return 0


def add_commands(commands: Any) -> None:
    """Add ``interleaving`` and ``interleaving-size`` to the ``commands`` subparsers."""
    p = commands.add_parser(
        "interleaving",
        help="the preference between the rankers of an interleaving experiment, per ranker pair, and the verdict",
        description="Analyse an interleaving experiment: wins, losses, ties, preference share with its bootstrap CI, "
        "sign test, credit difference per impression, per ranker pair.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
    p.add_argument("--alpha", type=parse_alpha, default=None, help="significance level (default 0.05)")
    p.add_argument("--correction", choices=("holm", "bonferroni", "fdr_bh", "none"), default="holm",
                   help="multiple-comparison correction across ranker pairs (default holm)")
    p.add_argument("--engine", choices=("store", "duckdb", "spark"), default="store", help="where the query runs")
    p.add_argument("--end", type=parse_timestamp, default=None, metavar="TIME", help="count events before TIME")
    p.add_argument("--sequential", action="store_true",
                   help="always-valid interval and p-value of the preference (safe to look every day)")
    p.add_argument("--csv", metavar="FILE", help="write one CSV row per ranker pair to FILE ('-' = stdout)")
    p.set_defaults(handler=cmd_interleaving)

    s = commands.add_parser(
        "interleaving-size",
        help="users an interleaving comparison needs for a preference share (and the A/B test's users beside it)",
        description="Sample size of the interleaving sign test; with --baseline and --mde also the A/B test's.",
    )
    s.add_argument("--share", type=float, required=True, help="preference share to detect, e.g. 0.55")
    s.add_argument("--decisive", type=float, default=1.0, help="share of users whose clicks prefer a ranker (default 1)")
    s.add_argument("--alpha", type=parse_alpha, default=None, help="significance level (default 0.05)")
    s.add_argument("--power", type=float, default=0.8, help="power (default 0.8)")
    s.add_argument("--baseline", type=float, default=None, help="A/B: the control's click-through rate")
    s.add_argument("--mde", type=float, default=None, help="A/B: the absolute change of the click-through rate")
    s.set_defaults(handler=cmd_interleaving_size)
