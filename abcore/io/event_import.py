"""Event import: offline logs (CSV or JSON lines) into the event log, idempotently.

Each input record names a user, an experiment (name or id), usually a variant, an
event type, optionally a metric and value, and a timestamp. Accepted field names
(aliases on the right)::

    user_id      user, uid
    experiment   experiment_id, experiment_name        (name or numeric id)
    variant      variant_name, variant_id              (name, or numeric id of the experiment's variant)
    event_type   event, type
    metric_name  metric
    value
    ts           timestamp, time                       (ISO-8601, naive = UTC; or epoch seconds)
    request_id
    event_id     id                                    (idempotency key when present)

Any other field is kept in the event's ``properties``. Rules:

* A bad record (missing or unknown experiment, user, variant, event type; an
  unparsable timestamp or value; NaN; a field too long) is reported with its line
  number and skipped; the good records land.
* A hostile record (an integer of hundreds or thousands of digits, arrays nested 100,000
  deep, a timestamp whose UTC time falls outside years 1-9999) is a bad line like any other:
  reported with a short reason, never a traceback.
* A user without an assignment gets one, to the record's variant (that is how offline
  logs enter); a record whose variant conflicts with the stored assignment is bad.
  A variant-less record of a user not assigned yet is held back and retried after the
  whole file: it lands when any line of the file assigns the user, so the outcome does
  not depend on line order, and importing twice (or again after a killed run) equals
  importing once.
* Importing the same file twice never double-counts: every event gets an ``event_key``
  (``id:<experiment id>:<event_id>``, or a SHA-256 of its content) and rows are inserted
  with ``ON CONFLICT DO NOTHING``.
* A conversion without a metric counts for the experiment's primary metric, with value 1.
* Work proceeds in batches (one transaction each), so memory is constant and an
  interrupted import can simply be rerun.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from abcore.errors import Invalid
from abcore.io.event_records import ALIASES, KNOWN_KEYS, EventRecord, Resolver, build_record, has_nul
from abcore.store.tables import ExperimentEvent, UserAssignment

Format = Literal["auto", "csv", "jsonl"]
DEFAULT_BATCH_SIZE = 2_000
MAX_REPORTED_BAD_LINES = 1_000


class ImportError_(Invalid, ValueError):
    """The import cannot run at all (missing file, unknown format); the message is user-readable."""


@dataclass(frozen=True)
class BadLine:
    """A skipped record: its (1-based) line number in the file and why."""

    line: int
    reason: str


@dataclass
class ImportSummary:
    """What an import did. ``imported + duplicates + bad == records``."""

    records: int = 0
    imported: int = 0
    duplicates: int = 0
    bad: int = 0
    assignments_created: int = 0
    # Valid records dated before their experiment's start (or for a never-started experiment): the
    # analysis window begins at ``started_at`` by default, so these need ``analyze --start``.
    before_start: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)

    def add_bad(self, line: int, reason: str) -> None:
        self.bad += 1
        if len(self.bad_lines) < MAX_REPORTED_BAD_LINES:
            self.bad_lines.append(BadLine(line, reason))

    def __str__(self) -> str:
        return (
            f"{self.records:,} records: {self.imported:,} imported, {self.duplicates:,} already present, "
            f"{self.bad:,} bad (skipped); {self.assignments_created:,} new assignments"
        )



class _CountingReader(io.RawIOBase):
    """A binary stream that counts the bytes read through it (for progress)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n


# --------------------------------------------------------------------------- reading


def _detect_format(path: Path, head: bytes) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def _iter_jsonl(stream: IO[bytes]) -> Iterator[tuple[int, Mapping[str, Any] | None, str]]:
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, None, "not valid UTF-8"
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
            continue
        except RecursionError:
            yield number, None, "not accepted: arrays or objects nested too deeply"
            continue
        except ValueError:  # Python refuses integers beyond sys.get_int_max_str_digits() digits
            yield number, None, f"not accepted: a number has more than {sys.get_int_max_str_digits():,} digits"
            continue
        if "\\u0000" in text and has_nul(data):  # PostgreSQL text cannot hold NUL
            yield number, None, "contains a NUL character"
            continue
        if not isinstance(data, dict):
            yield number, None, f"expected a JSON object, got {type(data).__name__}"
            continue
        yield number, data, ""


def _decoded_lines(stream: IO[bytes], undecodable: set[int]) -> Iterator[str]:
    """The lines of ``stream`` as text (a leading BOM dropped); a line that is not UTF-8 is decoded with
    replacement characters and its 1-based number added to ``undecodable``."""
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            undecodable.add(number)
            yield raw.decode("utf-8", errors="replace")


