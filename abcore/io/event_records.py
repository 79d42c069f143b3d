"""One record of an event import validated into an event row: the accepted field names (:data:`ALIASES`,
documented in :mod:`abcore.io.event_import`), timestamps, values and the idempotency key.

:func:`build_record` raises ``ValueError`` with a short reason for a bad record; a reason never echoes
a hostile field in full (:func:`short_repr`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from abcore.store.tables import EventType, Experiment, Variant
from abcore.store.values import NUMBER_TEXT as _NUMBER
from abcore.store.values import id_of, is_id_text, parse_timestamp, short_repr

ALIASES: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "user", "uid"),
    "experiment": ("experiment", "experiment_id", "experiment_name"),
    "variant": ("variant", "variant_name", "variant_id"),
    "event_type": ("event_type", "event", "type"),
    "metric_name": ("metric_name", "metric"),
    "value": ("value",),
    "ts": ("ts", "timestamp", "time"),
    "request_id": ("request_id",),
    "event_id": ("event_id", "id"),
}
__all__ = ["ALIASES", "EventRecord", "Resolver", "build_record", "has_nul", "parse_timestamp", "short_repr"]

KNOWN_KEYS = {alias for names in ALIASES.values() for alias in names}
EVENT_TYPES = tuple(e.value for e in EventType)
# Column limits of the store (abcore.store.tables): checked before insert so one long field never fails a batch.
MAX_LEN = {"user_id": 255, "metric_name": 200, "request_id": 255}


@dataclass
class EventRecord:
    """One valid input record, ready to insert (``event_key`` is its idempotency key)."""

    line: int
    experiment_id: int
    user_id: str
    variant_id: int | None
    event_type: str
    metric_name: str | None
    value: float | None
    ts: datetime
    request_id: str | None
    properties: dict[str, Any]
    event_key: str


def _pick(record: Mapping[str, Any], name: str) -> Any:
    for alias in ALIASES[name]:
        value = record.get(alias)
        if value is not None and value != "":
            return value
    return None


def _text(value: Any, label: str, limit: int | None = None) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{label} must be text, got {type(value).__name__}")
    if isinstance(value, str):
        text = value
    elif isinstance(value, int):  # never through float: a 400-digit integer overflows it
        try:
            text = str(value)
        except ValueError:  # beyond sys.get_int_max_str_digits()
            raise ValueError(f"{label} is a number with too many digits") from None
    else:
        text = str(int(value)) if value.is_integer() else str(value)
    text = text.strip()
    if not text:
        raise ValueError(f"{label} is empty")
    if limit is not None and len(text) > limit:
        raise ValueError(f"{label} is {len(text)} characters long (at most {limit})")
    return text


def has_nul(value: Any) -> bool:
    """True when a NUL character is anywhere in ``value`` (texts, keys and values of nested objects and lists)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


