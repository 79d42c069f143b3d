"""CSV export, streamed from the database.

:func:`iter_csv` yields CSV text chunks for one experiment's ``results`` (the
analysis table), ``assignments`` or ``events``. Assignments and events are read
with keyset pagination on the primary key (``WHERE id > last ORDER BY id LIMIT n``),
so memory stays constant for millions of rows and no long-running cursor is held.
Every file starts with a header row; timestamps are ISO-8601 in UTC
(``2026-01-31T12:00:00.000000+00:00``); variant names are joined in; JSON
columns (attributes, properties) are written as JSON text; quoting is the csv
module's (commas, quotes, newlines and unicode round-trip).

Two modes (``mode=``): ``"safe"`` (the default everywhere: library, CLI, dashboard
downloads) neutralises spreadsheet formulas as OWASP recommends against CSV injection:
a text cell beginning with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a
leading ``'`` (plain numbers such as ``-5`` stay as they are). ``"exact"`` writes every
cell unchanged, for machine consumers (pandas reads back exactly what is stored).

Experiment configs (JSON) are in :mod:`abcore.io.configs`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from abcore.assign.layers import layer_unit
from abcore.errors import Invalid
from abcore.experiments.records import get_experiment, get_variants
from abcore.store.tables import Experiment, ExperimentEvent, Layer, UserAssignment

What = Literal["results", "assignments", "events"]
CsvMode = Literal["safe", "exact"]
CSV_MODES: tuple[str, ...] = ("safe", "exact")
DEFAULT_CSV_MODE: CsvMode = "safe"
# OWASP CSV injection: cells starting with these characters may be evaluated as formulas by spreadsheets.
FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
WHATS: tuple[str, ...] = ("results", "assignments", "events")
DEFAULT_CHUNK_SIZE = 5_000

ASSIGNMENT_COLUMNS: tuple[str, ...] = (
    "assignment_id",
    "experiment_id",
    "experiment_name",
    "user_id",
    "variant_id",
    "variant_name",
    "is_control",
    "assigned_at",
    "attributes",
    "experiment_kind",  # ab | interleaving | holdout
    "layer",  # the layer's name ('' outside any layer)
    "layer_unit",  # the user's unit of the layer hash (0-9999; '' outside any layer): which range holds the user
)
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "experiment_id",
    "experiment_name",
    "user_id",
    "variant_id",
    "variant_name",
    "event_type",
    "metric_name",
    "value",
    "request_id",
    "ts",
    "properties",
    "event_key",
)

ProgressCallback = Callable[[int], None]


class ExportError(Invalid, ValueError):
    """An export or config request abcore refuses; the message is user-readable
    (:class:`abcore.io.configs.ConfigError` is the config kind)."""



# --------------------------------------------------------------------------- cells


def iso_utc(value: datetime | None) -> str:
    """ISO-8601 text in UTC with microseconds (a naive datetime is taken as UTC); '' for None."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _cell(value: Any) -> Any:
    """One CSV cell: datetimes as ISO UTC, dicts/lists as JSON text, None as '', floats in full precision."""
    kind = type(value)  # exact-type fast paths first: this runs once per cell of millions of rows
    if kind is str or kind is int:
        return value
    if kind is float:
        return "" if value != value else repr(value)
    if kind is dict or kind is list:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    try:  # numpy / pandas scalars
        import numpy as np

        if isinstance(value, np.generic):
            return _cell(value.item())
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    return value


def neutralise_cell(text: str) -> str:
    """``text`` made harmless for spreadsheets (OWASP CSV injection): a leading ``'`` when it starts with
    ``=``, ``+``, ``-``, ``@``, tab or carriage return; unchanged otherwise, and for plain numbers (``-5``)."""
    if text and text[0] in "=+-@\t\r" and _PLAIN_NUMBER.fullmatch(text) is None:
        return "'" + text
    return text


def _safe_cell(value: Any) -> Any:
    cell = _cell(value)
    return neutralise_cell(cell) if type(cell) is str else cell


