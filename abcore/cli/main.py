"""Command-line interface: ``abcore`` / ``python -m abcore``.

Exit codes: 0 success; 1 an expected error (unknown experiment, transition not
allowed, bad file, unreachable database ...) reported as one line on stderr,
never a traceback; 2 a usage error (argparse); 130 interrupted.
Long work (export, import) shows a progress line on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from abcore.config import database_url, redact_url
from abcore.store.db import init_db, make_engine

LIFECYCLE_COMMANDS: dict[str, str] = {
    "start": "draft -> running: start assigning users",
    "pause": "running -> paused: assigned users keep their variant, no new users enter",
    "resume": "paused -> running",
    "stop": "running/paused -> completed: stop the experiment (then `ship` a winner)",
    "cancel": "draft/running/paused -> cancelled: abandon the experiment",
}


# Same values as abcore.analysis.pipeline.METHODS / CORRECTIONS (a test checks it); not imported so that
# `abcore --help` and `abcore init` do not load scipy.
METHODS: tuple[str, ...] = ("frequentist", "sequential", "bayesian")
CORRECTIONS: tuple[str, ...] = ("holm", "bonferroni", "fdr_bh", "none")


class CliError(Exception):
    """An expected failure: printed as ``error: <message>`` and exit code 1."""


# --------------------------------------------------------------------------- helpers


class Progress:
    """A one-line progress display on stderr, redrawn at most every ``interval`` seconds.

    Silent unless ``enabled`` (the CLI enables it when stderr is a terminal and --quiet is not given).
    """

    def __init__(self, label: str, *, enabled: bool, interval: float = 0.25, stream: Any = None) -> None:
        self.label = label
        self.enabled = enabled
        self.interval = interval
        self.stream = stream or sys.stderr
        self._last = 0.0
        self._drawn = False
        self._started = time.monotonic()

    def update(self, count: int, fraction: float | None = None, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        text = f"\r  {self.label} {count:,}"
        if fraction is not None:
            text += f" … {min(max(fraction, 0.0), 1.0) * 100:3.0f} %"
        text += f"  ({count / elapsed:,.0f}/s)"
        self.stream.write(text + "   ")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _show_progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def _engine(args: argparse.Namespace) -> Any:
    """An engine for ``--database-url``; CliError when the database is unreachable or not initialised."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from abcore.store.db import current_revision

    try:
        parsed = make_url(args.database_url)
    except Exception:  # noqa: BLE001 - any unparsable URL is a user error
        raise CliError(f"not a database URL: {args.database_url!r}") from None
    database = parsed.database or ""
    on_disk = parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not database.startswith("file:")
    if on_disk and not Path(database).expanduser().exists():  # do not create an empty file for a mistyped path
        raise CliError(f"no database at {database}; run `abcore init` to create it")
    engine = make_engine(args.database_url)
    try:
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot open the database at {redact_url(args.database_url)}: {_first_line(exc)}") from None
    if revision is None:
        raise CliError(f"the database at {redact_url(args.database_url)} is not initialised; run `abcore init` first")
    return engine


