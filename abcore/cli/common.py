"""What every command group of the CLI shares: the store, sessions, tables, argument types, progress."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from abcore.config import redact_url
from abcore.errors import Invalid
from abcore.store.db import make_engine

ACTOR_HELP = "who is acting, recorded in the audit log (default: $USER or 'cli')"


class CliError(Invalid):
    """An expected failure of a command: printed as ``error: <message>`` and exit code 1."""


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
        """Redraw the line with ``count`` (and ``fraction`` done, 0..1) unless drawn less than ``interval`` ago."""
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
        """End the progress line (a newline) if anything was drawn."""
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def show_progress(args: argparse.Namespace) -> bool:
    """True when progress should be drawn: stderr is a terminal and ``--quiet`` was not given."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def open_store(args: argparse.Namespace) -> Any:
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
        raise CliError(f"cannot open the database at {redact_url(args.database_url)}: {first_line(exc)}") from None
    if revision is None:
        raise CliError(f"the database at {redact_url(args.database_url)} is not initialised; run `abcore init` first")
    return engine


def new_session(engine: Any) -> Any:
    """A session on ``engine`` whose objects stay readable after commit."""
    from sqlmodel import Session

    return Session(engine, expire_on_commit=False)


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (the driver's message for a SQLAlchemy error)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def default_actor() -> str:
    """The actor recorded when ``--actor`` is not given: ``$USER``, ``$USERNAME`` or ``cli``."""
    return os.environ.get("USER") or os.environ.get("USERNAME") or "cli"


def add_actor(parser: argparse.ArgumentParser) -> None:
    """Add the ``--actor`` option of the commands that write the audit log."""
    parser.add_argument("--actor", type=parse_actor, default=default_actor(), help=ACTOR_HELP)


def write_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8); CliError naming the file when it cannot be written."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
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


# --------------------------------------------------------------------------- argument types


def parse_timestamp(text: str) -> Any:
    """An ISO-8601 or epoch-seconds time (a UTC datetime), as the event importer reads it."""
    from abcore.io.event_records import parse_timestamp as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_actor(text: str) -> str:
    """An actor name: 1 to 200 characters, no NUL, stripped."""
    if not text.strip() or len(text) > 200 or "\x00" in text:
        raise argparse.ArgumentTypeError("the actor must be 1 to 200 characters")
    return text.strip()


def parse_positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_non_negative(text: str) -> float:
    """A finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a finite number >= 0")
    return value


def parse_alpha(text: str) -> float:
    """A significance level strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("alpha must lie strictly between 0 and 1 (e.g. 0.05)")
    return value


def parse_percent(text: str) -> float:
    """A percentage between 0 and 100."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("the rollout must lie between 0 and 100")
    return value


def parse_seconds(text: str) -> float:
    """A finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value