def _read_csv_header(reader: Any) -> list[str] | None:
    """The stripped field names of the CSV header (None for an empty file).

    Raises :class:`ImportError_` when the header cannot be parsed or names none of the known fields.
    """
    try:
        header = next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        raise ImportError_(f"cannot read the CSV header: {exc}") from None
    header = [h.strip() for h in header]
    if not any(h in KNOWN_KEYS for h in header):
        raise ImportError_(f"the CSV header names none of the expected fields ({', '.join(sorted(ALIASES))})")
    return header


def _csv_row_problem(row: list[str], header: list[str], lines: range, undecodable: set[int]) -> str:
    """Why the CSV ``row`` spanning file ``lines`` is bad ("" when it is good): not UTF-8, a field count
    other than the header's, or a NUL character, checked in that order."""
    if any(n in lines for n in undecodable):
        return "not valid UTF-8"
    if len(row) != len(header):
        return f"has {len(row)} fields, the header has {len(header)}"
    if any("\x00" in c for c in row):
        return "contains a NUL character"
    return ""


def _iter_csv(stream: IO[bytes]) -> Iterator[tuple[int, Mapping[str, Any] | None, str]]:
    """``(first line number, record or None, problem)`` for each non-blank CSV row after the header.

    Raises :class:`ImportError_` (see :func:`_read_csv_header`) when the header is unusable.
    """
    undecodable: set[int] = set()
    reader = csv.reader(_decoded_lines(stream, undecodable))
    header = _read_csv_header(reader)
    if header is None:
        return
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, None, f"malformed CSV ({exc})"
            start = reader.line_num + 1
            continue
        end = reader.line_num
        if row and any(c.strip() for c in row):
            problem = _csv_row_problem(row, header, range(start, end + 1), undecodable)
            yield start, (None if problem else dict(zip(header, row, strict=True))), problem
        start = end + 1


# --------------------------------------------------------------------------- writing


def _dialect_insert(connection: Connection) -> Any:
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif connection.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - abcore supports SQLite and PostgreSQL
        raise ImportError_(f"event import supports SQLite and PostgreSQL, not {connection.dialect.name}")
    return insert


def _write_batch(
    connection: Connection, records: list[EventRecord], summary: ImportSummary, deferred: list[EventRecord] | None = None
) -> None:
    """Insert one batch in the caller's transaction: missing assignments first, then events.

    A variant-less record of a user without an assignment goes to ``deferred`` (when given) instead of
    being bad: a later line of the file may assign the user, and the record is retried at the end.
    """
    insert = _dialect_insert(connection)
    stored = _stored_assignments(connection, records)
    good, new_assignments = _resolve_variants(records, stored, summary, deferred)
    if new_assignments:
        good = _insert_assignments(connection, insert, new_assignments, stored, good, summary)
    _insert_events(connection, insert, good, summary)


def _stored_assignments(connection: Connection, records: list[EventRecord]) -> dict[tuple[int, str], int]:
    """``{(experiment_id, user_id): variant_id}`` of the stored assignments of the batch's users."""
    assignments = UserAssignment.__table__  # type: ignore[attr-defined]
    wanted: dict[int, set[str]] = {}
    for r in records:
        wanted.setdefault(r.experiment_id, set()).add(r.user_id)
    stored: dict[tuple[int, str], int] = {}
    for experiment_id, users in wanted.items():
        for row in connection.execute(
            select(assignments.c.user_id, assignments.c.variant_id).where(
                assignments.c.experiment_id == experiment_id, assignments.c.user_id.in_(sorted(users))
            )
        ):
            stored[(experiment_id, row[0])] = row[1]
    return stored


def _resolve_variants(
    records: list[EventRecord], stored: dict[tuple[int, str], int], summary: ImportSummary,
    deferred: list[EventRecord] | None,
) -> tuple[list[EventRecord], dict[tuple[int, str], tuple[int, datetime]]]:
    """Each record's variant (set in place): the stored assignment, else the first record of an unassigned
    user decides (its earliest timestamp is the assignment time). Returns the good records and the
    assignments to create; conflicting records are reported bad, variant-less unassigned ones deferred."""
    new_assignments: dict[tuple[int, str], tuple[int, datetime]] = {}
    good: list[EventRecord] = []
    for r in records:
        key = (r.experiment_id, r.user_id)
        current = stored.get(key)
        if current is None and key in new_assignments:
            current = new_assignments[key][0]
        if current is None:
            if r.variant_id is None:
                if deferred is not None:
                    deferred.append(r)
                else:
                    summary.add_bad(r.line, f"user {r.user_id[:80]!r} has no assignment and the line names no variant")
                continue
            new_assignments[key] = (r.variant_id, r.ts)
        elif r.variant_id is None:
            r.variant_id = current
        elif r.variant_id != current:
            summary.add_bad(r.line, f"variant conflicts with the stored assignment of user {r.user_id[:80]!r}")
            continue
        if key in new_assignments and r.ts < new_assignments[key][1]:
            new_assignments[key] = (new_assignments[key][0], r.ts)
        good.append(r)
    return good, new_assignments


