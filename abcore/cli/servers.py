"""Long-running commands: ``abcore api`` (HTTP API), ``abcore dashboard`` (Streamlit) and ``abcore watch``
(stopping rules and alerts)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from abcore.cli.common import open_store, parse_non_negative, parse_positive_int, parse_seconds
from abcore.config import DATABASE_URL_ENV, SETTINGS, redact_url, setting
from abcore.store.db import make_engine


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the HTTP API with uvicorn over ``--database-url`` (checked first: one line when unusable)."""
    import uvicorn

    open_store(args).dispose()  # fail fast (one line) on a missing or uninitialised store
    os.environ[DATABASE_URL_ENV] = args.database_url  # every worker builds its app from the environment
    if args.rate_limit is not None:
        os.environ[SETTINGS["api_rate_limit"].env] = str(args.rate_limit)
    if args.data_rate_limit is not None:
        os.environ[SETTINGS["api_data_rate_limit"].env] = str(args.data_rate_limit)
    if args.max_body_bytes is not None:
        os.environ[SETTINGS["api_max_body_bytes"].env] = str(args.max_body_bytes)
    print(f"abcore API on http://{args.host}:{args.port} (docs: /docs) over {redact_url(args.database_url)}", file=sys.stderr)
    uvicorn.run(
        "abcore.api.app:serve_app", factory=True, host=args.host, port=args.port, workers=args.workers,
        log_level=args.log_level, access_log=args.access_log,
    )
    return 0


#: The Streamlit options the dashboard runs with, given on the command line so that an installed package
#: needs no ``.streamlit/config.toml``: headless, no usage statistics, no rerun on save, the dashboard's own
#: sidebar menu instead of Streamlit's page list (which would show the files under ``pages/`` on the first
#: paint), a minimal toolbar, no tracebacks in the browser, and the theme.
STREAMLIT_OPTIONS: tuple[tuple[str, str], ...] = (
    ("server.headless", "true"),
    ("server.runOnSave", "false"),
    ("browser.gatherUsageStats", "false"),
    ("client.showSidebarNavigation", "false"),
    ("client.toolbarMode", "minimal"),
    ("client.showErrorDetails", "none"),
    ("theme.primaryColor", "#4f46e5"),
    ("theme.base", "light"),
)