def _rows_to_csv(rows: Iterable[Sequence[Any]], mode: str = DEFAULT_CSV_MODE) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    cell = _safe_cell if mode == "safe" else _cell
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return buffer.getvalue()


# --------------------------------------------------------------------------- CSV export


def _experiment_and_variants(session: Session, experiment: int | str | Experiment) -> tuple[Experiment, dict[int, Any]]:
    exp = get_experiment(session=session, ref=experiment)
    variants = {v.id: v for v in get_variants(session=session, experiment_id=exp.id)}  # type: ignore[arg-type]
    return exp, variants


def _iter_assignments(session: Session, exp: Experiment, variants: dict[int, Any], chunk_size: int) -> Iterator[list[tuple]]:
    layer = session.get(Layer, exp.layer_id) if exp.layer_id is not None else None
    last_id = 0
    while True:
        batch = session.execute(
            select(
                UserAssignment.id,
                UserAssignment.user_id,
                UserAssignment.variant_id,
                UserAssignment.assigned_at,
                UserAssignment.attributes,
            )
            .where(UserAssignment.experiment_id == exp.id, col(UserAssignment.id) > last_id)
            .order_by(col(UserAssignment.id))
            .limit(chunk_size)
        ).all()
        if not batch:
            return
        last_id = batch[-1][0]
        rows = []
        for id_, user_id, variant_id, assigned_at, attributes in batch:
            variant = variants.get(variant_id)
            rows.append(
                (
                    id_,
                    exp.id,
                    exp.name,
                    user_id,
                    variant_id,
                    variant.name if variant else "",
                    variant.is_control if variant else "",
                    assigned_at,
                    attributes if attributes is not None else {},
                    exp.kind,
                    layer.name if layer is not None else "",
                    layer_unit(user_id, layer.salt) if layer is not None else "",
                )
            )
        yield rows
        if len(batch) < chunk_size:
            return


def _iter_events(session: Session, exp: Experiment, variants: dict[int, Any], chunk_size: int) -> Iterator[list[tuple]]:
    last_id = 0
    columns = (
        ExperimentEvent.id,
        ExperimentEvent.user_id,
        ExperimentEvent.variant_id,
        ExperimentEvent.event_type,
        ExperimentEvent.metric_name,
        ExperimentEvent.value,
        ExperimentEvent.request_id,
        ExperimentEvent.ts,
        ExperimentEvent.properties,
        ExperimentEvent.event_key,
    )
    while True:
        batch = session.execute(
            select(*columns)
            .where(ExperimentEvent.experiment_id == exp.id, col(ExperimentEvent.id) > last_id)
            .order_by(col(ExperimentEvent.id))
            .limit(chunk_size)
        ).all()
        if not batch:
            return
        last_id = batch[-1][0]
        rows = []
        for id_, user_id, variant_id, event_type, metric, value, request_id, ts, properties, key in batch:
            variant = variants.get(variant_id) if variant_id is not None else None
            rows.append(
                (
                    id_,
                    exp.id,
                    exp.name,
                    user_id,
                    variant_id,
                    variant.name if variant else "",
                    event_type,
                    metric,
                    value,
                    request_id,
                    ts,
                    properties if properties is not None else {},
                    key,
                )
            )
        yield rows
        if len(batch) < chunk_size:
            return


def results_frame(*, session: Session, experiment: int | str | Experiment, **analyze_kwargs: Any) -> Any:
    """The analysis table of ``experiment`` as a pandas DataFrame (``abcore.analysis.pipeline.analyze(...).to_frame()``)."""
    from abcore.analysis.pipeline import analyze

    exp = get_experiment(session=session, ref=experiment)
    return analyze(exp, session=session, **analyze_kwargs).to_frame()


def _iter_results(session: Session, exp: Experiment, analyze_kwargs: Mapping[str, Any]) -> Iterator[list[tuple]]:
    frame = results_frame(session=session, experiment=exp, **analyze_kwargs)
    header = [str(c) for c in frame.columns]
    yield [tuple(header)]
    rows = [tuple(r) for r in frame.itertuples(index=False, name=None)]
    if rows:
        yield rows