def _insert_assignments(
    connection: Connection, insert: Any, new_assignments: dict[tuple[int, str], tuple[int, datetime]],
    stored: dict[tuple[int, str], int], good: list[EventRecord], summary: ImportSummary,
) -> list[EventRecord]:
    """Create the missing assignments (``ON CONFLICT DO NOTHING``). When another writer assigned some of
    these users meanwhile, their records that disagree with the stored variant are reported bad; returns
    the records still good."""
    assignments = UserAssignment.__table__  # type: ignore[attr-defined]
    # executemany (SQLAlchemy's "insertmanyvalues"): one cached statement, batched, RETURNING the inserted ids.
    result = connection.execute(
        insert(assignments)
        .on_conflict_do_nothing(index_elements=["experiment_id", "user_id"])
        .returning(assignments.c.id),
        [
            {"experiment_id": e, "user_id": u, "variant_id": v, "attributes": {}, "assigned_at": ts}
            for (e, u), (v, ts) in new_assignments.items()
        ],
    )
    created = len(result.all())
    summary.assignments_created += created
    if created == len(new_assignments):
        return good
    for experiment_id, user_id in new_assignments:  # someone assigned some of these users meanwhile: re-check
        row = connection.execute(
            select(assignments.c.variant_id).where(
                assignments.c.experiment_id == experiment_id, assignments.c.user_id == user_id
            )
        ).first()
        if row is not None:
            stored[(experiment_id, user_id)] = row[0]
    kept = []
    for r in good:
        actual = stored.get((r.experiment_id, r.user_id))
        if actual is not None and actual != r.variant_id:
            summary.add_bad(r.line, f"variant conflicts with the stored assignment of user {r.user_id[:80]!r}")
        else:
            kept.append(r)
    return kept


def _insert_events(connection: Connection, insert: Any, good: list[EventRecord], summary: ImportSummary) -> None:
    """Insert the events, deduplicated within the batch and ``ON CONFLICT DO NOTHING`` against earlier
    imports; counts imported rows and duplicates in ``summary``."""
    events = ExperimentEvent.__table__  # type: ignore[attr-defined]
    unique: dict[str, EventRecord] = {}
    for r in good:
        if r.event_key in unique:
            summary.duplicates += 1
        else:
            unique[r.event_key] = r
    if not unique:
        return
    result = connection.execute(
        insert(events).on_conflict_do_nothing(index_elements=["event_key"]).returning(events.c.id),
        [
            {
                "experiment_id": r.experiment_id,
                "variant_id": r.variant_id,
                "user_id": r.user_id,
                "event_type": r.event_type,
                "metric_name": r.metric_name,
                "value": r.value,
                "request_id": r.request_id,
                "properties": r.properties,
                "ts": r.ts,
                "event_key": r.event_key,
            }
            for r in unique.values()
        ],
    )
    inserted = len(result.all())
    summary.imported += inserted
    summary.duplicates += len(unique) - inserted


def _flush(
    engine: Engine, records: list[EventRecord], summary: ImportSummary, deferred: list[EventRecord] | None = None
) -> None:
    """Write a batch in one transaction; if the database refuses it, retry record by record.

    Records put aside for later (see :func:`_write_batch`) reach ``deferred`` only once their
    transaction committed.
    """
    if not records:
        return
    trial = ImportSummary()
    trial_deferred: list[EventRecord] | None = [] if deferred is not None else None
    try:
        with engine.begin() as connection:
            _write_batch(connection, records, trial, trial_deferred)
    except SQLAlchemyError:
        for record in records:
            single = ImportSummary()
            single_deferred: list[EventRecord] | None = [] if deferred is not None else None
            try:
                with engine.begin() as connection:
                    _write_batch(connection, [record], single, single_deferred)
            except SQLAlchemyError as exc:
                summary.add_bad(record.line, f"rejected by the database ({type(exc.orig or exc).__name__})")
                continue
            _merge(summary, single)
            if deferred is not None and single_deferred:
                deferred.extend(single_deferred)
        return
    _merge(summary, trial)
    if deferred is not None and trial_deferred:
        deferred.extend(trial_deferred)


