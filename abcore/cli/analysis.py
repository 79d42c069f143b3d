"""``abcore analyze`` and ``abcore stats``: analyse an experiment, or compute sufficient statistics."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
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

# Same values as abcore.analysis.pipeline.METHODS / CORRECTIONS (a test checks it); not imported so that
# `abcore --help` and `abcore init` do not load scipy.
METHODS: tuple[str, ...] = ("frequentist", "sequential", "bayesian")
CORRECTIONS: tuple[str, ...] = ("holm", "bonferroni", "fdr_bh", "none")


def _analysis_report(results: Any) -> str:
    """The analysis as text: overall rate, per-variant totals/conversions, tests per metric with the judge's
    outcome (better / worse / inconclusive in the metric's direction), health and the verdict.
    Numbers are formatted by :mod:`abcore.formatting`."""
    from abcore import formatting as fmt
    from abcore.analysis.verdict import metric_outcome
    from abcore.metrics import kind_label

    lines = [
        f"Experiment {results.experiment} ({results.status}); method {results.method}, "
        f"alpha {results.alpha:g}, correction {results.correction}, engine {results.engine}",
    ]
    primary = next((m for m in results.metrics if m.role == "primary"), None)
    rows = []
    total_users = total_conversions = 0
    for v in results.variants:
        conversions: Any = ""
        rate: Any = ""
        if primary is not None and primary.kind == "binary":
            found = next((m for m in results.metrics if m.metric == primary.metric and m.variant == v.name), None)
            if v.is_control:
                found = next((m for m in results.metrics if m.metric == primary.metric), None)
                conversions = found.control_conversions if found else None
            else:
                conversions = found.conversions if found else None
            rate = fmt.format_fixed(conversions / v.users, 4) if conversions is not None and v.users else fmt.MISSING
            total_conversions += conversions or 0
        total_users += v.users
        rows.append((v.name + (" (control)" if v.is_control and v.name != "control" else ""), f"{v.allocation_pct:g} %", f"{v.assigned:,}",
                     f"{v.users:,}", "" if conversions in ("", None) else f"{conversions:,}", rate))
    lines.append("")
    metric_label = f"{primary.metric} conversions" if primary is not None and primary.kind == "binary" else "conversions"
    lines.append(text_table(("variant", "split", "assigned", "exposed users", metric_label, "rate"), rows))
    if primary is not None and primary.kind == "binary" and total_users:
        lines.append(f"\nOverall {primary.metric} rate: {fmt.format_fixed(total_conversions / total_users, 4)} "
                     f"({total_conversions:,} of {total_users:,} exposed users)")
    if results.metrics:
        confidence = f"{(1 - results.alpha) * 100:g} %"
        rows = []
        for m in results.metrics:
            t = m.test
            rows.append((m.metric, m.role, kind_label(m.metric_kind), m.variant, fmt.format_fixed(m.control_value, 4),
                         fmt.format_fixed(m.value, 4), fmt.format_fixed(t.diff, 4),
                         f"[{fmt.format_fixed(t.ci_low, 4)}, {fmt.format_fixed(t.ci_high, 4)}]",
                         fmt.format_pct(t.lift, 2, signed=True), fmt.format_pvalue(t.p_value),
                         fmt.format_pvalue(m.p_value_adjusted), metric_outcome(m)))
        lines.append("")
        lines.append(text_table(("metric", "role", "kind", "variant", "control", "treatment", "effect",
                             f"{confidence} CI", "lift", "p-value", "adj. p", "outcome"), rows))
    lines.append("")
    lines.append(f"SRM check: {fmt.format_p_clause(results.srm.p_value)}" + (" -- SAMPLE RATIO MISMATCH" if results.srm.mismatch else ""))
    for check in results.health:
        if not check.ok:
            lines.append(f"{check.severity}: {check.message}")
    for warning in results.warnings:
        lines.append(f"warning: {warning}")
    verdict = results.verdict
    lines.append(f"Verdict: {verdict.decision}" + (f" ({verdict.variant})" if verdict.variant else "") + f" -- {verdict.reason}")
    return "\n".join(lines)


def analyze_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`abcore.analysis.pipeline.analyze` given by the options."""
    options: dict[str, Any] = {"method": args.method, "correction": args.correction, "cuped": args.cuped}
    if args.start is not None:
        options["start"] = args.start
    if args.end is not None:
        options["end"] = args.end
    if args.alpha is not None:
        options["alpha"] = args.alpha
    return options


def cmd_analyze(args: argparse.Namespace) -> int:
    """Analyse one experiment: a text report on stdout, or the full results as JSON (``--json FILE``)."""
    from abcore.analysis.pipeline import analyze
    from abcore.experiments.records import get_experiment

    engine = open_store(args)
    with new_session(engine) as session:
        exp = get_experiment(session=session, ref=args.experiment)
        try:
            results = analyze(exp, session=session, engine=args.engine, source=args.source, **analyze_options(args))
        except (ValueError, ImportError) as exc:  # a bad source config, a missing engine extra
            raise CliError(str(exc)) from None
    if args.json is None:
        print(_analysis_report(results))
        return 0
    text = json.dumps(results.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
        return 0
    write_file(args.json, text)
    print(f"Wrote the analysis of {exp.name} to {args.json}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Per-variant sufficient statistics of metric definitions, computed on the chosen engine (JSON)."""
    from dataclasses import asdict
    from datetime import datetime

    from abcore.analysis import engines as eng
    from abcore.experiments.records import get_experiment
    from abcore.metrics import MetricSpec

    try:
        raw = json.loads(Path(args.metrics).read_text(encoding="utf-8"))
        specs = [MetricSpec(**m) for m in (raw if isinstance(raw, list) else [raw])]
        source = eng.load_source_config(args.source) if args.source else None
    except (OSError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CliError(str(exc)) from None
    url = args.database_url
    store = open_store(args)
    try:
        if source is not None and source.exposures is not None:
            experiment: Any = args.experiment
        else:
            with new_session(store) as session:
                experiment = get_experiment(session=session, ref=args.experiment).id
        if args.engine == "duckdb":
            engine: Any = eng.duckdb_engine(store_url=url)
        elif args.engine == "spark":
            engine = eng.spark_engine()
            if source is None or source.exposures is None:
                engine.load_store(url)
        else:
            engine = eng.store_engine(store)
        options: dict[str, Any] = {"cuped": args.cuped}
        for bound in ("start", "end"):
            if getattr(args, bound):
                try:
                    options[bound] = datetime.fromisoformat(getattr(args, bound))
                except ValueError:
                    raise CliError(f"--{bound} must be an ISO date or datetime (UTC when naive)") from None
        if args.segment:
            options["segment"] = args.segment
        try:
            rows = eng.compute_stats(experiment, specs, engine=engine, source=source, **options)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    finally:
        store.dispose()
    sys.stdout.write(json.dumps([asdict(r) for r in rows], indent=2, default=str) + "\n")
    return 0


def add_analysis_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """Add the options of ``analyze`` that ``export --what results`` shares (help text after ``prefix``)."""
    parser.add_argument(
        "--method", choices=METHODS, default="frequentist",
        help=prefix + "frequentist (z-test / Welch), sequential (always-valid, safe to peek) or bayesian "
        "(default frequentist)",
    )
    parser.add_argument(
        "--alpha", type=parse_alpha, default=None,
        help=prefix + "significance level (default: 1 - the experiment's success confidence, else 0.05)",
    )
    parser.add_argument(
        "--correction", choices=CORRECTIONS, default="holm",
        help=prefix + "multiple-comparison correction across variants x metrics (default holm)",
    )
    parser.add_argument("--cuped", action="store_true", help=prefix + "CUPED variance reduction with pre-experiment data")
    parser.add_argument(
        "--start", type=parse_timestamp, default=None, metavar="TIME",
        help=prefix + "count events from TIME on (ISO-8601 or epoch seconds; default: when the experiment started)",
    )
    parser.add_argument(
        "--end", type=parse_timestamp, default=None, metavar="TIME", help=prefix + "count events before TIME (default: all)"
    )


def add_commands(commands: Any) -> None:
    """Add ``analyze`` and ``stats`` to the ``commands`` subparsers."""
    analyze = commands.add_parser(
        "analyze",
        help="analyse an experiment: per-variant totals and conversions, effect, p-value, CI",
        description="Analyse an experiment. Without --json a table is printed to stdout.",
    )
    analyze.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
    analyze.add_argument("--json", metavar="FILE", help="write the full results as JSON to FILE ('-' = stdout)")
    add_analysis_options(analyze)
    analyze.add_argument(
        "--engine", choices=("store", "duckdb", "spark"), default="store",
        help="where the metric query runs: the store's database (default), embedded DuckDB over the store or "
        "the --source files (extra 'duckdb'), or Spark SQL (extra 'spark')",
    )
    analyze.add_argument("--source", metavar="FILE.json", default=None,
                         help="event source config (events / exposures tables or Parquet/CSV files; docs: "
                         "Operators, event sources); default the store's tables")
    analyze.set_defaults(handler=cmd_analyze)

    st = commands.add_parser(
        "stats",
        help="per-variant sufficient statistics of metric definitions on an engine (store, duckdb, spark), as JSON",
        description="Run the analysis query built from metric definitions on an engine and print its rows as JSON.",
    )
    st.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id (the key with an exposure table)")
    st.add_argument("--metrics", metavar="FILE.json", required=True,
                    help="metric definitions: a JSON object or list (name, kind, window_hours, cap, ...)")
    st.add_argument("--engine", choices=("store", "duckdb", "spark"), default="store")
    st.add_argument("--source", metavar="FILE.json", help="event source config (docs: Operators, event sources)")
    st.add_argument("--segment", help="break down by this assignment attribute / exposure column")
    st.add_argument("--cuped", action="store_true", help="add the pre-exposure covariate sums")
    st.add_argument("--start", help="count only events from this UTC datetime (ISO)")
    st.add_argument("--end", help="count only exposures and events before this UTC datetime (ISO)")
    st.set_defaults(handler=cmd_stats)