def iter_csv(
    *,
    experiment: int | str | Experiment,
    what: str,
    engine: Engine | None = None,
    session: Session | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: ProgressCallback | None = None,
    analyze_kwargs: Mapping[str, Any] | None = None,
    mode: CsvMode = DEFAULT_CSV_MODE,
) -> Iterator[str]:
    """CSV text of one experiment's ``what`` ("results" | "assignments" | "events"), in chunks.

    The first chunk is the header row; each further chunk holds at most ``chunk_size``
    rows. Pass an ``engine`` (a session is opened for the duration of the iteration) or
    an open ``session``. ``progress`` is called with the number of data rows yielded so
    far after each chunk. ``mode`` "safe" (default) neutralises spreadsheet formulas
    (:func:`neutralise_cell`), "exact" writes cells unchanged for machine consumers.
    Raises :class:`ExportError` for an unknown ``what`` or ``mode`` and
    :class:`abcore.experiments.errors.ExperimentNotFound` for an unknown experiment — both
    before the first chunk is produced when the generator is first advanced.
    """
    if what not in WHATS:
        raise ExportError(f"Cannot export {what!r}: choose one of {', '.join(WHATS)}.")
    if chunk_size < 1:
        raise ExportError("chunk_size must be at least 1")
    if mode not in CSV_MODES:
        raise ExportError(f"Unknown CSV mode {mode!r}: choose one of {', '.join(CSV_MODES)}.")
    if (engine is None) == (session is None):
        raise ExportError("pass exactly one of engine= or session=")
    if session is None:
        assert engine is not None
        with Session(engine, expire_on_commit=False) as own:
            yield from _iter_csv(own, experiment, what, chunk_size, progress, analyze_kwargs or {}, mode)
    else:
        yield from _iter_csv(session, experiment, what, chunk_size, progress, analyze_kwargs or {}, mode)


def _iter_csv(
    session: Session,
    experiment: int | str | Experiment,
    what: str,
    chunk_size: int,
    progress: ProgressCallback | None,
    analyze_kwargs: Mapping[str, Any],
    mode: str = DEFAULT_CSV_MODE,
) -> Iterator[str]:
    exp, variants = _experiment_and_variants(session, experiment)
    if what == "results":
        chunks = _iter_results(session, exp, analyze_kwargs)
        header = next(chunks)
        yield _rows_to_csv(header, mode)
    else:
        yield _rows_to_csv([ASSIGNMENT_COLUMNS if what == "assignments" else EVENT_COLUMNS], mode)
        chunks = (_iter_assignments if what == "assignments" else _iter_events)(session, exp, variants, chunk_size)
    done = 0
    for rows in chunks:
        yield _rows_to_csv(rows, mode)
        done += len(rows)
        if progress is not None:
            progress(done)


def write_csv(
    *,
    experiment: int | str | Experiment,
    what: str,
    path: str | Path | IO[str],
    engine: Engine | None = None,
    session: Session | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: ProgressCallback | None = None,
    analyze_kwargs: Mapping[str, Any] | None = None,
    mode: CsvMode = DEFAULT_CSV_MODE,
) -> int:
    """Write the CSV of :func:`iter_csv` to ``path`` (a file path, or an open text stream); returns the data rows.

    A path is written to ``<path>.part`` and renamed when complete, so a failed export
    never leaves a truncated file behind under the final name.
    """
    counted = [0]

    def _count(n: int) -> None:
        counted[0] = n
        if progress is not None:
            progress(n)

    chunks = iter_csv(
        experiment=experiment,
        what=what,
        engine=engine,
        session=session,
        chunk_size=chunk_size,
        progress=_count,
        analyze_kwargs=analyze_kwargs,
        mode=mode,
    )
    if hasattr(path, "write"):
        for chunk in chunks:
            path.write(chunk)  # type: ignore[union-attr]
        return counted[0]
    target = Path(path)  # type: ignore[arg-type]
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            for chunk in chunks:
                handle.write(chunk)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return counted[0]