def _merge(summary: ImportSummary, part: ImportSummary) -> None:
    summary.imported += part.imported
    summary.duplicates += part.duplicates
    summary.assignments_created += part.assignments_created
    for bad in part.bad_lines:
        summary.add_bad(bad.line, bad.reason)
    summary.bad += part.bad - len(part.bad_lines)


def _import_parsed(
    engine: Engine,
    parsed: Iterator[tuple[int, Mapping[str, Any] | None, str]],
    summary: ImportSummary,
    deferred: list[EventRecord],
    batch_size: int,
    on_batch: Callable[[], None] | None,
) -> None:
    """Build records from ``parsed`` and write them in batches of ``batch_size``; counts land in ``summary``.

    ``on_batch`` is called after each full batch is written; the last, partial batch is written too.
    Variant-less records of users not yet assigned are appended to ``deferred`` (not written here).
    """
    with engine.connect() as connection:
        resolver = Resolver(connection)
        batch: list[EventRecord] = []
        for line, data, problem in parsed:
            summary.records += 1
            record = _record_or_bad(line, data, problem, resolver, summary)
            if record is not None:
                batch.append(record)
            if len(batch) >= batch_size:
                connection.rollback()  # end the resolver's read transaction (SQLite lock)
                _flush(engine, batch, summary, deferred)
                batch = []
                if on_batch is not None:
                    on_batch()
        connection.rollback()
        _flush(engine, batch, summary, deferred)


def _record_or_bad(
    line: int, data: Mapping[str, Any] | None, problem: str, resolver: Resolver, summary: ImportSummary
) -> EventRecord | None:
    """The record of one parsed line, or None after counting the line as bad in ``summary``.

    A good record dated before its experiment's start (or of a never-started experiment) is counted in
    ``summary.before_start``.
    """
    if data is None:
        summary.add_bad(line, problem)
        return None
    try:
        record = build_record(line, data, resolver)
    except ValueError as exc:
        summary.add_bad(line, str(exc)[:300])
        return None
    except (ArithmeticError, RecursionError) as exc:  # a hostile line never aborts the import
        summary.add_bad(line, f"not accepted ({type(exc).__name__}: {str(exc)[:200]})")
        return None
    started = resolver.started_at.get(record.experiment_id)
    if started is None or record.ts < started:
        summary.before_start += 1
    return record


def import_events(
    *,
    engine: Engine,
    path: str | Path,
    format: Format = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int, int, int], None] | None = None,
) -> ImportSummary:
    """Import the events of a CSV or JSON-lines file; returns what happened.

    ``format`` "auto" decides by extension (.csv / .jsonl .ndjson .json), else by the
    first byte. ``progress(records, bytes_read, total_bytes)`` is called after each batch.
    Raises :class:`ImportError_` when the file cannot be read at all; individual bad
    records never raise, they are counted and listed in ``summary.bad_lines``
    (the first :data:`MAX_REPORTED_BAD_LINES`). Variant-less records of users not yet assigned
    are held in memory until the whole file is read, then written (see the module docstring).
    """
    path = Path(path)
    if batch_size < 1:
        raise ImportError_("batch_size must be at least 1")
    if not path.is_file():
        raise ImportError_(f"{path}: no such file")
    total = path.stat().st_size
    summary = ImportSummary()
    deferred: list[EventRecord] = []
    with path.open("rb") as raw:
        head = raw.read(4096)
        raw.seek(0)
        kind = _detect_format(path, head) if format == "auto" else format
        if kind not in ("csv", "jsonl"):
            raise ImportError_(f"unknown format {format!r} (csv or jsonl)")
        counter = _CountingReader(raw)
        stream = io.BufferedReader(counter, buffer_size=1 << 16)
        parsed = _iter_csv(stream) if kind == "csv" else _iter_jsonl(stream)
        on_batch = None if progress is None else lambda: progress(summary.records, counter.count, total)
        _import_parsed(engine, parsed, summary, deferred, batch_size, on_batch)
    # Variant-less records of users the file had not assigned yet when they were read: the whole file
    # is in now, so a user assigned by any line of it (or meanwhile) gets them; the rest are bad.
    # This makes the result independent of line order and of how often (or how far) the file was imported.
    for start in range(0, len(deferred), batch_size):
        _flush(engine, deferred[start:start + batch_size], summary)
    summary.bad_lines.sort(key=lambda bad: bad.line)
    if progress is not None:
        progress(summary.records, total, total)
    return summary