class Resolver:
    """Caches experiments and their variants by name and id for one import."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._experiments: dict[str, tuple[int, str, dict[str, int], set[int]] | None] = {}
        self.started_at: dict[int, datetime | None] = {}

    def experiment(self, ref: Any) -> tuple[int, str, dict[str, int], set[int]]:
        key = _text(ref, "experiment", 200)
        if key not in self._experiments:
            # The one rule of experiment references (abcore.store.values): ASCII digits are always an id, never a name.
            number = id_of(key) if is_id_text(key) else None
            condition = (Experiment.id == number) if is_id_text(key) else (Experiment.name == key)
            row = None if is_id_text(key) and number is None else self._connection.execute(
                select(Experiment.id, Experiment.primary_metric, Experiment.started_at).where(condition)  # type: ignore[arg-type]
            ).first()
            if row is None:
                self._experiments[key] = None
            else:
                variants = self._connection.execute(
                    select(Variant.id, Variant.name).where(Variant.experiment_id == row[0])  # type: ignore[arg-type]
                ).all()
                self._experiments[key] = (row[0], row[1], {n: i for i, n in variants}, {i for i, _ in variants})
                started = row[2]
                if started is not None and started.tzinfo is None:
                    started = started.replace(tzinfo=UTC)
                self.started_at[row[0]] = started
        found = self._experiments[key]
        if found is None:
            raise ValueError(f"unknown experiment {key[:80]!r}")
        return found


def _variant_id(raw: Mapping[str, Any], by_name: Mapping[str, int], variant_ids: Collection[int]) -> int | None:
    """The variant a record names (by name or id), ``None`` when it names none; ValueError when unknown."""
    variant_ref = _pick(raw, "variant")
    if variant_ref is None:
        return None
    name = _text(variant_ref, "variant", 200)
    if name in by_name:
        return by_name[name]
    if name.isdigit() and int(name) in variant_ids:
        return int(name)
    raise ValueError(f"unknown variant {name[:80]!r} for this experiment")


def _event_type(raw: Mapping[str, Any]) -> str:
    event = _pick(raw, "event_type")
    if event is None:
        raise ValueError("no event type (field 'event_type' or 'event')")
    event_type = _text(event, "event_type", 32).lower()
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type[:40]!r} (expected one of {', '.join(EVENT_TYPES)})")
    return event_type


def _value(raw: Mapping[str, Any]) -> float | None:
    """The record's numeric value: a number, numeric text, or ``true``/``false``; finite or refused."""
    raw_value = _pick(raw, "value")
    if raw_value is None:
        return None
    if isinstance(raw_value, int | float) or (isinstance(raw_value, str) and _NUMBER.match(raw_value.strip())):
        try:
            value = float(raw_value)
        except OverflowError:
            raise ValueError(f"value is out of range for a float: {short_repr(raw_value)}") from None
    elif isinstance(raw_value, str) and raw_value.strip().lower() in ("true", "false"):
        value = 1.0 if raw_value.strip().lower() == "true" else 0.0
    else:
        raise ValueError(f"value is not a number: {str(raw_value)[:40]!r}")
    if not math.isfinite(value):
        raise ValueError(f"value must be finite, got {short_repr(raw_value)}")
    return value


def _dedup_key(raw: Mapping[str, Any], experiment_id: int, content: list[Any]) -> str:
    """The record's idempotency key: its ``event_id`` when given, else a hash of its content."""
    event_id = _pick(raw, "event_id")
    if event_id is not None:
        key = f"id:{experiment_id}:{_text(event_id, 'event_id')}"
        return "id:" + hashlib.sha256(key.encode("utf-8")).hexdigest() if len(key) > 128 else key
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_record(line: int, raw: Mapping[str, Any], resolver: Resolver) -> EventRecord:
    """Validate one input record; raises ValueError with the reason when it is bad."""
    exp_ref = _pick(raw, "experiment")
    if exp_ref is None:
        raise ValueError("no experiment (field 'experiment' or 'experiment_id')")
    experiment_id, primary_metric, by_name, variant_ids = resolver.experiment(exp_ref)
    user = _pick(raw, "user_id")
    if user is None:
        raise ValueError("no user (field 'user_id' or 'user')")
    user_id = _text(user, "user_id", MAX_LEN["user_id"])
    variant_id = _variant_id(raw, by_name, variant_ids)
    event_type = _event_type(raw)
    metric = _pick(raw, "metric_name")
    metric_name = _text(metric, "metric_name", MAX_LEN["metric_name"]) if metric is not None else None
    value = _value(raw)
    if event_type == EventType.CONVERSION:
        metric_name = metric_name or primary_metric
        value = 1.0 if value is None else value
    ts_raw = _pick(raw, "ts")
    if ts_raw is None:
        raise ValueError("no timestamp (field 'ts' or 'timestamp')")
    ts = parse_timestamp(ts_raw)
    request = _pick(raw, "request_id")
    request_id = _text(request, "request_id", MAX_LEN["request_id"]) if request is not None else None
    properties = {k: v for k, v in raw.items() if k not in KNOWN_KEYS and v is not None and v != ""}
    key = _dedup_key(raw, experiment_id, [experiment_id, user_id, variant_id, event_type, metric_name, value,
                                          ts.isoformat(), request_id, properties])
    return EventRecord(line, experiment_id, user_id, variant_id, event_type, metric_name, value, ts, request_id,
                       properties, key)