def _session(engine: Any) -> Any:
    from sqlmodel import Session

    return Session(engine, expire_on_commit=False)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _default_actor() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "cli"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain left-aligned text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_number_text(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [c.rjust(w) if numeric[i] and n else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number_text(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%").strip())
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- commands


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


def _cmd_list(args: argparse.Namespace) -> int:
    from abcore.analysis.queries import experiment_overview, participants
    from abcore.experiments.records import get_variants, list_experiments

    engine = _engine(args)
    with _session(engine) as session:
        experiments = list_experiments(session=session, status=args.status, include_archived=args.archived)
        overview = experiment_overview(session=session)
        rows = []
        records = []
        for exp in sorted(experiments, key=lambda e: e.id):
            variants = get_variants(session=session, experiment_id=exp.id)
            counts = participants(session=session, experiment_id=exp.id)
            split = " / ".join(f"{v.name} {v.allocation_pct:g}%" for v in variants)
            total = overview[exp.id].participants if exp.id in overview else sum(counts.values())
            rows.append((exp.id, exp.name, exp.status, split, f"{total:,}"))
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
        print(_table(("id", "name", "status", "variants (split)", "participants"), rows))
    return 0


def _lifecycle(action: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        from abcore import experiments

        function = getattr(experiments, f"{action}_experiment")
        engine = _engine(args)
        with _session(engine) as session:
            exp = function(session=session, ref=args.experiment, actor=args.actor)
            print(f"{exp.name}: {exp.status}")
        return 0

    return handler


def _cmd_ship(args: argparse.Namespace) -> int:
    from abcore.experiments.lifecycle import ship_winner
    from abcore.experiments.records import get_variants

    engine = _engine(args)
    with _session(engine) as session:
        exp = ship_winner(
            session=session, ref=args.experiment, variant=args.variant, rollout_pct=args.rollout, actor=args.actor
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


def _cmd_edit(args: argparse.Namespace) -> int:
    from abcore.experiments.editing import planned_changes, update_experiment

    changes = _edit_changes(args)
    engine = _engine(args)
    with _session(engine) as session:
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


def _cmd_clone(args: argparse.Namespace) -> int:
    from abcore.experiments.editing import clone_experiment

    engine = _engine(args)
    with _session(engine) as session:
        exp = clone_experiment(session=session, ref=args.experiment, name=args.name, keep_salt=args.keep_salt,
                               actor=args.actor)
        print(f"{exp.name}: draft (id {exp.id}), cloned from {args.experiment}"
              f"{' with the same salt' if args.keep_salt else ' with a new salt'}")
    return 0


def _cmd_archive(args: argparse.Namespace) -> int:
    from abcore.experiments.editing import archive_experiment

    engine = _engine(args)
    with _session(engine) as session:
        exp = archive_experiment(session=session, ref=args.experiment, actor=args.actor, archived=not args.restore)
        print(f"{exp.name}: {'archived' if exp.archived_at is not None else 'restored'} ({exp.status})")
    return 0


def _cmd_approval(args: argparse.Namespace) -> int:
    from abcore import experiments

    function = {
        "approve": experiments.approve_experiment,
        "reject": experiments.reject_experiment,
        "request-approval": experiments.request_approval,
    }[args.command]
    engine = _engine(args)
    with _session(engine) as session:
        exp = function(session=session, ref=args.experiment, actor=args.actor, comment=args.comment)
        print(f"{exp.name}: {exp.approval_status or 'no approval'}")
    return 0


def _cmd_settings(args: argparse.Namespace) -> int:
    from abcore.experiments.approvals import require_approval, set_require_approval

    engine = _engine(args)
    with _session(engine) as session:
        if args.value is not None:
            set_require_approval(session=session, required=args.value == "on", actor=args.actor)
        on = require_approval(session=session)
    print(f"require-approval: {'on' if on else 'off'}"
          + (" (drafts need an approver's approval before they start)" if on else ""))
    return 0


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if value != value or value in (float("inf"), float("-inf")) else f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _analysis_report(results: Any) -> str:
    """Seed 001's online analysis as text: overall rate, per-variant totals/conversions, tests per metric."""
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
            rate = f"{conversions / v.users:.4f}" if conversions is not None and v.users else "n/a"
            total_conversions += conversions or 0
        total_users += v.users
        rows.append((v.name + (" (control)" if v.is_control and v.name != "control" else ""), f"{v.allocation_pct:g}%", f"{v.assigned:,}",
                     f"{v.users:,}", "" if conversions in ("", None) else f"{conversions:,}", rate))
    lines.append("")
    metric_label = f"{primary.metric} conversions" if primary is not None and primary.kind == "binary" else "conversions"
    lines.append(_table(("variant", "split", "assigned", "exposed users", metric_label, "rate"), rows))
    if primary is not None and primary.kind == "binary" and total_users:
        lines.append(f"\nOverall {primary.metric} rate: {total_conversions / total_users:.4f} "
                     f"({total_conversions:,} of {total_users:,} exposed users)")
    if results.metrics:
        confidence = f"{(1 - results.alpha) * 100:g}%"
        rows = []
        for m in results.metrics:
            t = m.test
            rows.append((m.metric, m.role, m.kind, m.variant, _fmt(m.control_value), _fmt(m.value), _fmt(t.diff),
                         f"[{_fmt(t.ci_low)}, {_fmt(t.ci_high)}]",
                         "n/a" if t.lift is None or t.lift != t.lift else f"{t.lift * 100:+.2f}%",
                         _fmt(t.p_value), _fmt(m.p_value_adjusted), "yes" if m.significant else "no"))
        lines.append("")
        lines.append(_table(("metric", "role", "kind", "variant", "control", "treatment", "effect",
                             f"{confidence} CI", "lift", "p-value", "adj. p", "significant"), rows))
    lines.append("")
    lines.append(f"SRM check: p = {_fmt(results.srm.p_value)}" + (" -- SAMPLE RATIO MISMATCH" if results.srm.mismatch else ""))
    for check in results.health:
        if not check.ok:
            lines.append(f"{check.severity}: {check.message}")
    for warning in results.warnings:
        lines.append(f"warning: {warning}")
    verdict = results.verdict
    lines.append(f"Verdict: {verdict.decision}" + (f" ({verdict.variant})" if verdict.variant else "") + f" -- {verdict.reason}")
    return "\n".join(lines)


def _analyze_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"method": args.method, "correction": args.correction, "cuped": args.cuped}
    if args.start is not None:
        options["start"] = args.start
    if args.end is not None:
        options["end"] = args.end
    if args.alpha is not None:
        options["alpha"] = args.alpha
    return options


def _cmd_analyze(args: argparse.Namespace) -> int:
    from abcore.analysis.pipeline import analyze
    from abcore.experiments.records import get_experiment

    engine = _engine(args)
    with _session(engine) as session:
        exp = get_experiment(session=session, ref=args.experiment)
        try:
            results = analyze(exp, session=session, engine=args.engine, source=args.source, **_analyze_options(args))
        except (ValueError, ImportError) as exc:  # a bad source config, a missing engine extra
            raise CliError(str(exc)) from None
    if args.json is None:
        print(_analysis_report(results))
        return 0
    text = json.dumps(results.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
        return 0
    try:
        Path(args.json).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {args.json}: {exc.strerror or exc}") from None
    print(f"Wrote the analysis of {exp.name} to {args.json}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    """Per-variant sufficient statistics of metric definitions, computed on the chosen engine (JSON)."""
    from dataclasses import asdict
    from datetime import datetime

    from abcore.analysis import engines as eng
    from abcore.analysis.sql import MetricSpec
    from abcore.experiments.records import get_experiment

    try:
        raw = json.loads(Path(args.metrics).read_text(encoding="utf-8"))
        specs = [MetricSpec(**m) for m in (raw if isinstance(raw, list) else [raw])]
        source = eng.load_source_config(args.source) if args.source else None
    except (OSError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CliError(str(exc)) from None
    url = args.database_url
    store = _engine(args)
    try:
        if source is not None and source.exposures is not None:
            experiment: Any = args.experiment
        else:
            with _session(store) as session:
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


def _cmd_export(args: argparse.Namespace) -> int:
    from abcore.io.csv_export import write_csv

    engine = _engine(args)
    progress = Progress(f"exporting {args.what}", enabled=_show_progress(args) and args.output != "-")
    analyze_kwargs = _analyze_options(args) if args.what == "results" else None
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


def _cmd_import_events(args: argparse.Namespace) -> int:
    from abcore.io.event_import import import_events

    engine = _engine(args)
    progress = Progress("importing", enabled=_show_progress(args))

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


def _cmd_config_import(args: argparse.Namespace) -> int:
    from abcore.io.csv_export import import_config, load_config_file

    items = load_config_file(args.file)
    engine = _engine(args)
    with _session(engine) as session:
        created = import_config(session=session, data=items, actor=args.actor)
        for exp in created:
            print(f"Created draft experiment {exp.name!r} (id {exp.id})")
    return 0


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


def _cmd_metrics(args: argparse.Namespace) -> int:
    from abcore.metrics import MetricNotFound, define_metric, list_metrics, metric_to_dict, update_metric

    engine = _engine(args)
    with _session(engine) as session:
        try:
            if args.metrics_command == "list":
                rows = list_metrics(session=session, include_archived=args.all)
                if args.json:
                    print(json.dumps([metric_to_dict(r) for r in rows], indent=2, ensure_ascii=False))
                    return 0
                if not rows:
                    print("No metric definitions.")
                for r in rows:
                    extra = []
                    if r.kind == "ratio":
                        extra.append(f"{r.numerator} / {r.denominator}")
                    if r.kind == "quantile":
                        extra.append(f"q={r.quantile:g}")
                    if r.window_hours:
                        extra.append(f"window {r.window_hours:g} h")
                    if r.delay_hours:
                        extra.append(f"delay {r.delay_hours:g} h")
                    if r.cap:
                        extra.append(f"cap {r.cap} {r.cap_upper:g}")
                    better = "higher is better" if r.direction == "increase" else "lower is better"
                    archived = " [archived]" if r.archived else ""
                    print(f"{r.name}: {r.kind}, {better}{', ' if extra else ''}{', '.join(extra)}{archived}")
                return 0
            data = _metric_json(args.json_data)
            if not isinstance(data, dict):
                raise CliError("the metric definition must be a JSON object")
            if args.metrics_command == "define":
                row = define_metric(session=session, data=data)
                print(f"Defined metric {row.name!r} ({row.kind}, {row.direction}).")
            else:
                row = update_metric(session=session, name=args.name, changes=data)
                print(f"Updated metric {row.name!r} ({row.kind}, {row.direction}).")
        except MetricNotFound as exc:
            raise CliError(str(exc)) from None
        except ValueError as exc:
            raise CliError(str(exc)) from None
    return 0


def _cmd_config_export(args: argparse.Namespace) -> int:
    from abcore.experiments.records import list_experiments
    from abcore.io.csv_export import dump_configs, export_config

    engine = _engine(args)
    with _session(engine) as session:
        everything = list_experiments(session=session, include_archived=True)
        refs: list[Any] = args.experiments or [e.id for e in sorted(everything, key=lambda e: e.id)]
        if not refs:
            raise CliError("there are no experiments to export")
        configs = [export_config(session=session, experiment=ref) for ref in refs]
    text = dump_configs(configs)
    if args.file == "-":
        sys.stdout.write(text)
    else:
        try:
            Path(args.file).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {args.file}: {exc.strerror or exc}") from None
        print(f"Wrote {len(configs)} experiment config(s) to {args.file}")
    return 0


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from abcore.api.deps import MAX_BODY_ENV, RATE_LIMIT_ENV

    _engine(args).dispose()  # fail fast (one line) on a missing or uninitialised store
    os.environ["ABCORE_DATABASE_URL"] = args.database_url  # every worker builds its app from the environment
    if args.rate_limit is not None:
        os.environ[RATE_LIMIT_ENV] = str(args.rate_limit)
    if args.max_body_bytes is not None:
        os.environ[MAX_BODY_ENV] = str(args.max_body_bytes)
    print(f"abcore API on http://{args.host}:{args.port} (docs: /docs) over {redact_url(args.database_url)}", file=sys.stderr)
    uvicorn.run(
        "abcore.api:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
        log_level=args.log_level, access_log=args.access_log,
    )
    return 0


def _cmd_api_key(args: argparse.Namespace) -> int:
    from abcore.access.api_keys import create_api_key, list_api_keys, revoke_api_key

    engine = _engine(args)
    with _session(engine) as session:
        if args.key_command == "create":
            info, key = create_api_key(session=session, name=args.name, role=args.role, rate_limit=args.rate_limit)
            print(key)
            print(f"Created API key {info.name!r} ({info.role}). It is shown only this once: store it now.", file=sys.stderr)
        elif args.key_command == "revoke":
            info = revoke_api_key(session=session, name=args.name)
            print(f"Revoked API key {info.name!r} ({info.prefix}...).")
        else:
            keys = list_api_keys(session=session)
            if args.json:
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
                print(_table(("name", "role", "key", "rate limit", "created (UTC)", "status"), rows))
    return 0


# --------------------------------------------------------------------------- parser


def _timestamp(text: str) -> Any:
    from abcore.io.event_import import parse_timestamp

    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _actor(text: str) -> str:
    if not text.strip() or len(text) > 200 or "\x00" in text:
        raise argparse.ArgumentTypeError("the actor must be 1 to 200 characters")
    return text.strip()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a finite number >= 0")
    return value


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("alpha must lie strictly between 0 and 1 (e.g. 0.05)")
    return value


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("the rollout must lie between 0 and 100")
    return value


def _add_analysis_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(
        "--method", choices=METHODS, default="frequentist",
        help=prefix + "frequentist (z-test / Welch), sequential (always-valid, safe to peek) or bayesian "
        "(default frequentist)",
    )
    parser.add_argument(
        "--alpha", type=_alpha, default=None,
        help=prefix + "significance level (default: 1 - the experiment's success confidence, else 0.05)",
    )
    parser.add_argument(
        "--correction", choices=CORRECTIONS, default="holm",
        help=prefix + "multiple-comparison correction across variants x metrics (default holm)",
    )
    parser.add_argument("--cuped", action="store_true", help=prefix + "CUPED variance reduction with pre-experiment data")
    parser.add_argument(
        "--start", type=_timestamp, default=None, metavar="TIME",
        help=prefix + "count events from TIME on (ISO-8601 or epoch seconds; default: when the experiment started)",
    )
    parser.add_argument(
        "--end", type=_timestamp, default=None, metavar="TIME", help=prefix + "count events before TIME (default: all)"
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _cmd_watch(args: argparse.Namespace) -> int:
    import logging

    from abcore.watch.runner import WatchSettings, run_forever, run_pass

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        settings = WatchSettings.from_env()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    engine = make_engine(args.database_url)

    def show(report: Any) -> None:
        if not args.quiet:
            print(report, flush=True)

    try:
        if args.once:
            report = run_pass(engine, settings=settings)
            show(report)
            return 0 if report.ok else 1
        run_forever(engine, every=args.every, settings=settings, on_pass=show)
        return 0
    finally:
        engine.dispose()


def build_parser() -> argparse.ArgumentParser:
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

    init = commands.add_parser("init", help="create or migrate the database to the newest schema")
    init.set_defaults(handler=_cmd_init)

    demo = commands.add_parser("demo", help="load the demo data set (models, experiments, simulated users)")
    demo.add_argument("--if-empty", action="store_true", help="only when the store holds no experiment yet")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulation (default 7)")
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.set_defaults(handler=_cmd_demo)

    listing = commands.add_parser("list", help="list experiments: id, name, status, variants with split, participants")
    listing.add_argument(
        "--status", choices=("draft", "running", "paused", "completed", "cancelled"), help="only this status"
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.add_argument("--archived", action="store_true", help="include archived experiments")
    listing.set_defaults(handler=_cmd_list)

    actor_help = "who is acting, recorded in the audit log (default: $USER or 'cli')"
    for action, description in LIFECYCLE_COMMANDS.items():
        sub = commands.add_parser(action, help=description, description=description)
        sub.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
        sub.add_argument("--actor", type=_actor, default=_default_actor(), help=actor_help)
        sub.set_defaults(handler=_lifecycle(action))

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
    edit.add_argument("--traffic", type=_percent, metavar="PCT", help="share of eligible traffic that enters, in %%")
    edit.add_argument("--dry-run", action="store_true", help="show the changes without saving them")
    edit.add_argument("--actor", type=_actor, default=_default_actor(), help=actor_help)
    edit.set_defaults(handler=_cmd_edit)

    clone = commands.add_parser("clone", help="copy an experiment's configuration into a new draft")
    clone.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id to copy")
    clone.add_argument("name", metavar="NAME", help="name of the new draft")
    clone.add_argument("--keep-salt", action="store_true",
                       help="keep the salt: every user lands in the same variant as in the original")
    clone.add_argument("--actor", type=_actor, default=_default_actor(), help=actor_help)
    clone.set_defaults(handler=_cmd_clone)

    archive = commands.add_parser("archive", help="hide a completed or cancelled experiment from listings")
    archive.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
    archive.add_argument("--restore", action="store_true", help="un-archive it instead")
    archive.add_argument("--actor", type=_actor, default=_default_actor(), help=actor_help)
    archive.set_defaults(handler=_cmd_archive)

    for name, text, comment_help in (
        ("approve", "approve a draft's current configuration (when approvals are required)", "optional comment"),
        ("reject", "reject a draft, saying what must change", "what must change (required)"),
        ("request-approval", "ask approvers to look at a draft", "optional comment"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
        sub.add_argument("--comment", default="", required=name == "reject", help=comment_help)
        sub.add_argument("--actor", type=_actor, default=_default_actor(), help=actor_help)
        sub.set_defaults(handler=_cmd_approval)

    settings = commands.add_parser("settings", help="show or change per-store settings")
    setting_commands = settings.add_subparsers(dest="setting", required=True, metavar="SETTING")
    ra = setting_commands.add_parser("require-approval", help="drafts need an approval before they start: on | off")
    ra.add_argument("value", nargs="?", choices=("on", "off"), help="omit to show the current value")
    ra.add_argument("--actor", type=_actor, default=_default_actor(), help=actor_help)
    ra.set_defaults(handler=_cmd_settings)

    ship = commands.add_parser(
        "ship", help="serve the winning variant of a completed experiment", description="completed: ship a winner"
    )
    ship.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
    ship.add_argument("variant", metavar="VARIANT", help="winning variant name or id")
    ship.add_argument("--rollout", type=_percent, default=100.0, help="percent of users served the winner (default 100)")
    ship.add_argument("--actor", type=_actor, default=_default_actor(), help=actor_help)
    ship.set_defaults(handler=_cmd_ship)

    analyze = commands.add_parser(
        "analyze",
        help="analyse an experiment: per-variant totals and conversions, effect, p-value, CI",
        description="Analyse an experiment. Without --json a table is printed to stdout.",
    )
    analyze.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
    analyze.add_argument("--json", metavar="FILE", help="write the full results as JSON to FILE ('-' = stdout)")
    _add_analysis_options(analyze)
    analyze.add_argument(
        "--engine", choices=("store", "duckdb", "spark"), default="store",
        help="where the metric query runs: the store's database (default), embedded DuckDB over the store or "
        "the --source files (extra 'duckdb'), or Spark SQL (extra 'spark')",
    )
    analyze.add_argument("--source", metavar="FILE.json", default=None,
                         help="event source config (events / exposures tables or Parquet/CSV files; README: "
                         "Analysis engines); default the store's tables")
    analyze.set_defaults(handler=_cmd_analyze)

    st = commands.add_parser(
        "stats",
        help="per-variant sufficient statistics of metric definitions on an engine (store, duckdb, spark), as JSON",
        description="Run the analysis query built from metric definitions on an engine and print its rows as JSON.",
    )
    st.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id (the key with an exposure table)")
    st.add_argument("--metrics", metavar="FILE.json", required=True,
                    help="metric definitions: a JSON object or list (name, kind, window_hours, cap, ...)")
    st.add_argument("--engine", choices=("store", "duckdb", "spark"), default="store")
    st.add_argument("--source", metavar="FILE.json", help="event source config (see README: Analysis engines)")
    st.add_argument("--segment", help="break down by this assignment attribute / exposure column")
    st.add_argument("--cuped", action="store_true", help="add the pre-exposure covariate sums")
    st.add_argument("--start", help="count only events from this UTC datetime (ISO)")
    st.add_argument("--end", help="count only exposures and events before this UTC datetime (ISO)")
    st.set_defaults(handler=_cmd_stats)

    export = commands.add_parser(
        "export",
        help="export results, assignments or events of an experiment as CSV",
        description="Stream one experiment's results, assignments or events to a CSV file (header row, ISO-8601 UTC times).",
    )
    export.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
    export.add_argument("--what", choices=("results", "assignments", "events"), required=True, help="what to export")
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="CSV file to write ('-' = stdout)")
    export.add_argument("--chunk-size", type=_positive_int, default=5000, help="rows fetched per query (default 5000)")
    _add_analysis_options(export, prefix="for --what results: ")
    export.add_argument("--quiet", action="store_true", help="no progress output")
    export.add_argument(
        "--exact", dest="csv_mode", action="store_const", const="exact", default="safe",
        help="write cells exactly as stored, for machine consumers (default: safe for spreadsheets, a "
             "leading ' before cells starting with = + - @ tab or CR)",
    )
    export.set_defaults(handler=_cmd_export)

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
    imp.add_argument("--batch-size", type=_positive_int, default=2000, help="records per transaction (default 2000)")
    imp.add_argument("--show-bad", type=int, default=20, metavar="N", help="print at most N bad lines (default 20)")
    imp.add_argument("--strict", action="store_true", help="exit with code 1 when any line was bad")
    imp.add_argument("--quiet", action="store_true", help="no progress output")
    imp.set_defaults(handler=_cmd_import_events)

    config = commands.add_parser(
        "config",
        help="import or export experiment definitions as JSON",
        description='Experiment definitions in JSON: {"experiment_id", "salt", "variants": [{"name", "weight"}]}.',
    )
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    cimp = config_commands.add_parser("import", help="create draft experiments from a JSON file (one object or a list)")
    cimp.add_argument("file", metavar="FILE.json")
    cimp.add_argument("--actor", type=_actor, default=_default_actor(), help=actor_help)
    cimp.set_defaults(handler=_cmd_config_import)
    cexp = config_commands.add_parser("export", help="write experiment definitions to a JSON file")
    cexp.add_argument("file", metavar="FILE.json", help="file to write ('-' = stdout)")
    cexp.add_argument(
        "experiments", nargs="*", metavar="EXPERIMENT",
        help="experiments to export (default: all). One experiment is written as an object, several as a list.",
    )
    cexp.set_defaults(handler=_cmd_config_export)

    watch = commands.add_parser(
        "watch",
        help="apply the experiments' stopping rules, store result snapshots, send alerts (webhooks)",
        description=(
            "Analyse every running experiment with the sequential (always-valid) method, store a result "
            "snapshot, apply its auto_stop rules (pause/stop, audited as actor 'watch') and post alerts to "
            "$ABCORE_WEBHOOK_URLS and the dashboard's webhooks. --once for cron, --every SECONDS as a service."
        ),
    )
    when = watch.add_mutually_exclusive_group(required=True)
    when.add_argument("--once", action="store_true", help="one pass, then exit (exit code 1 when the pass had errors)")
    when.add_argument("--every", type=_positive_float, metavar="SECONDS", help="a pass every SECONDS until interrupted")
    watch.add_argument("--quiet", action="store_true", help="no summary line per pass")
    watch.set_defaults(handler=_cmd_watch)
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
    mlist.set_defaults(handler=_cmd_metrics)
    mdef = metrics_commands.add_parser("define", help="define a new metric from a JSON object")
    mdef.add_argument("json_data", metavar="JSON")
    mdef.set_defaults(handler=_cmd_metrics)
    mupd = metrics_commands.add_parser("update", help="change fields of a metric (JSON object of the fields)")
    mupd.add_argument("name", metavar="NAME")
    mupd.add_argument("json_data", metavar="JSON")
    mupd.set_defaults(handler=_cmd_metrics)

    hp = commands.add_parser(
        "hash-password",
        help="prompt for a password and print its salted hash (for secrets.toml / $ABCORE_USERS)",
    )
    hp.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin, no prompt")
    hp.set_defaults(handler=_cmd_hash_password)

    api = commands.add_parser(
        "api", help="serve the HTTP API (FastAPI + uvicorn; OpenAPI at /openapi.json, docs at /docs)",
        description="Serve the HTTP API. Requests need an API key: `abcore api-key create NAME --role ROLE`.",
    )
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    api.add_argument("--port", type=_positive_int, default=8000, help="port (default 8000)")
    api.add_argument("--workers", type=_positive_int, default=1, help="worker processes (default 1)")
    api.add_argument(
        "--rate-limit", type=_non_negative, default=None, metavar="PER_SECOND",
        help="requests per second per key and worker for keys without their own limit (default 100; 0: unlimited)",
    )
    api.add_argument(
        "--max-body-bytes", type=_positive_int, default=None, metavar="BYTES",
        help="larger request bodies get 413 (default 1048576)",
    )
    api.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info")
    api.add_argument("--no-access-log", dest="access_log", action="store_false", help="do not log every request")
    api.set_defaults(handler=_cmd_api)

    keys = commands.add_parser("api-key", help="create, list or revoke API keys of the HTTP API")
    key_commands = keys.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    kc = key_commands.add_parser("create", help="create a key and print it (shown only once; stored hashed)")
    kc.add_argument("name", metavar="NAME", help="the key's name (recorded as actor in the audit log)")
    kc.add_argument("--role", choices=("viewer", "editor", "service"), required=True,
                    help="viewer: read; editor: read, manage, assign and track; service: assign and track only")
    kc.add_argument("--rate-limit", type=_non_negative, default=None, metavar="PER_SECOND",
                    help="this key's requests per second (default: the server's; 0: unlimited)")
    kl = key_commands.add_parser("list", help="list keys (name, role, key prefix, status); never the keys")
    kl.add_argument("--json", action="store_true", help="print JSON instead of a table")
    kr = key_commands.add_parser("revoke", help="revoke a key (requests with it get 401 within 5 s)")
    kr.add_argument("name", metavar="NAME")
    keys.set_defaults(handler=_cmd_api_key)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import DataError, OperationalError

    from abcore.access.users import AuthConfigError
    from abcore.experiments.errors import ExperimentError
    from abcore.io.csv_export import ExportError
    from abcore.io.event_import import ImportError_

    return (CliError, ExperimentError, ExportError, ImportError_, AuthConfigError, OperationalError, DataError)


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
            print(f"error: {_first_line(exc)}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
