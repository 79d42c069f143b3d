"""Timestamps in the analysis SQL: per-row comparable keys, instants as literals, metric window bounds.

Rows are compared and grouped by a cheap per-row key (the stored text on SQLite, see
:meth:`abcore.analysis.sql.dialects.Dialect.text_keys`; else epoch microseconds) and converted to
microseconds once per user. A metric's window (``delay_hours`` .. ``delay_hours + window_hours``
after first exposure) and the CUPED lookback are offsets from first exposure, held per user as
population columns ``b<j>`` (:func:`bound_offsets`, :func:`bound_column`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from abcore.analysis.sql.dialects import Dialect
from abcore.analysis.sql.source import QuerySource

__all__ = ["US_PER_HOUR", "TimeKeys", "bound_column", "bound_offsets", "epoch_us", "hours_us"]

US_PER_HOUR = 3_600_000_000


def epoch_us(value: datetime) -> int:
    """Integer microseconds since 1970-01-01 UTC of ``value`` (naive = UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def hours_us(hours: float) -> int:
    """``hours`` as whole microseconds (rounded)."""
    return int(round(hours * US_PER_HOUR))


@dataclass(frozen=True)
class TimeKeys:
    """How timestamps are compared: per-row keys (text on SQLite, see ``Dialect.text_keys``), per-user bounds."""

    d: Dialect
    src: QuerySource

    @property
    def text(self) -> bool:
        """Whether keys are the stored text (events and exposures both stored as comparable text)."""
        s = self.src
        return self.d.text_keys(s.ts_format) and (s.exposures is None or self.d.text_keys(s.exposure_ts_format))

    @property
    def fmt(self) -> str:
        """The format of a key: ``timestamp`` (text keys) or ``epoch_us``."""
        return "timestamp" if self.text else "epoch_us"

    def event_key(self, expr: str) -> str:
        """The key of an event timestamp column."""
        return expr if self.text else self.d.epoch_us(expr, self.src.ts_format)

    def exposure_key(self, expr: str) -> str:
        """The key of an exposure-table timestamp column."""
        return expr if self.text else self.d.epoch_us(expr, self.src.exposure_ts_format)

    def to_us(self, key: str) -> str:
        """Epoch microseconds of a key."""
        return self.d.key_to_us(key, self.fmt)

    def from_us(self, expr: str) -> str:
        """The key of an epoch-microsecond expression."""
        return self.d.us_to_key(expr, self.fmt)

    def literal(self, value: datetime) -> str:
        """The key of an instant, as a literal."""
        return self.d.key_literal(epoch_us(value), self.fmt)

    def day(self, key: str) -> str:
        """The UTC day of a key, as a group key."""
        return self.d.key_day(key, self.fmt)

    def day_out(self, day: str) -> str:
        """The day number (days since 1970-01-01) of a :meth:`day` value."""
        return self.d.day_out(day, self.fmt)


def bound_offsets(metrics: Sequence[Any], cuped: bool, lookback_us: int) -> list[int]:
    """The offsets (microseconds from first exposure) of every metric window bound, except 0."""
    out: list[int] = []
    for m in metrics:
        delay = hours_us(getattr(m, "delay_hours", 0) or 0)
        window = getattr(m, "window_hours", None)
        for off in [delay] + ([delay + hours_us(window)] if window is not None else []):
            if off and off not in out:
                out.append(off)
    if cuped and -lookback_us not in out:
        out.append(-lookback_us)
    return out


def bound_column(offset: int, offsets: Sequence[int]) -> str:
    """The population column holding the key of first exposure + ``offset``."""
    return "first_key" if offset == 0 else f"b{offsets.index(offset)}"