def streamlit_command(host: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """The command that serves the dashboard on ``host:port``: ``python -m streamlit run <APP_PATH>`` with
    :data:`STREAMLIT_OPTIONS`, then ``extra`` options (which win over them)."""
    from abcore.dashboard import APP_PATH

    command = [sys.executable, "-m", "streamlit", "run", str(APP_PATH), "--server.address", host, "--server.port", str(port)]
    for name, value in STREAMLIT_OPTIONS:
        command += [f"--{name}", value]
    return [*command, *extra]


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the dashboard over ``--database-url`` (migrated on first use) until interrupted; returns
    Streamlit's exit code.

    Unless ``--no-watch``, the watcher runs alongside (:func:`start_watcher`): stopping rules that are on
    are applied without a second command. It stops with the dashboard and never delays the exit.
    """
    environment = {**os.environ, DATABASE_URL_ENV: args.database_url}
    print(f"abcore dashboard on http://{args.host}:{args.port} over {redact_url(args.database_url)}", file=sys.stderr)
    every = args.watch_every or setting("watch_every")  # a bad $ABCORE_WATCH_EVERY: SettingError, one line
    watcher = None if args.no_watch else start_watcher(args.database_url, every=every)
    try:
        return subprocess.call(streamlit_command(args.host, args.port), env=environment)
    finally:
        if watcher is not None:
            watcher.stop()


class BackgroundWatcher:
    """The watcher loop (:func:`abcore.watch.runner.run_forever`) on a daemon thread; :meth:`stop` ends it."""

    def __init__(self, database_url: str, every: float) -> None:
        import threading

        self.every = every
        self.engine = make_engine(database_url)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="abcore-watch", daemon=True)

    def _run(self) -> None:
        from abcore.store.db import init_db
        from abcore.watch.runner import run_forever

        # A fresh store is migrated first (as the dashboard does on first use), so the first pass counts. A store
        # busy at that moment (another process migrating or writing: "database is locked") is retried every
        # second until it answers or the dashboard stops; the watcher never gives up on a transient lock.
        while not self.stopping.is_set():
            try:
                init_db(self.engine)
                break
            except Exception as exc:  # noqa: BLE001 - store trouble at start: try again
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                print(f"abcore watcher: the store is not ready ({first_line}); retrying in 1 s", file=sys.stderr)
                self.stopping.wait(1.0)
        try:
            if not self.stopping.is_set():
                run_forever(self.engine, every=self.every, stop=self.stopping)
        except Exception as exc:  # noqa: BLE001 - a bad webhook setting: the dashboard still serves, red status
            print(f"abcore watcher stopped: {exc}", file=sys.stderr)

    def stop(self, wait: float = 2.0) -> None:
        """Ask the loop to end and wait at most ``wait`` seconds (a pass in progress is left to the daemon
        thread: exit never hangs on it)."""
        self.stopping.set()
        self.thread.join(timeout=wait)
        if not self.thread.is_alive():
            self.engine.dispose()


def start_watcher(database_url: str, *, every: float) -> BackgroundWatcher:
    """Start the watcher on a daemon thread of this process: a pass now, then every ``every`` seconds,
    each recorded in the store (the dashboard's "last pass" line)."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    watcher = BackgroundWatcher(database_url, every)
    watcher.thread.start()
    print(f"abcore watcher: a pass every {every:g} s (stopping rules, snapshots, alerts; --no-watch to turn off)",
          file=sys.stderr)
    return watcher


def cmd_watch(args: argparse.Namespace) -> int:
    """One watcher pass (``--once``; exit code 1 when it had errors) or a pass every ``--every`` seconds."""
    import logging

    from abcore.watch.runner import run_forever, run_pass
    from abcore.watch.webhooks import WatchSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    settings = WatchSettings.from_env()  # a bad webhook setting: SettingError, one line
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


def add_watch_command(commands: Any) -> None:
    """Add ``watch`` to the ``commands`` subparsers."""
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
    when.add_argument("--every", type=parse_seconds, metavar="SECONDS", help="a pass every SECONDS until interrupted")
    watch.add_argument("--quiet", action="store_true", help="no summary line per pass")
    watch.set_defaults(handler=cmd_watch)


def add_server_commands(commands: Any) -> None:
    """Add ``api`` and ``dashboard`` to the ``commands`` subparsers."""
    api = commands.add_parser(
        "api", help="serve the HTTP API (FastAPI + uvicorn; OpenAPI at /openapi.json, docs at /docs)",
        description="Serve the HTTP API. Requests need an API key: `abcore api-key create NAME --role ROLE`.",
    )
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    api.add_argument("--port", type=parse_positive_int, default=8000, help="port (default 8000)")
    api.add_argument(
        "--workers", type=parse_positive_int, default=1,
        help="worker processes (default 1; each has its own engine, assigner and rate buckets)",
    )
    api.add_argument(
        "--rate-limit", type=parse_non_negative, default=None, metavar="PER_SECOND",
        help="management routes: requests per second per key and worker for keys without their own limit "
        "(default 100; 0: unlimited)",
    )
    api.add_argument(
        "--data-rate-limit", type=parse_non_negative, default=None, metavar="PER_SECOND",
        help="data plane (assign, conversions, events): the same (default 0: not throttled)",
    )
    api.add_argument(
        "--max-body-bytes", type=parse_positive_int, default=None, metavar="BYTES",
        help="larger request bodies get 413 (default 1048576)",
    )
    api.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info")
    api.add_argument("--no-access-log", dest="access_log", action="store_false", help="do not log every request")
    api.set_defaults(handler=cmd_api)

    dashboard = commands.add_parser(
        "dashboard", help="serve the dashboard (Streamlit) for researchers",
        description="Serve the dashboard from the installed package (no checkout needed), with the watcher "
        "(stopping rules, snapshots, alerts) running alongside unless --no-watch. Sign-in users come from "
        ".streamlit/secrets.toml in the working directory or $ABCORE_USERS; without any, it is open.",
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dashboard.add_argument("--port", type=parse_positive_int, default=8501, help="port (default 8501)")
    dashboard.add_argument("--no-watch", action="store_true",
                           help="do not run the watcher alongside (run `abcore watch` as a service instead)")
    dashboard.add_argument("--watch-every", type=parse_seconds, default=None, metavar="SECONDS",
                           help="seconds between the watcher's passes (default $ABCORE_WATCH_EVERY or 300)")
    dashboard.set_defaults(handler=cmd_dashboard)
